"""Population training: P stacked networks behave exactly like P separate ones."""

import warnings

import pytest
import torch
from torch import nn

from lyaplib import data, force, lyapunov_spectrum, models, population, tasks, training

F64 = torch.float64
LRS = [1e-2, 2e-2, 5e-3]


def three(arch: str) -> list[models.RecurrentClassifier]:
    nets = []
    for seed in range(3):
        torch.manual_seed(seed)
        nets.append(models.RecurrentClassifier(arch, 5, 8, 10, init=0.3).double())
    return nets


@pytest.mark.parametrize("arch", ["lstm", "gru", "rnn", "cornn", "lem", "lipschitz"])
def test_population_equals_separate_networks(arch):
    nets = three(arch)
    pop = population.Population(nets, LRS, forward_kwargs={"stepwise": True})
    x, y = torch.randn(6, 7, 5, dtype=F64), torch.randint(0, 10, (6,))
    torch.testing.assert_close(pop(x), torch.stack([m(x)[0] for m in nets]),
                               rtol=1e-10, atol=1e-12)
    for _ in range(2):  # two Adam steps with clipping, against torch.optim.Adam
        losses = pop.train_step(nn.functional.cross_entropy, x, y)
    for i, model in enumerate(nets):
        opt = torch.optim.Adam(model.parameters(), lr=LRS[i])
        for _ in range(2):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x)[0], y)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        assert losses[i].item() == pytest.approx(loss.item(), rel=1e-10)
        mine = pop.model(i).state_dict()
        for name, value in model.state_dict().items():
            torch.testing.assert_close(mine[name], value, rtol=1e-9, atol=1e-12)
    inputs = torch.randn(2, 20, 5, dtype=F64)
    spectra, results = pop.spectra(lambda m: m.cell("full"), inputs)
    assert len(results) == 3  # one result per network, from one engine call
    for i in range(3):
        alone = lyapunov_spectrum(pop.model(i).cell("full"), inputs)
        torch.testing.assert_close(spectra[i], alone.exponents, rtol=1e-10, atol=1e-12)
        # each network's own error bars, not pooled over networks
        torch.testing.assert_close(results[i].per_sequence, alone.per_sequence,
                                   rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(results[i].stderr, alone.stderr, rtol=1e-8, atol=1e-12)


def test_per_network_batches():
    nets = three("gru")
    pop = population.Population(nets, LRS, forward_kwargs={"stepwise": True})
    x = torch.randn(3, 3, 4, 5, dtype=F64)  # batch size equal to P must not confuse it
    out = pop(x, per_network=True)
    torch.testing.assert_close(out, torch.stack([m(x[i])[0] for i, m in enumerate(nets)]))
    shared = pop(x[0])
    torch.testing.assert_close(shared, torch.stack([m(x[0])[0] for m in nets]))
    with pytest.raises(ValueError, match="per_network"):
        pop(torch.randn(2, 3, 4, 5, dtype=F64), per_network=True)


def test_population_errors():
    with pytest.raises(ValueError, match="learning rate per model"):
        population.Population(three("rnn"), [1e-3])
    task = tasks.SequenceClassificationTask(data.mnist(), train_size=64, test_size=32)
    configs = [training.RunConfig(architecture=a, hidden_size=8) for a in ("rnn", "gru")]
    with pytest.raises(ValueError, match="one architecture and size"):
        training.train_population(task, configs)


def test_train_population_rows():
    task = tasks.SequenceClassificationTask(data.mnist(), train_size=256, test_size=64)
    configs = [training.RunConfig(architecture="gru", hidden_size=8, epochs=2, batch_size=32,
                                  lr=lr, init=0.2, dropout=0.0, seed=s)
               for s, lr in enumerate([1e-3, 1e-2])]
    rows = training.train_population(task, configs, le_inputs=task.lyapunov_inputs(2, 56),
                                       le_fractions=(0.0, 0.5, 1.0), progress=False)
    assert [r["lr"] for r in rows] == [1e-3, 1e-2]
    assert all(0 <= r["accuracy"] <= 1 and len(r["spectrum"]) == 8 for r in rows)
    assert rows[1]["val_loss"] < rows[0]["val_loss"]  # the larger step learns faster here
    for row, config in zip(rows, configs, strict=True):
        assert sorted(row["spectrum_at"]) == sorted(row["val_loss_at"]) == ["0.0", "0.5", "1.0"]
        assert row["spectrum_at"]["1.0"] == row["spectrum"]
        assert row["val_loss_at"]["1.0"] == row["val_loss"]
        untrained = training.evaluate(config.model(task), task, "val", 32)
        assert row["val_loss_at"]["0.0"] == pytest.approx(untrained, rel=1e-5)
    with pytest.raises(ValueError, match="le_fractions"):
        training.train_population(task, configs, le_fractions=(1.5,))


def test_a_stochastic_population_trains_the_same_whatever_the_global_generator():
    # NoisyRNN draws its training noise from the global generator, which a fresh process
    # seeds at random; train_population seeds it (as train does), and leaves it as it was.
    task = tasks.SequenceClassificationTask(data.mnist(), train_size=128, test_size=32)
    configs = [training.RunConfig(architecture="noisy", hidden_size=8, epochs=1, batch_size=32,
                                  init=0.2, dropout=0.0, seed=s) for s in range(2)]
    runs = []
    for outer in (1, 2):
        torch.manual_seed(outer)
        rows = training.train_population(task, configs, progress=False)
        runs.append([r["val_loss"] for r in rows])
        after = torch.rand(1)
        torch.manual_seed(outer)
        assert torch.equal(after, torch.rand(1))  # the caller's generator is as it was
    assert runs[0] == runs[1]


def test_force_population_equals_single_force_training():
    import copy

    from lyaplib import cells
    nets = [cells.ForceRNN(0, 40, g=1.2 + 0.2 * i, generator=torch.Generator().manual_seed(i),
                           dtype=F64) for i in range(3)]
    singles = copy.deepcopy(nets)
    targets = torch.stack([force.four_sines(900, generator=torch.Generator().manual_seed(9 + i),
                                            dtype=F64) for i in range(3)])
    x0 = 0.5 * torch.randn(3, 40, generator=torch.Generator().manual_seed(1), dtype=F64)
    batched = force.train_force_population(nets, targets, 600, x0=x0, progress=False)
    for i, net in enumerate(singles):
        alone = force.train_force(net, targets[i], 600, x0=x0[i])
        torch.testing.assert_close(nets[i].w_o, net.w_o, rtol=1e-9, atol=1e-12)
        assert batched.test_error[i].item() == pytest.approx(alone.test_error, rel=1e-9)
        assert batched.train_error[i].item() == pytest.approx(alone.train_error, rel=1e-9)
    with pytest.raises(ValueError, match="one \\(T,\\) target per network"):
        force.train_force_population(nets, targets[:2], 600)


def test_population_of_buffer_only_cells_and_autonomous_spectra():
    from lyaplib import cells
    nets = [cells.ForceRNN(0, 30, g=1.8, generator=torch.Generator().manual_seed(i))
            for i in range(3)]
    pop = population.Population(nets, torch.zeros(3))  # FORCE nets have buffers only
    h0 = 0.5 * torch.randn(6, 30, generator=torch.Generator().manual_seed(0))
    # g = 1.8 can be chaotic: a last-bit difference between the vmapped and the plain kernels
    # grows ~1000x per 100 steps, so a short run keeps a 1e-10 tolerance meaningful
    spectra, _ = pop.spectra(lambda m: m, torch.zeros(2, 150, 0), h0=h0, k=5, warmup=50)
    for i, net in enumerate(nets):
        alone = lyapunov_spectrum(net, torch.zeros(2, 150, 0), h0=h0[2 * i: 2 * i + 2], k=5,
                                  warmup=50, dtype=F64)
        torch.testing.assert_close(spectra[i], alone.exponents, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("arch", ["lstm", "gru", "cornn"])
def test_population_steps_do_not_fall_back_to_a_loop_under_vmap(arch):
    """functorch warns "There is a performance drop" when an op has no batching rule and
    runs network by network; a population must never take that path."""
    nets = three(arch)
    pop = population.Population(nets, LRS, forward_kwargs={"stepwise": True})
    x, y = torch.randn(4, 6, 5, dtype=F64), torch.tensor([0, 1, 2, 3])
    inputs = torch.randn(2, 20, 5, dtype=F64)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*performance drop.*")
        pop.train_step(torch.nn.functional.cross_entropy, x, y)
        pop.spectra(lambda m: m.cell("full"), inputs)  # the wide (k = D) LSTM tangent path
