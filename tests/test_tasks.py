"""Training with Lyapunov tracking: models, losses, resumable checkpoints."""

import dataclasses
import hashlib
import json
import math

import numpy as np
import pytest
import torch

from lyaplib import data, lyapunov_spectrum, models, sweeps, tasks, training
from lyaplib.data import Corpus


def periodic_task(period: str = "abcde", repeats: int = 400, seq_len: int = 20) -> tasks.CharTask:
    return tasks.CharTask(Corpus(text=period * repeats, vocab=sorted(set(period)), source="test"),
                          seq_len=seq_len)


def small_config(**changes) -> training.RunConfig:
    base = dict(hidden_size=8, epochs=3, batch_size=16, max_batches=4, lr=1e-2, dropout=0.2)
    return training.RunConfig(**{**base, **changes})


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_uniform_init_and_shapes():
    model = models.LSTMPredictor(5, 16, 3, init=0.07)
    weights = torch.cat([p.flatten() for p in model.parameters()])
    assert weights.abs().max() <= 0.07 and weights.abs().max() > 0.069
    assert abs(weights.mean().item()) < 0.005  # U(-p, p) has mean 0
    out, (h, c) = model(torch.randn(2, 7, 5))
    assert out.shape == (2, 7, 3) and h.shape == c.shape == (1, 2, 16)
    assert model.cell("full").dim == 32 and model.cell("hidden").dim == 16


def test_losses_at_a_near_zero_network():
    """With tiny weights the predictions are ~0: cross-entropy ln V, MSE the mean square."""
    task = periodic_task()
    model = models.LSTMPredictor(5, 8, 5, init=1e-6)
    assert training.evaluate(model, task, "val") == pytest.approx(math.log(5), abs=1e-4)
    motion = data.synthetic_motion(actions=2, recordings=4, frames=120)
    mtask = tasks.MocapTask(motion, seq_len=10)
    model = models.LSTMPredictor(70, 8, 70, init=1e-6)
    targets = mtask.data.windows("test", 10)[:, 1:]
    expected = targets.pow(2).mean().item()
    assert training.evaluate(model, mtask, "test") == pytest.approx(expected, rel=1e-4)


def test_training_learns_a_periodic_text():
    task = periodic_task()
    config = small_config(hidden_size=16, epochs=6, dropout=0.0, lr=3e-2)
    history = training.train(config.model(task), task, config, progress=False)
    assert history.val_loss[0] > history.val_loss[-1]
    assert history.val_loss[-1] < 0.1 * math.log(5)  # next letter is determined by the last
    assert history.iterations == [4] * 6 and len(history.epoch_seconds) == 6


def test_tracker_does_not_disturb_training():
    task = periodic_task()
    config = small_config()
    plain = config.model(task)
    h_plain = training.train(plain, task, config, progress=False)
    tracked = config.model(task)
    tracker = training.LyapunovTracker(task.lyapunov_inputs(3, 30), None, jacobian="full")
    h_tracked = training.train(tracked, task, config, tracker=tracker, progress=False)
    assert same_state(plain, tracked)  # dropout draws, batch order, Adam: all unchanged
    assert h_plain.val_loss == h_tracked.val_loss
    assert sorted(h_tracked.spectra) == [0, 1, 2, 3] and len(h_tracked.le_seconds) == 4
    direct = lyapunov_spectrum(tracked.cell("full"), task.lyapunov_inputs(3, 30),
                               dtype=torch.float64)
    np.testing.assert_allclose(h_tracked.spectra[3], direct.exponents.tolist(), rtol=1e-12)


def test_training_leaves_global_random_state_alone():
    task = periodic_task()
    torch.manual_seed(123)
    before = torch.get_rng_state()
    training.train(small_config(epochs=1).model(task), task, small_config(epochs=1), progress=False)
    assert torch.equal(before, torch.get_rng_state())


def test_resuming_from_a_checkpoint_equals_an_uninterrupted_run(tmp_path):
    task = periodic_task()
    tracker = training.LyapunovTracker(task.lyapunov_inputs(2, 20), [0, 2, 3])
    straight = small_config().model(task)
    h_straight = training.train(straight, task, small_config(), tracker=tracker, progress=False)

    ckpt = tmp_path / "run.pt"
    first = small_config().model(task)
    training.train(first, task, small_config(epochs=1), tracker=tracker, checkpoint=ckpt,
                progress=False)
    resumed = small_config().model(task)  # a fresh process: new model, same checkpoint
    h_resumed = training.train(resumed, task, small_config(), tracker=tracker, checkpoint=ckpt,
                            progress=False)
    assert same_state(straight, resumed)
    assert h_resumed.val_loss == h_straight.val_loss
    assert h_resumed.spectra == h_straight.spectra
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary files left


def test_kept_epochs_are_the_models_of_shorter_runs(tmp_path):
    task = periodic_task()
    ckpt = tmp_path / "run.pt"
    training.train(small_config().model(task), task, small_config(), checkpoint=ckpt,
                   keep_epochs=(1, 2), progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.epoch1.pt", "run.epoch2.pt",
                                                          "run.pt"]
    for epochs in (1, 2):
        short = small_config(epochs=epochs).model(task)
        h_short = training.train(short, task, small_config(epochs=epochs), progress=False)
        kept = small_config().model(task)
        h_kept = training.load_weights(kept, training.snapshot_path(ckpt, epochs))
        assert same_state(short, kept)
        assert h_kept.val_loss == h_short.val_loss
    with pytest.raises(ValueError, match="keep_epochs"):
        training.train(small_config().model(task), task, small_config(), keep_epochs=(1,))


def test_run_config_errors_name_the_argument():
    with pytest.raises(ValueError, match="hidden_size"):
        training.RunConfig(hidden_size=0)
    with pytest.raises(ValueError, match="lr"):
        training.RunConfig(lr=0.0)
    with pytest.raises(ValueError, match="dropout"):
        models.LSTMPredictor(3, 4, 3, dropout=1.0)
    with pytest.raises(ValueError, match="init"):
        models.LSTMPredictor(3, 4, 3, init=0.0)
    with pytest.raises(ValueError, match=r"\(B, T, I\)"):
        training.LyapunovTracker(torch.zeros(3, 4))


def test_run_id_is_stable_and_distinguishes_configs():
    assert small_config().run_id == small_config().run_id
    assert small_config(lr=0.02).run_id != small_config().run_id
    relu = small_config(options={"nonlinearity": "relu"})
    assert relu.run_id != small_config().run_id
    # configurations without options keep the ids they had before options existed
    fields = {k: v for k, v in dataclasses.asdict(small_config()).items() if k != "options"}
    digest = hashlib.sha1(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    assert small_config().run_id == digest


def test_run_config_options_reach_the_recurrent_module():
    task = tasks.SequenceClassificationTask(data.mnist(), "row", train_size=8, test_size=8)
    config = training.RunConfig(architecture="rnn", hidden_size=4, init=None, dropout=0.0,
                                options={"nonlinearity": "relu"})
    assert config.model(task).recurrent.nonlinearity == "relu"
    aru = training.RunConfig(architecture="aru", hidden_size=4, init=None, dropout=0.0,
                             options={"controller_size": 3}).model(task)
    assert aru.cell().state_dim == 4 * (1 + 3)


def test_train_and_measure_row(tmp_path):
    task = periodic_task()
    config = small_config(epochs=2)
    row = sweeps.train_and_measure(task, config, le_epochs=[0, 1, 2], le_count=2, le_length=15,
                                  jacobians=("hidden", "full"))
    assert row["run_id"] == config.run_id and row["best_epoch"] in (1, 2)
    assert row["best_val_loss"] == min(row["val_loss"]) and len(row["val_loss"]) == 2
    assert sorted(row["spectra"]) == ["0", "1", "2"]
    assert len(row["final_hidden"]) == 8 and len(row["final_full"]) == 16
    assert row["spectra"]["2"] == row["final_hidden"]


def test_classifier_training_with_tracking_and_resume(tmp_path):
    task = tasks.SequenceClassificationTask(data.mnist(), "row", train_size=256, test_size=64)
    config = training.RunConfig(architecture="cornn", hidden_size=8, epochs=2, batch_size=32,
                             lr=5e-3, init=0.2, dropout=0.0)
    inputs = task.lyapunov_inputs(2, 56)
    tracker = training.LyapunovTracker(inputs, [0, 2], jacobian="full")
    straight = config.model(task)
    history = training.train(straight, task, config, tracker=tracker, progress=False)
    assert sorted(history.spectra) == [0, 2] and len(history.spectra[2]) == 16  # (y, z)
    half = config.model(task)
    training.train(half, task, training.RunConfig(**{**config.__dict__, "epochs": 1}),
                tracker=tracker, checkpoint=tmp_path / "c.pt", progress=False)
    resumed = config.model(task)
    again = training.train(resumed, task, config, tracker=tracker, checkpoint=tmp_path / "c.pt",
                        progress=False)
    assert same_state(straight, resumed) and again.spectra == history.spectra
    assert 0 <= task.accuracy(resumed) <= 1
    with pytest.raises(ValueError, match="architecture"):
        models.RecurrentClassifier("transformer", 3, 4, 10)


def test_spectrum_cost_times_both_sides_and_leaves_random_state_alone():
    task, config = periodic_task(), small_config()
    state = torch.get_rng_state()
    cost = training.spectrum_cost(task, config, repeats=3, iterations=4, le_count=2, le_length=15)
    assert torch.equal(torch.get_rng_state(), state)
    assert cost.spectrum_seconds > 0 and cost.iteration_seconds > 0
    assert math.isfinite(cost.in_iterations) and cost.in_iterations > 0
    with pytest.raises(ValueError, match="repeats and iterations must be >= 1"):
        training.spectrum_cost(task, config, repeats=0)
    few = training.spectrum_cost(task, small_config(max_batches=1), repeats=1, iterations=30,
                              le_count=2, le_length=15)  # more iterations than batches
    assert few.iteration_seconds > 0


def test_tracker_dtype_defaults_to_the_devices_analysis_dtype():
    """float64 on the CPU (scale.analysis_dtype); an explicit dtype wins."""
    torch.manual_seed(0)
    model = models.RecurrentClassifier("gru", 3, 6, 4)  # float32 weights
    inputs = torch.randn(2, 20, 3)
    assert training.LyapunovTracker(inputs)(model).Q.dtype == torch.float64
    assert training.LyapunovTracker(inputs, dtype=torch.float32)(model).Q.dtype == torch.float32
