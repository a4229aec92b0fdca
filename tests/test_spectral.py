"""randla.spectral: the spectral norm's bracket against the exact ||A||_2, and the stable rank."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import randla
from randla.spectral import SpectralNormResult, StableRankResult, _bound_factor, spectral_norm, stable_rank
from randla.testing import low_rank, planted, sparse_random
from conftest import dask_array, dense, in_container, to_np


def exact_norm(A) -> float:
    return float(np.linalg.norm(dense(A).astype(np.complex128), 2))


def with_spectrum(s, m, rng=0):
    """m x len(s) with singular values s and Haar-random singular vectors."""
    gen = np.random.default_rng(rng)
    U = np.linalg.qr(gen.standard_normal((m, len(s))))[0]
    V = np.linalg.qr(gen.standard_normal((len(s), len(s))))[0]
    return (U * s) @ V.T


def assert_brackets(r, true, rtol=1e-12):
    """estimate <= ||A||_2 <= upper_bound, up to a relative rounding error rtol."""
    assert r.estimate <= true * (1 + rtol)
    assert r.upper_bound >= true * (1 - rtol)


# -- accuracy on planted spectra ------------------------------------------------------


@pytest.mark.parametrize(
    "decay, rate, shortfall",
    # sigmoid: ~50 of the 200 singular values lie within a few % of sigma_1.
    [
        ("polynomial", 0.5, 1e-10),
        ("polynomial", 1.0, 1e-10),
        ("exponential", 0.9, 1e-10),
        ("sigmoid", None, 2e-3),
    ],
)
@pytest.mark.parametrize("shape", [(300, 200), (200, 300)])
def test_accuracy_against_the_exact_norm(decay, rate, shortfall, shape):
    A = planted(*shape, decay, rate=rate, rng=0).A
    true = exact_norm(A)
    r = spectral_norm(A, rng=0)
    assert isinstance(r, SpectralNormResult) and r.power_iters == 20
    assert_brackets(r, true)
    assert r.estimate >= true * (1 - shortfall)
    # 20 steps on n = 200 at failure probability 1e-6: 1 / sqrt(1 - eps) = 1.0957.
    assert r.upper_bound == pytest.approx(1.0957 * r.estimate, rel=1e-4)


def test_tiny_gap():
    """sigma_1 - sigma_2 = 1e-9: the top pair cannot be told apart in 20 steps,
    but the value is found all the same (both Ritz values sit near it)."""
    s = np.arange(1, 151) ** -0.5
    s[1] = 1 - 1e-9
    A = with_spectrum(s, 200)
    r = spectral_norm(A, rng=0)
    assert_brackets(r, 1.0)
    assert r.estimate >= 1 - 1e-10


def test_bound_tightens_with_more_steps():
    """The same rng gives nested Krylov spaces: the estimate can only grow and
    the bound shrinks towards it as (2q - 1)^-2."""
    A = planted(400, 300, "polynomial", rate=0.5, rng=0).A
    true = exact_norm(A)
    results = [spectral_norm(A, power_iters=q, rng=0) for q in (2, 5, 10, 20, 40)]
    for r in results:
        assert_brackets(r, true)
    assert all(a.estimate <= b.estimate * (1 + 1e-14) for a, b in zip(results, results[1:]))
    ratios = [r.upper_bound / r.estimate for r in results]
    assert all(a > b for a, b in zip(ratios, ratios[1:]))
    assert ratios[-1] < 1.025 and results[-1].estimate >= true * (1 - 1e-12)
    # Two steps already give a lower bound within 15% on this slowly decaying spectrum.
    assert results[0].estimate >= 0.85 * true


def test_failure_probability_sets_the_width():
    A = planted(300, 200, "polynomial", rate=0.5, rng=0).A
    bounds = [spectral_norm(A, failure_probability=p, rng=0).upper_bound for p in (0.1, 1e-6, 1e-12)]
    # sqrt(eps) grows about as log(1 / p) / (2q - 1).
    np.testing.assert_allclose(bounds, [1.0097, 1.0957, 1.3271], rtol=1e-4)


# -- the probabilistic guarantee -------------------------------------------------------


@pytest.mark.parametrize("decay, rate", [("polynomial", 0.5), ("polynomial", 0.1), ("sigmoid", None)])
def test_bracket_holds_over_many_seeds(decay, rate):
    """Default failure probability 1e-6: no failure in 200 starts, with few
    enough steps that the estimate is still far from converged for some."""
    A = planted(40, 30, decay, rate=rate, rng=1).A
    true = exact_norm(A)
    results = [spectral_norm(A, power_iters=4, rng=seed) for seed in range(200)]
    for r in results:
        assert_brackets(r, true)
    assert min(r.estimate for r in results) < 0.95 * true


def test_bound_is_sharp_on_an_adversarial_spectrum():
    """Squared singular values spread as Chebyshev points just below
    (1 - eps) lambda_1, with eps the bound's for 8 steps at failure
    probability 0.1: the bound then fails for about 5% of starts (15 of 200
    seeds here, 5.1% of 2000), at most 10% as promised, and far from never."""
    n, steps = 60, 8
    eps = 1 - _bound_factor(n, steps, 0.1, complex_=False) ** -2
    s2 = np.concatenate([[1.0], (1 - eps) * (1 - np.cos(np.linspace(0, np.pi, n - 1))) / 2])
    A = with_spectrum(np.sqrt(s2), 80)
    results = [spectral_norm(A, power_iters=steps, failure_probability=0.1, rng=seed) for seed in range(200)]
    failures = sum(r.upper_bound < 1.0 for r in results)
    assert 0 < failures <= 0.1 * len(results)
    assert all(r.estimate <= 1 + 1e-12 for r in results)


def test_bound_factor_against_kuczynski_wozniakowski():
    """eps solved from c_n / sinh((2q - 1) atanh sqrt(eps)) = p is never above
    eps solved from KW1992's bound as it is usually quoted,
    1.648 sqrt(n) exp(-sqrt(eps) (2q - 1)) = p."""
    for n in (2, 10, 1000, 10**6):
        for steps in (1, 5, 20, 100):
            for p in (0.5, 1e-3, 1e-12):
                ours = 1 - _bound_factor(n, steps, p, complex_=False) ** -2
                kw = (np.log(1.648 * np.sqrt(n) / p) / (2 * steps - 1)) ** 2
                assert ours <= kw or kw >= 1
                # Below p ~ 0.4 a complex start's bound is the sharper one (|b_1|^2 is Beta(1, n - 1)).
                real, complex_ = (_bound_factor(n, steps, p, complex_=c) for c in (False, True))
                assert p > 0.4 or complex_ <= real


# -- exhausted Krylov spaces -----------------------------------------------------------


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.complex128, 1e-12), (np.float32, 2e-4)])
def test_low_rank_exhausts_the_krylov_space(dtype, rtol):
    """rank 5: the Krylov space of A^H A is invariant after at most 6 steps,
    the estimate is exact and the upper bound only adds a rounding margin."""
    A = low_rank(200, 100, 5, dtype=dtype, rng=0)
    true = exact_norm(A)
    r = spectral_norm(A, rng=0)
    assert r.power_iters <= 6
    assert_brackets(r, true, rtol=np.finfo(dtype).eps * 10)
    assert r.upper_bound <= true * (1 + rtol)


@pytest.mark.parametrize("shape", [(1, 40), (40, 1), (1, 1), (30, 6), (6, 30)])
def test_short_side_exhausted(shape):
    """min(m, n) steps span the whole space: exact up to rounding."""
    A = planted(*shape, "polynomial", rng=0).A
    true = exact_norm(A)
    r = spectral_norm(A, rng=0)
    assert r.power_iters == min(shape)
    assert_brackets(r, true)
    assert r.upper_bound <= true * (1 + 1e-12)


@pytest.mark.parametrize("container", ["numpy", "torch", "linear_operator"])
def test_zero_matrix(container):
    Z = np.zeros((20, 10))
    A = {"numpy": Z, "torch": torch.from_numpy(Z), "linear_operator": aslinearoperator(Z)}[container]
    r = spectral_norm(A, rng=0)
    assert (r.estimate, r.upper_bound, r.power_iters) == (0.0, 0.0, 1)


# -- backends, dtypes and scale --------------------------------------------------------


@pytest.mark.parametrize("container", ["csr", "torch", "torch_coo", "torch_csr", "linear_operator", "dask"])
@pytest.mark.parametrize("wide", [False, True])
def test_backends_match_numpy(container, wide):
    """Every backend draws the same start from the same rng (torch float64 on
    the CPU through NumPy), so the whole bracket agrees to rounding."""
    S = sparse_random(300, 200, 3000, rng=0)
    S = S.T.tocsr() if wide else S
    reference = spectral_norm(S.toarray(), rng=0)
    r = spectral_norm(in_container(S, container), rng=0)
    assert r.estimate == pytest.approx(reference.estimate, rel=1e-12)
    assert r.upper_bound == pytest.approx(reference.upper_bound, rel=1e-12)
    assert_brackets(r, exact_norm(S))
    assert r.estimate >= exact_norm(S) * (1 - 1e-6)


def test_operators_and_composites():
    A = planted(200, 150, "polynomial", rate=0.5, rng=0).A
    Ac = A - A.mean(axis=0)
    r = spectral_norm(randla.Centered(sp.csr_array(A), axis=0), rng=0)
    assert_brackets(r, exact_norm(Ac))
    assert r.estimate >= exact_norm(Ac) * (1 - 1e-8)
    shifted = randla.Shifted(A[:150], 2.0 + 1.0j)  # real matrix, complex products
    r = spectral_norm(shifted, rng=0)
    assert_brackets(r, exact_norm(A[:150] + (2 + 1j) * np.eye(150)))


@pytest.mark.parametrize("dtype", [np.float32, np.complex64, np.complex128])
@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_dtypes(dtype, library):
    A = planted(200, 150, "polynomial", rate=0.5, dtype=dtype, rng=0).A
    true = exact_norm(A)
    r = spectral_norm(torch.from_numpy(A) if library == "torch" else A, rng=0)
    rtol = 1e-5 if dtype in (np.float32, np.complex64) else 1e-12
    assert isinstance(r.estimate, float)
    assert_brackets(r, true, rtol)
    assert r.estimate >= true * (1 - rtol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_computed_in_float32(dtype):
    A = torch.from_numpy(planted(200, 150, "polynomial", rate=0.5, rng=0).A).to(dtype)
    true = exact_norm(to_np(A).astype(np.float64))  # the norm of the rounded matrix
    r = spectral_norm(A, rng=0)
    assert_brackets(r, true, 1e-5)
    assert r.estimate >= true * (1 - 1e-5)


@pytest.mark.parametrize(
    "dtype, scale",
    [(np.float64, 1e-200), (np.float64, 1e200), (np.float64, 1e-300), (np.float64, 1e300),
     (np.float32, 1e-30), (np.float32, 1e30), (np.complex128, 1e250)],
)
def test_far_from_unit_scale(dtype, scale):
    """Squares of A's entries leave the float range here (A^H A is never
    formed); the bracket is the one at unit scale, scaled."""
    A = planted(120, 80, "polynomial", rate=0.5, dtype=dtype, rng=0).A
    reference = spectral_norm(A, rng=0)
    r = spectral_norm(A * np.asarray(scale, dtype=A.real.dtype), rng=0)
    rtol = 1e-5 if dtype == np.float32 else 1e-10
    assert r.estimate / scale == pytest.approx(reference.estimate, rel=rtol)
    assert r.upper_bound / scale == pytest.approx(reference.upper_bound, rel=rtol)


# -- contract: rng, inputs, errors ---------------------------------------------------


def test_same_rng_same_answer(untouched_global_rng):
    A = planted(100, 80, "polynomial", rate=0.5, rng=0).A
    assert spectral_norm(A, power_iters=3, rng=5) == spectral_norm(A, power_iters=3, rng=5)
    gen = np.random.default_rng(5)
    first, second = spectral_norm(A, power_iters=3, rng=gen), spectral_norm(A, power_iters=3, rng=gen)
    assert first.estimate != second.estimate  # a Generator is advanced, not reseeded
    spectral_norm(torch.from_numpy(A).float(), rng=None)


def test_result_is_frozen_and_unpacks():
    r = spectral_norm(planted(50, 40, rng=0).A, rng=0)
    estimate, upper = r
    assert (estimate, upper) == (r.estimate, r.upper_bound)
    assert "SpectralNormResult(estimate=" in repr(r)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.estimate = 2.0


def test_touches_a_only_through_single_vector_products():
    """q products with A and q - 1 with A^H, each against one column; wide A
    is handled as A^H (Lanczos on the short side's Gram matrix)."""
    A = planted(300, 120, "polynomial", rate=0.5, rng=0).A
    calls = []

    def counted(M):
        return LinearOperator(
            M.shape, dtype=M.dtype, matvec=lambda x: M @ x,
            matmat=lambda X: (calls.append(("A", X.shape[1])), M @ X)[1],
            rmatmat=lambda Y: (calls.append(("A^H", Y.shape[1])), M.T @ Y)[1],
        )

    r = spectral_norm(counted(A), power_iters=7, rng=0)
    assert calls.count(("A", 1)) == 7 and calls.count(("A^H", 1)) == 6 and len(calls) == 13
    calls.clear()
    spectral_norm(counted(A.T), power_iters=7, rng=0)
    assert calls.count(("A^H", 1)) == 7 and calls.count(("A", 1)) == 6 and len(calls) == 13
    assert r.power_iters == 7


def test_input_never_modified():
    A = planted(80, 60, rng=0).A
    S = sp.csr_array(A)
    T = torch.from_numpy(A.copy())
    before = A.copy()
    for M in (A, S, T, dask_array(A)):
        spectral_norm(M, rng=0)
        stable_rank(M, rng=0)
    assert np.array_equal(A, before) and np.array_equal(S.toarray(), before)
    assert np.array_equal(T.numpy(), before)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("container", ["numpy", "csr", "torch", "wide"])
def test_non_finite_refused(bad, container):
    A = planted(60, 40, rng=0).A.copy()
    A[7, 3] = bad
    M = {"numpy": A, "csr": sp.csr_array(A), "torch": torch.from_numpy(A), "wide": A.T}[container]
    with pytest.raises(ValueError, match="NaN or Inf"):
        spectral_norm(M, rng=0)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(power_iters=0), r"`power_iters` must be an int >= 1; got 0\."),
        (dict(power_iters=2.5), r"`power_iters` must be an int >= 1; got 2\.5\."),
        (dict(power_iters=True), r"`power_iters` must be an int >= 1; got True\."),
        (dict(failure_probability=0), r"`failure_probability` must be a float in \(0, 1\).*got 0\."),
        (dict(failure_probability=1.0), r"`failure_probability` must be a float in \(0, 1\).*got 1\.0\."),
        (dict(failure_probability=float("nan")), r"`failure_probability` .*got nan\."),
        (dict(failure_probability="1e-6"), r"`failure_probability` .*got '1e-6'\."),
        (dict(rng=-1), r"an int `rng` seed must be >= 0; got -1\."),
    ],
)
@pytest.mark.parametrize("function", [spectral_norm, stable_rank])
def test_bad_arguments(function, kwargs, match):
    with pytest.raises(ValueError, match=match):
        function(planted(30, 20, rng=0).A, **kwargs)


@pytest.mark.parametrize("function", [spectral_norm, stable_rank])
def test_bad_matrices(function):
    with pytest.raises(ValueError, match=r"at least one row and one column; got shape \(0, 5\)"):
        function(np.zeros((0, 5)))
    with pytest.raises(ValueError, match=r"2-D matrix; got 3 dimensions"):
        function(np.ones((2, 2, 2)))
    with pytest.raises(TypeError, match="list"):
        function([[1.0, 0.0], [0.0, 1.0]])
    with pytest.raises(TypeError, match="`rng` must be None, an int"):
        function(np.eye(3), rng="seed")


# -- stable rank -------------------------------------------------------------------------


@pytest.mark.parametrize("container", ["numpy", "csr", "torch", "dask"])
def test_stable_rank_against_the_exact_ratio(container):
    S = sp.csr_array(planted(300, 200, "polynomial", rate=0.5, rng=0).A)
    true = np.linalg.norm(S.toarray()) ** 2 / exact_norm(S) ** 2
    r = stable_rank(in_container(S, container), rng=0)
    assert isinstance(r, StableRankResult)
    assert r.frobenius_norm == pytest.approx(np.linalg.norm(S.toarray()), rel=1e-12)
    assert r.lower_bound <= true <= r.estimate * (1 + 1e-12)
    assert r.estimate == pytest.approx(true, rel=1e-10)
    # The lower bound is the estimate over (upper_bound / estimate)^2 = 1.0957^2.
    assert r.lower_bound == pytest.approx(true / 1.0957**2, rel=1e-3)
    estimate, lower = r
    assert (estimate, lower) == (r.estimate, r.lower_bound)


def test_stable_rank_of_equal_singular_values_is_the_rank():
    A = planted(300, 200, "flat", rank=10, rng=0).A
    r = stable_rank(A, rng=0)
    assert r.estimate == pytest.approx(10.0, rel=1e-12)
    assert r.lower_bound == pytest.approx(10.0, rel=1e-12)  # the Krylov space is exhausted


def test_stable_rank_clipped_to_its_range():
    """One step on a nearly flat spectrum: ||A v||^2 is ||A||_F^2 / n on
    average, so the estimate, an upper bound, often exceeds n = 40, and the
    lower bound (the upper bound on ||A||_2 is ~1e7 times the estimate) is
    far below 1. Both are clipped to [1, 40], where the stable rank lies."""
    A = planted(60, 40, "polynomial", rate=0.1, rng=0).A
    true = np.linalg.norm(A) ** 2 / exact_norm(A) ** 2
    results = [stable_rank(A, power_iters=1, rng=seed) for seed in range(10)]
    assert all(r.lower_bound == 1.0 and true <= r.estimate <= 40.0 for r in results)
    assert any(r.estimate == 40.0 for r in results)


def test_stable_rank_edge_cases():
    assert stable_rank(np.zeros((5, 4)), rng=0)[:2] == (0.0, 0.0)
    assert stable_rank(np.ones((1, 9)), rng=0).estimate == pytest.approx(1.0, rel=1e-12)
    with pytest.raises(ValueError, match=r"needs \|\|A\|\|_F exactly, which a .*LinearOperator does not"):
        stable_rank(aslinearoperator(np.eye(4)))


def test_pretrained_weights(minilm):
    """Every linear layer of a real model (MiniLM), float32: in 20 steps the
    estimate is within 1e-3 below the norm (1e-6 on all but the pooler, whose
    top singular values crowd together), inside the bracket, and the stable
    rank follows."""
    model, _ = minilm
    shortfalls = []
    for name, layer in model.named_modules():
        if isinstance(layer, torch.nn.Linear):
            W = layer.weight.detach()
            exact = float(torch.linalg.matrix_norm(W.double(), 2))
            r = spectral_norm(W, rng=0)
            assert exact * (1 - 1e-3) <= r.estimate <= exact * (1 + 1e-6) <= r.upper_bound, name
            shortfalls.append(1 - r.estimate / exact)
            ratio = float(torch.linalg.matrix_norm(W.double()) ** 2) / exact**2
            assert ratio * (1 - 1e-6) <= stable_rank(W, rng=0).estimate <= ratio * (1 + 2e-3), name
    assert len(shortfalls) == 37 and sorted(shortfalls)[-2] < 1e-6


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_lanczos_vectors_stay_orthonormal_when_a_new_one_is_nearly_dependent(dtype):
    """The second Gram-Schmidt pass, made only when the first removes most of
    y, still leaves y orthogonal to working accuracy; without it, a y almost
    in the span keeps a component of about 1e-8 of its norm there."""
    from randla.backend import namespace
    from randla.spectral import _Basis

    gen = np.random.default_rng(0)
    def draw(*shape):
        x = gen.standard_normal(shape)
        return x + 1j * gen.standard_normal(shape) if dtype == np.complex128 else x

    Q = np.linalg.qr(draw(5000, 20))[0]
    basis = _Basis(namespace(Q), 30, Q[:, :1])
    for j in range(1, 20):
        basis.append(Q[:, j : j + 1])
    for leak in (1.0, 1e-4, 1e-8):  # the part of y outside the span
        y = Q @ draw(20, 1) + leak * draw(5000, 1)
        z = basis.project_out(y)
        assert np.linalg.norm(Q.conj().T @ z) <= 1e-14 * np.linalg.norm(z)


def exact_count(A, eps):
    s = np.linalg.svd(dense(A), compute_uv=False)
    return int(np.sum(s > eps * s[0]))


# Polynomial decay puts the singular values 1% apart at the threshold, where
# the randomized values of the first SVDs fall short and the refinement counts.
@pytest.mark.parametrize("decay, rate, power_iters", [("exponential", 0.9, 2), ("polynomial", 1.0, 2),
                                                      ("polynomial", 1.0, 0)])
@pytest.mark.parametrize("level", [1e-2, 1e-4, 1e-6])
def test_numerical_rank_counts_the_singular_values_above_the_threshold(decay, rate, power_iters, level):
    A = planted(1000, 500, decay, rate=rate, rng=0).A
    s = np.linalg.svd(A, compute_uv=False) / np.linalg.norm(A, 2)
    i = int(np.sum(s > level))  # the threshold halfway (geometrically) between two singular values
    eps = float(np.sqrt(s[i - 1] * s[i])) if i < len(s) else level
    assert randla.numerical_rank(A, eps, power_iters=power_iters, rng=0) == exact_count(A, eps)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [20, 50, 100])
def test_numerical_rank_on_the_slow_decay_of_pretrained_weights(k, seed):
    """sigma_i = i^(-1/2): the count of the first SVDs left out up to 6 of 100."""
    p = planted(500, 300, "polynomial", rate=0.5, rng=0)
    eps = float(p.S[k - 1] + p.S[k]) / 2  # neighbours 0.25% to 1% apart at the threshold
    assert randla.numerical_rank(p.A, eps, rng=seed) == exact_count(p.A, eps) == k


@pytest.mark.parametrize("container", ["csr", "torch", "linear_operator"])
def test_numerical_rank_of_any_container(container):
    A = low_rank(400, 300, rank=37, noise=1e-9, rng=1)
    M = {"csr": sp.csr_array(A), "torch": torch.from_numpy(A), "linear_operator": aslinearoperator(A)}[container]
    assert randla.numerical_rank(M, 1e-6, rng=0) == 37


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_numerical_rank_of_half_precision_tensors(dtype):
    """bfloat16 has no NumPy dtype: the count failed with a TypeError from .numpy()."""
    g = torch.Generator().manual_seed(0)
    W = (torch.randn(300, 12, generator=g) @ torch.randn(12, 200, generator=g)).to(dtype)
    assert randla.numerical_rank(W, 1e-2, rng=0) == 12
    Q, K = torch.randn(2, 256, 32, generator=g, dtype=torch.float32).to(dtype)
    exact = torch.linalg.svdvals(torch.softmax(Q.float() @ K.float().T / 32**0.5, dim=-1).double())
    count = randla.numerical_rank(randla.attention_operator(Q, K), 1e-3, power_iters=4, rng=0)
    assert abs(count - int((exact > 1e-3 * exact[0]).sum())) <= 1


def test_numerical_rank_of_full_rank_and_zero_matrices():
    A = np.random.default_rng(0).standard_normal((60, 40))
    assert randla.numerical_rank(A, 1e-3, rng=0) == 40 == exact_count(A, 1e-3)
    assert randla.numerical_rank(np.zeros((50, 30)), 1e-6, rng=0) == 0


def test_numerical_rank_never_counts_values_below_the_threshold_of_the_true_norm():
    """60 values crowded at the top leave the Lanczos estimate of ||A||_2 2.4e-4 low, and the
    threshold eps times it counted 10 values 5e-5 below eps ||A||_2: 110 for 100 in 18 of 20 seeds."""
    s = np.sort(np.concatenate([1 + np.linspace(0, 0.01, 60), np.linspace(0.5, 0.102, 40),
                                np.full(10, 0.100995), np.linspace(0.05, 0.001, 90)]))[::-1]
    A = with_spectrum(s, 300)
    assert exact_count(A, 0.1) == 100
    assert spectral_norm(A, rng=0).estimate < s[0] * (1 - 1e-4)  # the case: a low estimate
    assert [randla.numerical_rank(A, 0.1, rng=seed) for seed in range(20)] == [100] * 20


@pytest.mark.parametrize("scale", [1e-300, 1e157, 1e300])
def test_numerical_rank_far_from_unit_scale(scale):
    """The count is scale-invariant; threshold^2 - error^2 in Python floats raised OverflowError beyond 1e157."""
    gen = np.random.default_rng(0)
    A = gen.standard_normal((40, 5)) @ gen.standard_normal((5, 30))
    assert randla.numerical_rank(A * scale, 1e-3, rng=0) == 5
    p = planted(500, 300, "polynomial", rate=0.5, rng=0)
    eps = float(p.S[49] + p.S[50]) / 2  # neighbours 1% apart: the refinement counts
    assert randla.numerical_rank(p.A * scale, eps, rng=0) == exact_count(p.A, eps) == 50


@pytest.mark.parametrize("eps", [0, 1, -1e-3, "1e-3", True])
def test_numerical_rank_bad_eps(eps):
    with pytest.raises(ValueError, match="`eps` must be a float in \\(0, 1\\)"):
        randla.numerical_rank(np.eye(5), eps)


@pytest.mark.parametrize("dtype, noise", [(np.float32, 1e-3), (np.float64, 1e-8), (np.float64, 1.0)])
def test_stable_rank_of_a_residual(dtype, noise):
    """||A - L R||_F from the cancelling three-term formula made the stable rank of a small
    residual 1.0 for a true 59.5 (float64) and 88 for 57 (float32). Where that norm cannot be
    had exactly, stable_rank refuses, as documented; otherwise its bracket holds."""
    rng = np.random.default_rng(0)
    A = (rng.standard_normal((300, 10)) @ rng.standard_normal((10, 200)) + noise * rng.standard_normal((300, 200)))
    A = A.astype(dtype)
    L, R = randla.svd(A, 10, rng=0).factors()
    E = A.astype(np.float64) - L.astype(np.float64) @ R.astype(np.float64)
    exact = (np.linalg.norm(E) / np.linalg.norm(E, 2)) ** 2
    res = randla.residual(A, L, R)
    if res.norm() is None:
        assert noise < 1.0  # a residual of a third of ||A||_F keeps its exact norm
        with pytest.raises(ValueError, match="needs \\|\\|A\\|\\|_F exactly"):
            stable_rank(res, rng=0)
        return
    r = stable_rank(res, rng=0)
    assert r.lower_bound <= exact <= r.estimate * (1 + 1e-12)
    assert r.estimate == pytest.approx(exact, rel=0.05)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_spectral_norm_of_real_torch_matrix_with_complex_shift(dtype):
    """A real torch matrix met the complex blocks of a complex shift and torch refused the
    mixed product; NumPy gives ||S + iI||_2."""
    S = np.random.default_rng(0).standard_normal((40, 40))
    exact = np.linalg.norm(S + 1j * np.eye(40), 2)
    r = spectral_norm(randla.Shifted(torch.as_tensor(S).to(dtype), 1j), rng=0)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    assert r.estimate == pytest.approx(exact, rel=tol)
    assert r.estimate <= exact * (1 + tol) and exact <= r.upper_bound
