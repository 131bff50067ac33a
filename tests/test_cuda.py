"""The library on CUDA: every cell's tangent, the engine, a population, AeLLE.

Skipped where there is no GPU (CI's CPU machine); ``tools/gpu_check.sh`` runs it on one.
Each result on the GPU is compared with the same computation on the CPU, so a tensor
left on the wrong device, or a CUDA kernel that differs beyond rounding, fails here.
"""

import pytest
import torch
from torch import nn

from lyaplib import aelle, cells, lyapunov_spectrum, models, population, scale, training
from lyaplib.testing import CELLS, check_tangent

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
CUDA = torch.device("cuda")
F64 = torch.float64


@pytest.mark.parametrize("name", CELLS)
def test_every_tangent_matches_autograd_on_cuda(name):
    torch.manual_seed(sum(map(ord, name)))
    check_tangent(CELLS[name](), device=CUDA)


def test_a_map_without_parameters_runs_where_it_is_told():
    on_cpu = lyapunov_spectrum(cells.Henon(), 3000, warmup=100, dtype=F64)
    on_gpu = lyapunov_spectrum(cells.Henon(), 3000, warmup=100, dtype=F64, device="cuda")
    assert on_gpu.per_sequence.device.type == "cuda" and on_gpu.state.device.type == "cuda"
    torch.testing.assert_close(on_gpu.exponents.cpu(), on_cpu.exponents, rtol=0, atol=1e-9)
    # det J = -b everywhere: the sum is exact on any device
    assert abs(float(on_gpu.exponents.sum()) - torch.log(torch.tensor(0.3, dtype=F64))) < 1e-9


def test_error_bars_and_the_convergence_report_on_cuda_as_on_the_cpu():
    runs = [lyapunov_spectrum(cells.Henon(), 3000, warmup=100, dtype=F64, device=device)
            for device in ("cpu", "cuda")]
    cpu, gpu = runs
    assert gpu.block_sums.device.type == "cuda"
    torch.testing.assert_close(gpu.stderr.cpu(), cpu.stderr, rtol=1e-6, atol=0)
    lower, upper = gpu.confidence_interval(0.9)
    assert lower.device.type == "cuda" and bool((lower < upper).all())
    assert gpu.split_half.device.type == "cuda"
    report = gpu.convergence(0.01)
    torch.testing.assert_close(report.half_width, cpu.convergence(0.01).half_width,
                               rtol=1e-6, atol=0)


def test_engine_on_cuda_matches_the_cpu_for_an_lstm():
    torch.manual_seed(0)
    model = models.RecurrentClassifier("lstm", 8, 16, 4).double()
    x = torch.randn(3, 200, 8, dtype=F64)
    cpu = lyapunov_spectrum(model.cell("full"), x, warmup=20)
    gpu_model = model.to(CUDA)
    gpu = lyapunov_spectrum(gpu_model.cell("full"), x.to(CUDA), warmup=20)
    assert gpu.per_sequence.device.type == "cuda"
    torch.testing.assert_close(gpu.per_sequence.cpu(), cpu.per_sequence, rtol=0, atol=1e-8)
    # float32, the GPU default of the trackers, against float64 (a few 1e-4 at most)
    f32 = lyapunov_spectrum(gpu_model.cell("full"), x.to(CUDA), warmup=20, dtype=torch.float32)
    assert (f32.exponents.cpu() - cpu.exponents)[:8].abs().max() < 2e-3


def test_trackers_default_to_float32_on_cuda_and_float64_on_the_cpu():
    assert scale.analysis_dtype("cuda") == torch.float32
    assert scale.analysis_dtype("cpu") == torch.float64
    torch.manual_seed(0)
    model = models.RecurrentClassifier("gru", 3, 12, 4).to(CUDA)
    result = training.LyapunovTracker(torch.randn(2, 50, 3), jacobian="hidden")(model)
    assert result.per_sequence.device.type == "cuda"
    assert torch.isfinite(result.exponents).all()


def test_a_population_trains_and_measures_on_cuda_as_on_the_cpu():
    nets = []
    for seed in range(3):
        torch.manual_seed(seed)
        nets.append(models.RecurrentClassifier("lstm", 5, 8, 10, init=0.3).double())
    x, y = torch.randn(6, 7, 5, dtype=F64), torch.randint(0, 10, (6,))
    inputs = torch.randn(2, 30, 5, dtype=F64)
    results = {}
    for device in ("cpu", "cuda"):
        pop = population.Population(nets, [1e-2, 2e-2, 5e-3],
                                    forward_kwargs={"stepwise": True}).to(device)
        losses = pop.train_step(nn.functional.cross_entropy, x.to(device), y.to(device))
        spectra, _ = pop.spectra(lambda m: m.cell("full"), inputs.to(device), dtype=F64)
        assert spectra.device.type == device
        results[device] = losses.cpu(), spectra.cpu()
    torch.testing.assert_close(results["cuda"][0], results["cpu"][0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(results["cuda"][1], results["cpu"][1], rtol=0, atol=1e-8)
    pop = population.Population(nets, [1e-2] * 3, forward_kwargs={"stepwise": True}).to(CUDA)
    pop = pop.float()
    spectra, results = pop.spectra(lambda m: m.cell("full"), inputs.float().to(CUDA))
    assert results[0].per_sequence.dtype == F64 and torch.isfinite(spectra).all()


def test_aelle_fits_and_compares_on_cuda():
    g = torch.Generator().manual_seed(0)
    spectra = [torch.sort(torch.randn(int(k), generator=g, dtype=F64), descending=True).values
               for k in torch.randint(8, 33, (60,), generator=g)]
    losses = torch.rand(60, generator=g, dtype=F64)
    config = aelle.AeConfig(latent=4, alphas=(1.0, 5.0), epochs_per_stage=5, patience=3)
    on_gpu = aelle.compare([s.to(CUDA) for s in spectra], losses.to(CUDA), points=32,
                           config=config, progress=False)
    on_cpu = aelle.compare(spectra, losses, points=32, config=config, progress=False)
    # dropout draws from each device's own generator, so the two fits differ: compared
    # are where the results live and what they hold, not their values
    assert on_gpu.embedding.device.type == "cuda"
    assert on_gpu.embedding.shape == on_cpu.embedding.shape == (60, 2)
    assert set(on_gpu.scores) == set(on_cpu.scores)
    assert torch.isfinite(on_gpu.embedding).all()
    pcs = on_gpu.embedding
    good = aelle.good_labels(losses.to(CUDA))
    rule = aelle.OrthantClassifier.fit(pcs, good)
    assert rule.predict(pcs).device.type == "cuda"
    assert aelle.LinearClassifier.fit(pcs, good).predict(pcs).device.type == "cuda"
