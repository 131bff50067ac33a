"""Test-time perturbations and the drive that RecurrentClassifier injects into neurons."""

import math

import pytest
import torch

from lyaplib import models, perturbations, tasks

F64 = torch.float64
DRIVEN = {"rnn": {"nonlinearity": "relu"}, "lstm": {}, "gru": {},
          "gamma": {"adapt": "heterogeneous"}, "aru": {"controller_size": 3}}


def classifier(arch: str) -> models.RecurrentClassifier:
    torch.manual_seed(0)
    return models.RecurrentClassifier(arch, 3, 5, 4, **DRIVEN[arch]).double()


def test_step_drive_window_and_noisy_drive_statistics():
    x = torch.zeros(2, 10, 3)
    same, drive = perturbations.StepDrive(2.5, start=3, duration=4)(x)
    assert same is x and drive.shape == (2, 10)
    assert drive[0].tolist() == [0, 0, 0, 2.5, 2.5, 2.5, 2.5, 0, 0, 0]
    noisy = perturbations.NoisyDrive(3.0, start=2000, duration=2000, baseline=0.1)
    _, d = noisy(torch.zeros(50, 6000, 1), torch.Generator().manual_seed(0))
    assert d[:, 2000:4000].std().item() == pytest.approx(3.0, rel=0.01)
    assert d[:, :2000].std().item() == pytest.approx(0.1, rel=0.01)
    _, again = noisy(torch.zeros(50, 6000, 1), torch.Generator().manual_seed(0))
    assert torch.equal(d, again)  # reproducible from the generator


def test_sinusoidal_contrast_is_a_brightness_factor():
    x = torch.ones(3, 40, 2)
    y, drive = perturbations.SinusoidalContrast(0.5, cycles=2)(x, torch.Generator().manual_seed(1))
    factor = y[..., 0]
    assert drive is None and torch.equal(y[..., 0], y[..., 1])
    assert factor.min() >= 0.5 - 1e-6 and factor.max() <= 1.5 + 1e-6
    # two full cycles over the sequence: the factor averages to 1
    assert factor.mean(1).tolist() == pytest.approx([1.0] * 3, abs=1e-6)
    assert not torch.equal(factor[0], factor[1])  # a random phase per sequence


def test_perturbation_arguments_are_checked():
    with pytest.raises(ValueError, match="amplitude"):
        perturbations.SinusoidalContrast(1.5)
    with pytest.raises(ValueError, match="start"):
        perturbations.StepDrive(1.0, start=-1)
    with pytest.raises(ValueError, match="duration"):
        perturbations.NoisyDrive(1.0, duration=0)
    with pytest.raises(ValueError, match="standard deviations"):
        perturbations.NoisyDrive(-1.0)


@pytest.mark.parametrize("arch", DRIVEN)
def test_zero_drive_changes_nothing(arch):
    model = classifier(arch)
    x = torch.randn(2, 6, 3, dtype=F64)
    fused, _ = model(x)
    driven, _ = model(x, drive=torch.zeros(2, 6, dtype=F64))
    torch.testing.assert_close(driven, fused, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("arch", DRIVEN)
def test_constant_drive_is_a_shift_of_the_neurons_bias(arch):
    """A constant drive xi adds xi to the pre-activation of every neuron (the LSTM's and
    GRU's candidate), which is the same as adding xi to that bias."""
    model, shifted = classifier(arch), classifier(arch)
    N, xi = model.hidden_size, 0.7
    with torch.no_grad():
        if arch in ("gamma", "aru"):
            shifted.recurrent.b += xi
        else:
            block = {"rnn": 0, "lstm": 2, "gru": 2}[arch]
            shifted.recurrent.bias_ih_l0[block * N:(block + 1) * N] += xi
    x = torch.randn(2, 6, 3, dtype=F64)
    driven, _ = model(x, drive=torch.full((2, 6), xi, dtype=F64))
    torch.testing.assert_close(driven, shifted(x)[0], rtol=1e-12, atol=1e-12)
    per_neuron = torch.full((2, 6, N), xi, dtype=F64)
    torch.testing.assert_close(model(x, drive=per_neuron)[0], driven, rtol=1e-12, atol=1e-12)


def test_drive_errors_name_the_argument():
    model = classifier("gamma")
    with pytest.raises(ValueError, match="drive must be"):
        model(torch.randn(2, 6, 3, dtype=F64), drive=torch.zeros(2, 5, dtype=F64))
    zoo = models.RecurrentClassifier("cornn", 3, 5, 4)
    with pytest.raises(ValueError, match="implemented for"):
        zoo(torch.randn(2, 6, 3), drive=torch.zeros(2, 6))


@pytest.mark.parametrize("arch", DRIVEN)
def test_gradient_profile_splits_the_gradient_by_step(arch):
    model = classifier(arch)
    x, y = torch.randn(4, 7, 3, dtype=F64), torch.tensor([0, 1, 2, 3])
    profile = model.gradient_profile(x, y)
    loss = torch.nn.functional.cross_entropy(model(x)[0], y)
    weight = model.recurrent_weight()
    (full,) = torch.autograd.grad(loss, weight)
    assert profile.by_start.shape == profile.per_step.shape == (7,)
    assert profile.by_start[0].item() == pytest.approx(torch.linalg.matrix_norm(full).item(),
                                                      rel=1e-10)
    assert profile.per_step[0].item() == pytest.approx(0.0, abs=1e-14)  # W_hh h_0 = 0
    # starting the accumulation at step 4 = not differentiating W_hh at steps 0-3
    cell = model.cell("full")
    state = cell.initial_state(4).to(x)
    frozen = {f"cell.{model.spec.drive.recurrent_weight}": weight.detach()}
    for t in range(7):
        step = models._Step(cell)
        state = torch.func.functional_call(step, frozen, (state, x[:, t])) if t < 4 else \
            step(state, x[:, t])
    late = torch.nn.functional.cross_entropy(model.readout(state[:, :5]), y)
    (from_four,) = torch.autograd.grad(late, weight)
    assert profile.by_start[4].item() == pytest.approx(
        torch.linalg.matrix_norm(from_four).item(), rel=1e-10)


def test_accuracy_under_a_perturbation_is_reproducible():
    from lyaplib import data
    task = tasks.SequenceClassificationTask(data.mnist(), "pixel", data.pixel_permutation(),
                                            train_size=64, test_size=40, pixels_per_step=49)
    assert task.input_size == 49
    torch.manual_seed(0)
    model = models.RecurrentClassifier("gamma", task.input_size, 8, 10)
    noisy = perturbations.NoisyDrive(2.0)
    first = task.accuracy(model, perturbation=noisy, seed=3)
    assert first == task.accuracy(model, perturbation=noisy, seed=3)
    assert task.accuracy(model, perturbation=perturbations.StepDrive(0.0)) == \
        task.accuracy(model)
    assert math.isfinite(first)
