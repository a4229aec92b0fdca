import numpy as np
import pytest
import torch

from randla.nn.factorize import break_even_rank, spectrum


def _weight(m, n, seed=0, decay=0.5):
    # Slowly decaying spectrum, as in pretrained weights: sigma_i = i^-decay.
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(m, min(m, n), generator=g, dtype=torch.float64))
    V, _ = torch.linalg.qr(torch.randn(n, min(m, n), generator=g, dtype=torch.float64))
    s = torch.arange(1, min(m, n) + 1, dtype=torch.float64) ** -decay
    return ((U * s) @ V.T).float()


def _inputs(n, count, seed=1, rank=None):
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(n, n, generator=g, dtype=torch.float64) * torch.logspace(0, -3, n, dtype=torch.float64)
    X = mix @ torch.randn(n, count, generator=g, dtype=torch.float64)
    if rank is not None:
        X = X[:, :rank]
    return X


def _truncation_error(M, rank):
    s = torch.linalg.svdvals(M.double())
    return float(s[rank:].square().sum().sqrt())


def test_break_even_rank():
    assert break_even_rank((384, 1536)) == 307
    for shape in [(10, 10), (1, 5), (7, 3)]:
        r = break_even_rank(shape)
        assert r * sum(shape) < shape[0] * shape[1] <= (r + 1) * sum(shape)


@pytest.mark.parametrize("method", ["exact", "rsi", "rsvd"])
def test_weight_methods_against_exact_svd(method):
    W = _weight(120, 80)
    spec = spectrum(W, 40, method, rng=0)
    up, down = spec.factors(40)
    error = float(torch.linalg.norm(W.double() - (up @ down).double()))
    optimum = _truncation_error(W, 40)
    assert error >= optimum * (1 - 1e-5)
    assert error <= (1.02 if method != "rsvd" else 1.5) * optimum
    # The predicted errors are the errors of the prefixes.
    predicted = spec.relative_errors()
    for r in (1, 10, 40):
        u, d = spec.factors(r)
        actual = float(torch.linalg.norm(W.double() - (u @ d).double()) ** 2 / torch.linalg.norm(W.double()) ** 2)
        assert predicted[r] == pytest.approx(actual, rel=1e-3, abs=1e-6)


def test_whitened_minimises_the_output_error():
    W = _weight(60, 90)
    X = _inputs(90, 400)
    G = X @ X.T
    rank = 20
    spec = spectrum(W, rank, "whitened", gram=G, rng=0)
    up, down = spec.factors(rank)
    output_error = float(torch.linalg.norm((W.double() - (up @ down).double()) @ X))
    optimum = _truncation_error(W.double() @ X, rank)  # Eckart-Young on the outputs W X
    assert output_error <= 1.02 * optimum
    plain = spectrum(W, rank, "exact").factors(rank)
    plain_error = float(torch.linalg.norm((W.double() - (plain[0] @ plain[1]).double()) @ X))
    assert output_error < 0.9 * plain_error
    assert spec.relative_errors()[rank] == pytest.approx(output_error**2 / float(torch.linalg.norm(W.double() @ X)) ** 2, rel=1e-3)


def test_whitened_is_safe_with_a_singular_gram():
    W = _weight(50, 80)
    X = _inputs(80, 400, rank=30)  # 30 inputs span 30 of 80 dimensions
    spec = spectrum(W, 10, "whitened", gram=X @ X.T, rng=0)
    up, down = spec.factors(10)
    assert torch.isfinite(up).all() and torch.isfinite(down).all()
    output_error = float(torch.linalg.norm((W.double() - (up @ down).double()) @ X))
    assert output_error <= 1.02 * _truncation_error(W.double() @ X, 10)
    assert float(torch.linalg.norm(down)) <= 2 * float(torch.linalg.norm(W))


def test_plain_methods_report_output_errors_with_a_gram():
    W = _weight(60, 90)
    X = _inputs(90, 300)
    spec = spectrum(W, 15, "exact", gram=X @ X.T)
    up, down = spec.factors(15)
    actual = float(torch.linalg.norm((W.double() - (up @ down).double()) @ X) ** 2 / torch.linalg.norm(W.double() @ X) ** 2)
    assert spec.relative_errors()[15] == pytest.approx(actual, rel=1e-4)


@pytest.mark.parametrize("method", ["exact", "rsi", "rsvd", "whitened", "fisher"])
def test_weighted_output_errors_are_those_of_the_prefixes(method):
    # The allocator reads these curves: with output weights the components'
    # cross terms count, and leaving them out once predicted 0 for errors of 0.6.
    W = _weight(60, 90)
    X = _inputs(90, 300)
    weights = torch.logspace(-2, 1, 60, dtype=torch.float64)[torch.randperm(60, generator=torch.Generator().manual_seed(2))]
    spec = spectrum(W, 30, method, gram=X @ X.T, output_weights=weights, row_importance=weights, rng=0)
    total = float((weights * (W.double() @ X).square().sum(dim=1)).sum())
    predicted = spec.relative_errors()
    for r in (1, 5, 15, 30):
        u, d = spec.factors(r)
        actual = float((weights * ((W.double() - (u @ d).double()) @ X).square().sum(dim=1)).sum()) / total
        assert predicted[r] == pytest.approx(actual, rel=1e-4, abs=1e-9)


def test_fisher_minimises_the_row_weighted_error():
    W = _weight(70, 50)
    importance = torch.logspace(-2, 2, 70, dtype=torch.float64)
    spec = spectrum(W, 15, "fisher", row_importance=importance, rng=0)
    up, down = spec.factors(15)
    D = importance.sqrt()[:, None]
    weighted = float(torch.linalg.norm(D * (W.double() - (up @ down).double())))
    assert weighted <= 1.02 * _truncation_error(D * W.double(), 15)
    plain = spectrum(W, 15, "exact").factors(15)
    assert weighted < float(torch.linalg.norm(D * (W.double() - (plain[0] @ plain[1]).double())))


def test_fisher_with_dead_rows_stays_finite():
    W = _weight(40, 30)
    importance = torch.ones(40, dtype=torch.float64)
    importance[:5] = 0.0
    up, down = spectrum(W, 10, "fisher", row_importance=importance, rng=0).factors(10)
    assert torch.isfinite(up).all() and float(torch.linalg.norm(up @ down)) <= 2 * float(torch.linalg.norm(W))


def test_rsi_within_5_percent_of_exact_on_minilm_layers(minilm):
    # The seed paper's claim on pretrained weights: with power iterations,
    # randomized SVD is near-optimal even where the spectrum decays slowly.
    model, _ = minilm
    layers = [(name, m) for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert len(layers) >= 36
    ratios = []
    for name, linear in layers:
        W = linear.weight.detach()
        rank = min(W.shape) // 2
        up, down = spectrum(W, rank, "rsi", rng=0).factors(rank)
        error = float(torch.linalg.norm(W.double() - (up @ down).double()))
        ratios.append(error / _truncation_error(W, rank))
    assert max(ratios) <= 1.05, dict(zip([n for n, _ in layers], np.round(ratios, 4)))
    assert min(ratios) >= 1 - 1e-5
