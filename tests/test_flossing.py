"""Gradient flossing, the delayed-bits tasks and the per-step read-out model."""

import copy

import pytest
import torch

from lyaplib import lyapunov_spectrum
from lyaplib.flossing import (
    Flosser,
    FlossingSchedule,
    accuracy,
    flossing_loss,
    train_flossed,
)
from lyaplib.models import RecurrentTagger
from lyaplib.population import Population
from lyaplib.tasks import DelayedBitsTask


def _tagger(seed=0, N=12, architecture="rnn", gain=1.0):
    torch.manual_seed(seed)
    return RecurrentTagger(architecture, 1, N, 1, init=gain * (3 / N) ** 0.5)


def test_delayed_copy_and_xor_targets():
    g = torch.Generator().manual_seed(0)
    x, y = DelayedBitsTask("copy", 3, 20).sample(4, g)
    bits = x[..., 0]
    assert x.shape == (4, 20, 1) and set(bits.unique().tolist()) <= {0.0, 1.0}
    assert (y[:, :3] == -1).all() and torch.equal(y[:, 3:], bits[:, :-3])
    x, y = DelayedBitsTask("xor", 3, 20).sample(4, g)
    bits = x[..., 0].long()
    assert (y[:, :6] == -1).all()
    for t in range(6, 20):
        assert torch.equal(y[:, t].long(), bits[:, t - 3] ^ bits[:, t - 6])


def test_delayed_task_scores_only_defined_steps():
    task = DelayedBitsTask("xor", 2, 10)
    _, y = task.sample(3, torch.Generator().manual_seed(0))
    perfect = (2 * y - 1).unsqueeze(-1) * 10  # right sign on scored steps
    perfect[:, :4] = -perfect[:, :4] + 5  # nonsense on the unscored ones
    assert torch.allclose(task.correct_fraction(perfect, y), torch.tensor(1.0))
    assert task.loss(perfect, y) < 1e-4
    assert float(task.correct_fraction(-perfect, y)) == 0.0


@pytest.mark.parametrize("kwargs, match", [
    ({"kind": "and"}, "kind must be one of"),
    ({"delay": 0}, "delay must be an int >= 1"),
    ({"delay": 5, "length": 10}, r"length must be an int > 10"),
])
def test_delayed_task_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DelayedBitsTask(**{"kind": "xor", "delay": 3, "length": 50, **kwargs})


@pytest.mark.parametrize("architecture", ["rnn", "gru", "lstm"])
def test_tagger_fused_and_stepwise_agree(architecture):
    model = _tagger(architecture=architecture)
    x = torch.rand(3, 15, 1)
    fused, _ = model(x)
    stepwise, _ = model(x, stepwise=True)
    assert fused.shape == (3, 15, 1)
    assert torch.allclose(fused, stepwise, atol=1e-5)


def test_flossing_loss():
    lam = torch.tensor([[0.5, -0.5], [0.0, 0.0]])
    assert torch.allclose(flossing_loss(lam), torch.tensor([0.25, 0.0]))
    assert torch.allclose(flossing_loss(lam, target=-0.5), torch.tensor([0.5, 0.25]))


@pytest.mark.parametrize("architecture", ["rnn", "gru", "lstm"])
def test_flossing_drives_the_exponents_to_zero_and_leaves_the_readout(architecture):
    model = _tagger(architecture=architecture, N=10)
    readout = copy.deepcopy(model.readout.state_dict())
    recurrent = copy.deepcopy(model.recurrent.state_dict())
    task = DelayedBitsTask("copy", 5, 60)
    flosser = Flosser(model, k=4, lr=0.03)
    losses = flosser.run(task, 60, generator=torch.Generator().manual_seed(0))
    # measured over seeds 0-2 and the three cells: the loss falls 6x to 1400x, and the
    # largest |lambda| on the long trajectory below is 0.007-0.068
    assert losses[-10:].mean() < 0.4 * losses[:10].mean()
    assert all(torch.equal(t, readout[n]) for n, t in model.readout.state_dict().items())
    assert not all(torch.equal(t, recurrent[n]) for n, t in model.recurrent.state_dict().items())
    # and on a long trajectory, not only the 55-step windows it was flossed on
    lam = lyapunov_spectrum(model.cell("full"), task.lyapunov_inputs(4, 500), k=4,
                            warmup=50).exponents
    assert lam.abs().max() < 0.15


def test_population_flossing_equals_flossing_each_network():
    models = [_tagger(seed) for seed in range(3)]
    population = Population(copy.deepcopy(models), [1e-3] * 3, forward_kwargs={"stepwise": True})
    task = DelayedBitsTask("xor", 3, 60)
    together = Flosser(population, k=5).run(task, 5, generator=torch.Generator().manual_seed(1))
    for i, model in enumerate(models):
        alone = Flosser(model, k=5).run(task, 5, generator=torch.Generator().manual_seed(1))
        assert torch.allclose(together[:, i], alone, rtol=1e-4, atol=1e-7)
        for name, p in model.named_parameters():
            assert torch.allclose(population.stacked()[name][i], p, atol=1e-6), name


def test_flossing_only_some_networks_of_a_population():
    models = [_tagger(seed) for seed in range(3)]
    population = Population(copy.deepcopy(models), [1e-3] * 3, forward_kwargs={"stepwise": True})
    before = {n: p.detach().clone() for n, p in population.stacked().items()}
    task = DelayedBitsTask("xor", 3, 60)
    Flosser(population, k=5, only=[True, False, True]).run(
        task, 4, generator=torch.Generator().manual_seed(1))
    for name, p in population.stacked().items():
        assert torch.equal(p[1], before[name][1]), name  # exactly untouched
    alone = copy.deepcopy(models[2])
    Flosser(alone, k=5).run(task, 4, generator=torch.Generator().manual_seed(1))
    for name, p in alone.named_parameters():
        assert torch.allclose(population.stacked()[name][2], p, atol=1e-6), name
    with pytest.raises(ValueError, match=r"only must be a \(P,\) mask"):
        Flosser(population, k=5, only=[True, False])
    with pytest.raises(ValueError, match="only must be a"):
        Flosser(models[0], k=5, only=[True])


def test_unflossed_networks_of_a_mixed_population_train_as_without_flossing():
    """Side by side in one population, a network that is not flossed trains exactly as
    in a population without flossing: same inputs, same updates."""
    def population():
        return Population([_tagger(0, N=8), _tagger(0, N=8)], [1e-2] * 2,
                          forward_kwargs={"stepwise": True})
    tasks = [DelayedBitsTask("xor", 2, 40)] * 2
    schedule = FlossingSchedule(k=3, before=3, at=(2,), steps=2, length=30, warmup=5)
    mixed, plain = population(), population()
    h_mixed = train_flossed(mixed, tasks, iterations=4, schedule=schedule, flossed=[True, False],
                            generator=torch.Generator().manual_seed(0))
    h_plain = train_flossed(plain, tasks, iterations=4, generator=torch.Generator().manual_seed(0))
    for name, p in plain.stacked().items():
        assert torch.allclose(mixed.stacked()[name][1], p[1], atol=1e-6), name
        assert torch.equal(p[0], p[1]), name  # identical twins without flossing
    assert not torch.allclose(mixed.stacked()["recurrent.weight_hh_l0"][0],
                              plain.stacked()["recurrent.weight_hh_l0"][0])
    assert torch.allclose(h_mixed.loss[:, 1], h_plain.loss[:, 1], atol=1e-6)


def test_train_flossed_schedule_and_population_of_delays():
    models = [_tagger(seed, N=8) for seed in range(2)]
    population = Population(models, [1e-2] * 2, forward_kwargs={"stepwise": True})
    tasks = [DelayedBitsTask("xor", d, 40) for d in (2, 4)]
    readout = population.stacked()["readout.weight"].detach().clone()
    schedule = FlossingSchedule(k=3, before=4, at=(5,), steps=2, length=30, warmup=5)
    history = train_flossed(population, tasks, iterations=8, schedule=schedule, eval_every=4,
                            generator=torch.Generator().manual_seed(0))
    assert sorted(history.flossing) == [0, 5]
    assert history.flossing[0].shape == (4, 2) and history.flossing[5].shape == (2, 2)
    assert history.loss.shape == (8, 2) and history.accuracy_iterations == [4, 8]
    assert history.final_accuracy.shape == (2,)
    assert not torch.equal(readout, population.stacked()["readout.weight"])  # trained
    assert history.seconds_flossing > 0 and history.seconds_training > 0


def test_train_flossed_learns_a_short_delayed_copy():
    model = _tagger(0, N=16)
    task = DelayedBitsTask("copy", 2, 30)
    history = train_flossed(model, task, iterations=300, lr=1e-2, clip=None, eval_every=100,
                            generator=torch.Generator().manual_seed(0))
    assert float(history.final_accuracy) > 0.9
    fresh = accuracy(model, [task], 256, torch.Generator().manual_seed(5))
    assert float(fresh) > 0.9


def test_train_flossed_bad_arguments():
    population = Population([_tagger(0), _tagger(1)], [1e-3] * 2,
                            forward_kwargs={"stepwise": True})
    with pytest.raises(ValueError, match="one task per network"):
        train_flossed(population, [DelayedBitsTask()], iterations=1)
    with pytest.raises(ValueError, match="share one sequence length and input scale"):
        train_flossed(population, [DelayedBitsTask(length=50), DelayedBitsTask(length=60)],
                      iterations=1)
    with pytest.raises(ValueError, match="differentiable population cell"):
        population.cell(lambda m: m.cell(), torch.float64, differentiable=True)
