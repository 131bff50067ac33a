"""One meaning per name, and no argument silently ignored: every case here was once
accepted and ignored, crashed with an error that named nothing, or gave a wrong result in
silence (issue 37's probe round). Each now gives a right answer or a named error."""

import math
import warnings

import pytest
import torch

from lyaplib import AutogradCell, LyapunovError, aelle, cells, flossing, force, lyapunov_spectrum
from lyaplib.data import Corpus
from lyaplib.flossing import Flosser, FlossingSchedule, train_flossed
from lyaplib.models import RecurrentClassifier, RecurrentTagger
from lyaplib.population import Population
from lyaplib.tasks import CharTask, DelayedBitsTask
from lyaplib.training import LyapunovTracker, RunConfig, train_population

F64 = torch.float64


def tagger(seed: int = 0, N: int = 8) -> RecurrentTagger:
    torch.manual_seed(seed)
    return RecurrentTagger("rnn", 1, N, 1, init=(3 / N) ** 0.5)


# --- Jacobian conventions -------------------------------------------------------------

def test_a_model_honours_or_refuses_each_jacobian_convention():
    aru = RecurrentClassifier("aru", 2, 4, 3, controller_size=3)
    assert aru.cell("full").dim == 4 * (1 + 3) and aru.cell("main").dim == 4
    assert aru.cell("main").W is aru.recurrent.W  # a view that shares the weights
    inputs = torch.randn(2, 10, 2)
    main = LyapunovTracker(inputs, jacobian="main")(aru)
    assert main.k == 4 and main.dim == 4
    for architecture, bad in (("cornn", "hidden"), ("lem", "hidden"), ("gru", "main"),
                              ("aru", "hidden")):
        model = RecurrentClassifier(architecture, 2, 4, 3)
        with pytest.raises(ValueError, match=f"jacobian: .* conventions .*got '{bad}'"):
            model.cell(bad)
    with pytest.raises(ValueError, match="jacobian: the coRNN"):
        LyapunovTracker(inputs)(RecurrentClassifier("cornn", 2, 4, 3))  # default "hidden"


# --- RunConfig and the tasks ----------------------------------------------------------

@pytest.mark.parametrize("changes, message", [
    (dict(batch_size=True), "batch_size must be an int >= 1, got True"),
    (dict(epochs=1000.0), "epochs must be an int >= 1, got 1000.0"),
    (dict(lr=math.nan), "lr must be a finite number > 0"),
    (dict(init=-0.1), "init must be a finite number > 0 or None"),
    (dict(clip=0), "clip must be a finite number > 0 or None"),
    (dict(seed=-1), "seed must be an int >= 0"),
    (dict(options=[1]), "options must be a dict"),
])
def test_run_config_refuses_what_would_train_under_another_name(changes, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**changes)


def test_equal_configs_have_one_run_id():
    assert RunConfig(lr=1).run_id == RunConfig(lr=1.0).run_id
    assert RunConfig(epochs=__import__("numpy").int64(3)).run_id == RunConfig(epochs=3).run_id


def test_tasks_refuse_fields_their_models_cannot_honour():
    char = CharTask(Corpus(text="abcab" * 40, vocab=list("abc"), source="test"), seq_len=8)
    with pytest.raises(ValueError, match="config.options: CharTask's LSTMPredictor"):
        RunConfig(hidden_size=4, options={"nonlinearity": "relu"}).model(char)
    with pytest.raises(ValueError, match="config.init: CharTask's LSTMPredictor"):
        RunConfig(hidden_size=4, init=None).model(char)
    bits = DelayedBitsTask("copy", 2, 10)
    with pytest.raises(ValueError, match="config.dropout: DelayedBitsTask's RecurrentTagger"):
        RunConfig(architecture="rnn", hidden_size=4).model(bits)  # the default dropout 0.1
    assert RunConfig(architecture="rnn", hidden_size=4, dropout=0.0).model(bits) is not None


def test_train_population_on_delayed_bits_reports_accuracy_and_refuses_mixed_schedules():
    task = DelayedBitsTask("copy", 2, 12)
    configs = [RunConfig(architecture="rnn", hidden_size=6, dropout=0.0, epochs=1,
                         batch_size=8, max_batches=2, val_batches=1, seed=s) for s in (0, 1)]
    rows = train_population(task, configs, progress=False)
    assert all(0 <= row["accuracy"] <= 1 for row in rows)  # it crashed before
    mixed = [configs[0], RunConfig(**{**configs[1].__dict__, "epochs": 2})]
    with pytest.raises(ValueError, match="trains every network with one epochs"):
        train_population(task, mixed, progress=False)


# --- one name, one meaning ------------------------------------------------------------

def test_accuracy_is_one_method_of_a_model_on_a_split():
    task = DelayedBitsTask("copy", 2, 12)
    model = tagger()
    accuracy = task.accuracy(model, "test")
    assert isinstance(accuracy, float) and 0 <= accuracy <= 1
    assert task.accuracy(model, "test") == accuracy  # drawn reproducibly
    out, target = torch.ones(2, 12, 1), torch.ones(2, 12)
    assert float(task.correct_fraction(out, target)) == 1.0
    with pytest.warns(DeprecationWarning, match="correct_fraction"):
        assert float(task.accuracy(out, target)) == 1.0


def test_old_names_warn_and_still_work():
    with pytest.warns(DeprecationWarning, match="fresh_accuracy"):
        assert flossing.accuracy is flossing.fresh_accuracy
    with pytest.warns(DeprecationWarning, match="train_and_measure_population"):
        assert force.train_and_measure is force.train_and_measure_population
    with pytest.warns(DeprecationWarning, match="iterations="):
        history = train_flossed(tagger(), DelayedBitsTask("copy", 2, 12), epochs=2)
    with pytest.warns(DeprecationWarning, match="accuracy_iterations"):
        assert history.accuracy_epochs == history.accuracy_iterations == [2]


# --- flossing -------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    (dict(target=math.nan), "target must be a finite number"),
    (dict(k=0), "k must be an int >= 1"),
    (dict(lr=0.0), "lr must be a finite number > 0"),
    (dict(warmup=60), r"warmup must be in \[0, length = 55\)"),
    (dict(batch=0), "batch must be an int >= 1"),
])
def test_a_flosser_refuses_settings_that_would_destroy_the_model(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Flosser(tagger(), **{"k": 2, **kwargs})


@pytest.mark.parametrize("kwargs, message", [
    (dict(iterations=0), "iterations must be an int >= 1"),
    (dict(iterations=3, batch_size=0), "batch_size must be an int >= 1"),
    (dict(iterations=3, eval_every=0), "eval_every must be an int >= 1"),
    (dict(iterations=3, clip=-1.0), "clip must be a finite number > 0 or None"),
    (dict(), "iterations: how many training iterations"),
])
def test_train_flossed_refuses_bad_arguments_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_flossed(tagger(), DelayedBitsTask("copy", 2, 12), **kwargs)


def test_train_flossed_refuses_lr_and_clip_it_cannot_apply_to_a_population():
    population = Population([tagger(0), tagger(1)], [1e-3] * 2,
                            forward_kwargs={"stepwise": True})
    tasks = [DelayedBitsTask("copy", 2, 12)] * 2
    for kwargs in (dict(lr=1e-2), dict(clip=None)):
        with pytest.raises(ValueError, match="lr, clip: a Population trains with its own"):
            train_flossed(population, tasks, iterations=1, **kwargs)


@pytest.mark.parametrize("at", [3, (0,), (2.5,)])
def test_a_schedule_refuses_iterations_that_are_not_a_tuple_of_positive_ints(at):
    with pytest.raises(ValueError, match="at"):
        FlossingSchedule(k=2, at=at)


# --- the engine -----------------------------------------------------------------------

def linear() -> cells.LinearMap:
    return cells.LinearMap(torch.diag(torch.tensor([0.9, 0.5], dtype=F64)))


def test_an_unknown_method_is_a_lyapunov_error():
    with pytest.raises(LyapunovError, match="method must be one of"):
        lyapunov_spectrum(linear(), 5, method="gram-schmidt")


@pytest.mark.parametrize("context", [torch.no_grad, torch.inference_mode])
def test_differentiable_inside_no_grad_is_refused(context):
    with context(), pytest.raises(LyapunovError, match="differentiable=True inside"):
        lyapunov_spectrum(linear(), 5, differentiable=True)


def test_non_finite_inputs_are_named_before_the_run():
    net = cells.VanillaRNN(torch.eye(2, dtype=F64) * 0.5, torch.ones(2, 1, dtype=F64))
    x = torch.zeros(2, 6, 1, dtype=F64)
    x[1, 4, 0] = math.inf
    with pytest.raises(LyapunovError, match="inputs must be finite; got inf at sequence 1, "
                                            "step 4"):
        lyapunov_spectrum(net, x)


def test_an_overflow_between_orthonormalisations_names_ortho_every():
    # a tangent growing e^3 per step overflows float64 (e^709) within 250 steps of Q
    expanding = cells.LinearMap(torch.diag(torch.tensor([20.0, 0.5], dtype=F64)))
    with pytest.raises(LyapunovError, match="ortho_every = 400, Q can grow past"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lyapunov_spectrum(expanding, 800, ortho_every=400, h0=torch.zeros(2, dtype=F64))


def test_autograd_cell_refuses_in_place_steps_and_changing_shapes_at_any_step():
    def in_place(h, x):
        return h.mul_(0.9)

    with pytest.raises(LyapunovError, match="wrote into its state argument"):
        lyapunov_spectrum(AutogradCell(in_place, 3), 5, dtype=F64)

    def grows_at_step_4(h, x):  # h shrinks by 0.9 a step from 1: below 0.75 at step 4
        return torch.cat([h, h[:, :1]], -1) * 0.9 if float(h[0, 0]) < 0.75 else h * 0.9

    cell = AutogradCell(grows_at_step_4, 4, initial_state=torch.ones(4, dtype=F64))
    with pytest.raises(LyapunovError, match=r"shape \(1, 5\) from one of shape \(1, 4\)"):
        lyapunov_spectrum(cell, 10, dtype=F64)


# --- statistics -----------------------------------------------------------------------

def test_one_diverged_network_is_bad_without_labelling_every_network_bad():
    losses = torch.tensor([0.1, 0.2, math.nan, 0.3, 0.4, math.inf, 0.05])
    good = aelle.good_labels(losses)
    assert good.tolist() == [True, True, False, False, False, False, True]
    assert good.sum() == 3  # below the median (0.3) of 7, diverged ones counted as worst


def test_ch08s_labels_with_a_diverged_fitting_network():
    losses = torch.tensor([0.1, math.nan, 0.3, 0.2, 0.5])
    good = aelle.good_labels(losses, among=[0, 1, 2])  # median of (0.1, inf, 0.3): 0.3
    assert good.tolist() == [True, False, False, True, False]
    with pytest.raises(ValueError, match="pass threshold or among"):
        aelle.good_labels(losses, 0.2, among=[0, 1])


# --- entry points of the layers above the engine: each bad input named ------------------

@pytest.mark.parametrize("call, message", [
    (lambda: Population([tagger(0), tagger(1)], [math.nan, 1e-3]), "lrs must be finite"),
    (lambda: Population([tagger(0), tagger(1)], [-1e-3, 1e-3]), "lrs must be finite and >= 0"),
    (lambda: Population([tagger(0), tagger(1)], [1e-3, 1e-3], clip=0), "clip must be None"),
    (lambda: aelle.interpolate([[0.1, math.nan], [0.2, 0.1]], 8), r"spectra\[0\] is not finite"),
    (lambda: aelle.compare([[0.1, 0.0]] * 10, [0.1] * 9 + [math.nan], progress=False),
     r"losses\[9\] is not finite"),
    (lambda: aelle.Threshold.best(torch.tensor([0.1, math.nan]), torch.tensor([True, False])),
     "feature of network 1 is not finite"),
    (lambda: aelle.LinearClassifier.fit(torch.ones(3, 2), torch.tensor([True, False])),
     "good must have one label per network"),
    (lambda: __import__("lyaplib").stats.kaplan_yorke(torch.tensor([0.1, math.nan])),
     "exponents must not be NaN"),
    (lambda: __import__("lyaplib").fractional.fit_order(torch.ones(8), torch.ones(8), low=1,
                                                        high=0), "low < high"),
    (lambda: LyapunovTracker(torch.zeros(1, 5, 2), epochs="12"), "epochs must be ints >= 0"),
    (lambda: __import__("lyaplib").sweeps.run_sweep([{"lr": 1}], lambda c, p: {}, "unused",
                                                    progress=False), r"configs\[0\] must be"),
    (lambda: __import__("lyaplib").sweeps.run_sweep([RunConfig()], None, "unused",
                                                    progress=False), "run must be callable"),
])
def test_entry_points_name_what_they_refuse(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()
