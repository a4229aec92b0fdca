"""randla.svd: accuracy against the exact SVD, the property battery, backends,
and the tolerance mode."""

from __future__ import annotations

import dataclasses
import math
import tracemalloc

import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.sparse.linalg import aslinearoperator

import randla
from randla.testing import low_rank, planted, sparse_random
from conftest import (
    METHODS,
    assert_orthonormal_columns,
    assert_sorted_nonnegative,
    dask_array,
    dense,
    eps_of,
    frobenius_error_ratio,
    matrix,
    relative_error,
    singular_values,
    spectral_error_ratio,
    to_np,
    torch_sparse,
)


# Beyond ~1e154 (float64) or ~1e19 (float32) the Gram matrix of Cholesky-QR
# overflows (NumPy warns) and Householder QR takes over; nothing else may warn.
GRAM_OVERFLOW = pytest.mark.filterwarnings(
    "ignore:(overflow|invalid value) encountered in matmul:RuntimeWarning"
)


def scaled_relative_error(A, r, scale) -> float:
    """||A - U S Vh / scale||_F / ||A||_F for a result r of svd(A * scale)."""
    U, S, Vh = (to_np(x).astype(np.complex128) for x in r)
    return float(np.linalg.norm(A - (U * (S / scale)) @ Vh) / np.linalg.norm(A))


def hmt_rsvd_bound(s, k, oversample):
    """Spectral error of a one-sketch rank-k truncated SVD, HMT2011 Thm. 10.6
    (range finder with k + p columns) plus sigma_{k+1} for the truncation."""
    p = oversample
    range_error = (1 + math.sqrt(k / (p - 1))) * s[k] + math.e * math.sqrt(k + p) / p * math.sqrt(
        float(np.sum(s[k:] ** 2))
    )
    return s[k] + range_error


def hmt_rsvd_frobenius_factor(k, oversample):
    """Bound on ||A - U S Vh||_F / (sum_{i>k} sigma_i^2)^{1/2} for a one-sketch
    SVD: (1 + k/(p-1))^{1/2} for the range finder (HMT2011 Thm. 10.5), and the
    truncation adds an orthogonal part of at most the optimal error."""
    return math.sqrt(2 + k / (oversample - 1))


# -- accuracy against the optimum --------------------------------------------------

# Bounds on ||A - U S Vh||_2 / sigma_{k+1} (1 is optimal), on ||A - U S Vh||_F
# / (sum_{i>k} sigma_i^2)^{1/2}, and on max_i |S_i - sigma_i| / sigma_i.
# rsi and block_krylov make 4 passes of A A^H by default; rsvd makes none and
# is held to its own theorem (hmt_rsvd_bound) instead of a fixed ratio.
SPECTRA = {
    # name: (matrix, k, {method: (spectral, frobenius, singular values)})
    "slow": (
        lambda seed: planted(300, 200, "polynomial", rate=0.5, rng=seed).A,
        20,
        {"rsi": (1.1, 1.02, 0.05), "block_krylov": (1.1, 1.01, 1e-2), "rsvd": (None, None, 0.5)},
    ),
    "fast": (
        lambda seed: planted(300, 200, "exponential", rate=0.8, rng=seed).A,
        20,
        {"rsi": (1.01, 1.01, 1e-10), "block_krylov": (1.01, 1.01, 1e-10), "rsvd": (None, None, 0.1)},
    ),
    "flat": (
        lambda seed: planted(300, 200, "flat", rng=seed).A,
        20,
        {m: (1 + 1e-10, 1 + 1e-10, 1e-10) for m in METHODS},
    ),
    "low_rank_plus_noise": (
        lambda seed: low_rank(300, 200, 10, noise=1e-3, rng=seed),
        10,
        {"rsi": (1.1, 1.01, 1e-8), "block_krylov": (1.1, 1.01, 1e-8), "rsvd": (None, None, 0.01)},
    ),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("spectrum", sorted(SPECTRA))
@pytest.mark.parametrize("seed", [0, 1])
def test_accuracy_against_exact_svd(spectrum, method, seed):
    make, k, bounds = SPECTRA[spectrum]
    A = make(seed)
    s = singular_values(A)
    r = randla.svd(A, k, method=method, rng=seed + 10)
    spectral, frobenius, values = bounds[method]
    if spectral is None:
        spectral = hmt_rsvd_bound(s, k, 10) / s[k]
    if frobenius is None:
        frobenius = hmt_rsvd_frobenius_factor(k, 10)
    ratio = spectral_error_ratio(A, r, k, s)
    assert 1 - 1e-10 <= ratio <= spectral, ratio
    assert 1 - 1e-10 <= frobenius_error_ratio(A, r, k, s) <= frobenius
    assert np.max(np.abs(r.S - s[:k]) / s[:k]) <= values
    # Ritz values of a projection never exceed the true singular values.
    assert np.all(r.S <= s[:k] * (1 + 1e-12))


def test_rsvd_is_less_accurate_than_rsi_on_slow_decay():
    """The power iterations earn their cost where the spectrum decays slowly."""
    A = planted(300, 200, "polynomial", rate=0.5, rng=3).A
    s = singular_values(A)
    one_pass = spectral_error_ratio(A, randla.svd(A, 20, method="rsvd", rng=0), 20, s)
    four = spectral_error_ratio(A, randla.svd(A, 20, method="rsi", rng=0), 20, s)
    assert four <= 1.1 < one_pass


@pytest.mark.parametrize("power_iters", [0, 1, 2, 4])
def test_block_krylov_converges_with_passes(power_iters):
    A = planted(300, 200, "polynomial", rate=0.5, rng=0).A
    s = singular_values(A)
    ratio = spectral_error_ratio(A, randla.svd(A, 10, method="block_krylov", power_iters=power_iters, rng=0), 10, s)
    assert ratio <= {0: 3.0, 1: 1.2, 2: 1.05, 4: 1.01}[power_iters]


@pytest.mark.parametrize("method", METHODS)
def test_exact_low_rank_recovered(method):
    A = low_rank(300, 200, 10, rng=0)
    r = randla.svd(A, 10, method=method, rng=0)
    assert relative_error(A, r, ord=2) <= 1e-10
    np.testing.assert_allclose(r.S, singular_values(A)[:10], rtol=1e-10)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(300, 200), (200, 300)])
def test_rank_deficient_matrix(method, shape):
    """rank(A) = 5 < k = 12: A is recovered, the extra singular values are ~0,
    and all 12 singular vectors are still orthonormal."""
    A = low_rank(*shape, 5, rng=1)
    r = randla.svd(A, 12, method=method, rng=0)
    assert r.rank == 12
    assert relative_error(A, r, ord=2) <= 1e-10
    assert np.all(r.S[5:] <= 1e-10 * r.S[0])
    assert_orthonormal_columns(r.U, 1e-10)
    assert_orthonormal_columns(r.Vh.T, 1e-10)
    assert_sorted_nonnegative(r.S)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(40, 30), (30, 40)])
def test_zero_matrix(method, shape):
    A = np.zeros(shape)
    r = randla.svd(A, 5, method=method, rng=0)
    assert np.array_equal(r.S, np.zeros(5))
    assert np.all(np.isfinite(r.U)) and np.all(np.isfinite(r.Vh))
    assert_orthonormal_columns(r.U, 1e-12)
    assert_orthonormal_columns(r.Vh.T, 1e-12)
    assert np.array_equal(r.reconstruct(), A)


def test_zero_matrix_tol_mode():
    r = randla.svd(np.zeros((40, 30)), tol=0.1, rng=0)
    assert r.converged
    assert r.error_estimate == 0.0
    assert np.all(r.S == 0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("scale", [1e-150, 1e150])
def test_tiny_and_huge_scale(method, scale):
    """Accuracy does not depend on the magnitude of A (no overflow, no
    underflow, no warnings)."""
    p = planted(200, 100, "polynomial", rate=0.5, scale=scale, rng=0)
    r = randla.svd(p.A, 10, method=method, rng=0)
    s = singular_values(p.A)
    np.testing.assert_allclose(s, p.S, rtol=1e-10)
    bound = hmt_rsvd_bound(s, 10, 10) / s[10] if method == "rsvd" else 1.1
    assert spectral_error_ratio(p.A, r, 10, s) <= bound
    assert np.all(np.isfinite(r.S))
    assert np.max(np.abs(r.S - s[:10]) / s[:10]) <= (0.5 if method == "rsvd" else 0.01)


@GRAM_OVERFLOW
@pytest.mark.parametrize("scale", [1e-300, 1e-170, 1e-150, 1e150, 1e160, 1e300])
def test_tiny_and_huge_scale_tol_mode(scale):
    """||A||_F^2 and s_i^2 leave the float64 range beyond ~1e154 and below
    ~1e-154; the tolerance mode works with norms relative to ||A||_F, so
    rank, error and estimate are those at unit scale."""
    p = planted(200, 100, "polynomial", rate=0.5, rng=0)
    reference = randla.svd(p.A, tol=0.5, rng=0)
    r = randla.svd(p.A * scale, tol=0.5, rng=0)
    true = scaled_relative_error(p.A, r, scale)
    assert r.converged and true <= 0.5
    assert r.error_estimate == pytest.approx(true, rel=1e-6)
    assert r.rank == reference.rank


@GRAM_OVERFLOW
@pytest.mark.parametrize("scale", [1e-22, 1e20])
@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_float32_far_from_unit_scale_tol_mode(library, scale):
    """float32 squares leave the range beyond ~1e19 and below ~1e-19."""
    p = planted(200, 100, "polynomial", rate=0.5, rng=0)
    A = (p.A * scale).astype(np.float32)
    r = randla.svd(torch.from_numpy(A) if library == "torch" else A, tol=0.3, rng=0)
    reference = randla.svd(p.A.astype(np.float32), tol=0.3, rng=0)
    true = scaled_relative_error(p.A, r, scale)
    assert r.converged and true <= 0.3 * (1 + 1e-4)
    assert r.error_estimate == pytest.approx(true, rel=1e-3)
    assert abs(r.rank - reference.rank) <= 1


def test_integer_sparse_tol_mode():
    """Integer sparse input is promoted to float64 before ||A||_F is taken:
    squares of these entries overflow int32."""
    D = np.round(planted(300, 200, "polynomial", rate=1.0, rng=0).A * 1e8).astype(np.int32)
    assert int(np.abs(D).max()) ** 2 > np.iinfo(np.int32).max
    r = randla.svd(sp.csr_array(D), tol=0.3, rng=0)
    true = relative_error(D.astype(np.float64), r)
    assert r.converged and true <= 0.3
    assert r.error_estimate == pytest.approx(true, rel=1e-6)
    assert r.rank == randla.svd(D.astype(np.float64), tol=0.3, rng=0).rank


def test_singular_vectors_match_exact_ones():
    """On a well separated spectrum the vectors converge to the exact ones."""
    A = planted(300, 200, "exponential", rate=0.7, rng=0).A
    U0, s0, Vh0 = np.linalg.svd(A, full_matrices=False)
    U, S, Vh = randla.svd(A, 8, rng=0)
    # Compare projectors, which do not depend on the signs.
    np.testing.assert_allclose(U @ U.T, U0[:, :8] @ U0[:, :8].T, atol=1e-10)
    np.testing.assert_allclose(Vh.T @ Vh, Vh0[:8].T @ Vh0[:8], atol=1e-10)


@pytest.mark.parametrize("shape", [(120, 80), (80, 120)])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_signs_are_deterministic(shape, dtype):
    """The singular vectors do not depend on the seed once converged: their
    signs (phases) are fixed by a rule, not left to the random sketch."""
    A = matrix(shape, dtype, decay="exponential", rate=0.6, rng=0)
    a = randla.svd(A, 6, rng=1)
    b = randla.svd(A, 6, rng=2)
    np.testing.assert_allclose(a.U, b.U, atol=1e-8)
    np.testing.assert_allclose(a.Vh, b.Vh, atol=1e-8)
    # The documented rule: on the shorter side the entry of largest
    # magnitude of each singular vector is real and positive.
    short = a.Vh if shape[0] >= shape[1] else a.U.T
    pivots = short[np.arange(6), np.argmax(np.abs(short), axis=1)]
    assert np.all(np.abs(np.imag(pivots)) <= 1e-12) and np.all(np.real(pivots) > 0)


# -- the property battery ----------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, out",
    [
        (np.float32, np.float32),
        (np.float64, np.float64),
        (np.complex64, np.complex64),
        (np.complex128, np.complex128),
        (np.int64, np.float64),
        (np.int32, np.float64),
        (np.float16, np.float16),
    ],
)
@pytest.mark.parametrize("method", METHODS)
def test_dtype_kept(dtype, out, method):
    A = matrix((90, 60), dtype, decay="exponential", rate=0.7)
    r = randla.svd(A, 5, method=method, rng=0)
    assert r.U.dtype == out and r.Vh.dtype == out
    assert r.S.dtype == np.finfo(out).dtype  # real, same precision
    assert r.U.shape == (90, 5) and r.S.shape == (5,) and r.Vh.shape == (5, 60)
    tol = 1e-2 if dtype == np.float16 else 50 * eps_of(r.U)
    assert_orthonormal_columns(r.U, tol)
    assert_orthonormal_columns(r.Vh.conj().T, tol)
    exact = singular_values(np.asarray(A, dtype=np.complex128 if np.dtype(out).kind == "c" else np.float64))
    rtol = {"rsvd": 0.05, "rsi": 1e-4, "block_krylov": 1e-4}[method]
    np.testing.assert_allclose(to_np(r.S), exact[:5], rtol=max(rtol, 1e-2 if dtype == np.float16 else 0))


@pytest.mark.parametrize(
    "dtype, out",
    [
        (torch.float32, torch.float32),
        (torch.float64, torch.float64),
        (torch.complex128, torch.complex128),
        (torch.int64, torch.float64),
        (torch.bfloat16, torch.bfloat16),
        (torch.float16, torch.float16),
    ],
)
def test_torch_dtype_kept(dtype, out):
    base = np.complex128 if dtype.is_complex else np.float64
    A = torch.as_tensor(matrix((90, 60), base, decay="exponential", rate=0.7))
    A = torch.round(100 * A).to(dtype) if dtype == torch.int64 else A.to(dtype)
    U, S, Vh = randla.svd(A, 5, rng=0)
    assert isinstance(U, torch.Tensor) and isinstance(S, torch.Tensor)
    assert U.dtype == out and Vh.dtype == out and S.dtype == out.to_real()
    assert U.shape == (90, 5) and S.shape == (5,) and Vh.shape == (5, 60)


@pytest.mark.parametrize("dtype", [np.longdouble, np.clongdouble])
def test_extended_precision_comes_back_in_it(dtype):
    """Computed in float64 / complex128; U and Vh return in A's dtype, S in its real counterpart."""
    A = matrix((90, 60), np.complex128 if dtype == np.clongdouble else np.float64, decay="exponential", rate=0.7)
    r = randla.svd(A.astype(dtype), 5, rng=0)
    assert r.U.dtype == dtype and r.Vh.dtype == dtype and r.S.dtype == np.longdouble
    np.testing.assert_allclose(r.S.astype(np.float64), singular_values(A)[:5], rtol=1e-10)


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_float16_result_beyond_its_range_refused(library):
    """Every entry is a plain float16 (201), sigma_1 is 7.3e4 > 65504: an inf
    in S would be a wrong answer, so the error says what to pass instead."""
    A = np.full((400, 330), 201.0, dtype=np.float16)
    A = torch.from_numpy(A) if library == "torch" else A
    with pytest.raises(ValueError, match="beyond the largest (torch.)?float16.*float32 or bfloat16"):
        randla.svd(A, 2, rng=0)
    with pytest.raises(ValueError, match="beyond the largest (torch.)?float16"):
        randla.eigh(A[:330], 2, rng=0)  # lambda_1 = 201 * 330
    assert bool(np.isfinite(to_np(randla.svd(A / 4, 2, rng=0).S)).all())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("shape", [(90, 60), (60, 90)])
def test_half_precision_is_computed_in_float32(dtype, shape):
    """bf16/fp16 in: the work is float32 on the same values, rounded at the end."""
    A = torch.as_tensor(planted(*shape, "exponential", rate=0.7, rng=0).A).to(dtype)
    half = randla.svd(A, 5, rng=3)
    single = randla.svd(A.float(), 5, rng=3)
    for h, s in zip(half, single):
        assert h.dtype == dtype
        assert torch.equal(h, s.to(dtype))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(150, 60), (60, 150), (80, 80)])
def test_orthonormal_sorted_and_planted_rank(method, shape):
    A = low_rank(*shape, 7, rng=2)
    r = randla.svd(A, 7, method=method, rng=0)
    assert r.U.shape == (shape[0], 7) and r.Vh.shape == (7, shape[1])
    assert_orthonormal_columns(r.U, 1e-12)
    assert_orthonormal_columns(r.Vh.T, 1e-12)
    assert_sorted_nonnegative(r.S)
    # The planted rank: 7 singular values 1, 1/2, ..., 1/7.
    np.testing.assert_allclose(r.S, 1 / np.arange(1, 8), rtol=1e-10)
    assert relative_error(A, r) <= 1e-10


@pytest.mark.parametrize("method", METHODS)
def test_same_rng_same_result(method):
    A = planted(100, 70, rng=0).A
    a = randla.svd(A, 5, method=method, rng=42)
    b = randla.svd(A, 5, method=method, rng=42)
    for x, y in zip(a, b):
        assert np.array_equal(x, y)
    c = randla.svd(A, 5, method=method, rng=np.random.default_rng(42))
    for x, y in zip(a, c):
        assert np.array_equal(x, y)


def test_same_rng_same_result_torch():
    A = torch.as_tensor(planted(100, 70, rng=0).A)
    a, b = randla.svd(A, 5, rng=7), randla.svd(A, 5, rng=7)
    assert all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("method", METHODS)
def test_different_rng_different_sketch(method):
    # Slow decay: the approximation depends on the sketch, so different
    # seeds must give (slightly) different results.
    A = planted(100, 70, "polynomial", rate=0.5, rng=0).A
    a = randla.svd(A, 5, method=method, power_iters=0 if method == "rsvd" else 1, rng=1)
    b = randla.svd(A, 5, method=method, power_iters=0 if method == "rsvd" else 1, rng=2)
    assert not np.array_equal(a.S, b.S)


@pytest.mark.parametrize(
    "rng",
    [
        None,
        0,
        2**40,
        np.int64(5),
        np.random.SeedSequence(5),
        np.random.PCG64(5),
        np.random.default_rng(5),
    ],
    ids=["None", "int", "bigint", "npint", "SeedSequence", "BitGenerator", "Generator"],
)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_rng_kinds_accepted_and_global_state_untouched(rng, backend, untouched_global_rng):
    A = planted(60, 40, "exponential", rate=0.6, rng=0).A
    A = torch.as_tensor(A) if backend == "torch" else A
    r = randla.svd(A, 4, rng=rng)
    np.testing.assert_allclose(to_np(r.S), singular_values(A)[:4], rtol=1e-8)
    randla.svd(A, tol=0.1, rng=rng)


def test_generator_is_advanced_not_reseeded():
    """Passing a Generator draws from it: two calls give two different sketches."""
    A = planted(100, 70, "polynomial", rate=0.5, rng=0).A
    gen = np.random.default_rng(0)
    a = randla.svd(A, 5, method="rsvd", rng=gen)
    b = randla.svd(A, 5, method="rsvd", rng=gen)
    assert not np.array_equal(a.S, b.S)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(400, 30), (30, 400), (1, 50), (50, 1), (1, 1)])
def test_wide_tall_and_degenerate_shapes(method, shape):
    A = planted(*shape, rng=3).A
    k = min(3, min(shape))
    r = randla.svd(A, k, method=method, rng=0)
    assert r.U.shape == (shape[0], k) and r.Vh.shape == (k, shape[1])
    s = singular_values(A)
    np.testing.assert_allclose(r.S, s[:k], rtol=0.1 if method == "rsvd" else 1e-8)
    if k < min(shape):
        bound = hmt_rsvd_bound(s, k, 10) / s[k] if method == "rsvd" else 1.1
        assert spectral_error_ratio(A, r, k, s) <= bound


def test_full_rank_request_is_exact():
    A = planted(50, 30, rng=0).A
    r = randla.svd(A, 30, rng=0)
    assert relative_error(A, r, ord=2) <= 1e-12


def test_result_object():
    A = planted(60, 40, rng=0).A
    r = randla.svd(A, 4, rng=0)
    U, S, Vh = r
    assert U is r.U and S is r.S and Vh is r.Vh
    assert len(r) == 3 and r[1] is r.S and r.rank == 4
    L, R = r.factors()
    np.testing.assert_allclose(L @ R, r.reconstruct())
    np.testing.assert_allclose(r.reconstruct(), (U * S) @ Vh)
    assert r.power_iters == 4 and r.error_estimate is None and r.converged
    assert "SVDResult" in repr(r) and "(60, 4)" in repr(r)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.U = None


@pytest.mark.parametrize("method, expected", [("rsi", 4), ("block_krylov", 2), ("rsvd", 0)])
def test_auto_power_iters(method, expected):
    A = planted(60, 40, rng=0).A
    assert randla.svd(A, 4, method=method, rng=0).power_iters == expected
    assert randla.svd(A, 4, method=method, power_iters=0, rng=0).power_iters == 0
    # k + oversample >= min(m, n): the sketch spans the range, and passes would only repeat it.
    full = randla.svd(A, 30, method=method, rng=0)
    assert full.power_iters == 0
    np.testing.assert_allclose(full.S, singular_values(A)[:30], rtol=1e-12)


def test_explicit_power_iters_improve_accuracy():
    A = planted(300, 200, "polynomial", rate=0.5, rng=0).A
    s = singular_values(A)
    ratios = [spectral_error_ratio(A, randla.svd(A, 20, power_iters=q, rng=0), 20, s) for q in (0, 1, 2, 4)]
    assert ratios[0] > ratios[1] > ratios[2] > ratios[3]
    assert ratios[3] <= 1.1


@pytest.mark.parametrize("normalizer", ["auto", "qr", "lu", "cholqr", "none"])
def test_every_normalizer_is_accurate(normalizer):
    A = planted(300, 200, "polynomial", rate=0.5, rng=0).A
    r = randla.svd(A, 20, normalizer=normalizer, rng=0)
    assert spectral_error_ratio(A, r, 20) <= 1.1


@pytest.mark.parametrize("oversample", [0, 2, 30])
def test_oversample(oversample):
    A = planted(200, 100, "exponential", rate=0.8, rng=0).A
    r = randla.svd(A, 10, oversample=oversample, rng=0)
    assert r.rank == 10
    assert spectral_error_ratio(A, r, 10) <= (1.5 if oversample == 0 else 1.01)


# -- backends ---------------------------------------------------------------------


def _all_backends(wide=False):
    A = planted(200, 120, "polynomial", rate=0.5, rng=0).A
    Asp = sparse_random(200, 120, 2500, rng=0)
    if wide:
        A, Asp = A.T, Asp.T
    return {
        "numpy_C": np.ascontiguousarray(A),
        "numpy_F": np.asfortranarray(A),
        **{name: fmt(Asp) for name, fmt in [("csr_array", sp.csr_array), ("csc_array", sp.csc_array),
                                             ("coo_array", sp.coo_array), ("csr_matrix", sp.csr_matrix),
                                             ("csc_matrix", sp.csc_matrix), ("coo_matrix", sp.coo_matrix)]},
        "linear_operator": aslinearoperator(A),
        "torch": torch.as_tensor(A),
        "torch_coo": torch_sparse(Asp, "coo"),
        "torch_csr": torch_sparse(Asp, "csr"),
        "operator": randla.as_operator(A),
        "operator_centered": randla.Centered(Asp, axis=0),
        "dask": dask_array(A),
    }


BACKENDS = _all_backends()
WIDE_BACKENDS = _all_backends(wide=True)


@pytest.mark.parametrize("name", sorted(BACKENDS))
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("wide", [False, True])
def test_backends(name, method, wide):
    A = (WIDE_BACKENDS if wide else BACKENDS)[name]
    s = singular_values(A)
    r = randla.svd(A, 10, method=method, rng=0)
    library = torch.Tensor if name.startswith("torch") else da.Array if name == "dask" else np.ndarray
    for factor in r:
        assert isinstance(factor, library)
    assert tuple(r.U.shape) == (A.shape[0], 10) and tuple(r.Vh.shape) == (10, A.shape[1])
    bound = hmt_rsvd_bound(s, 10, 10) / s[10] if method == "rsvd" else 1.1
    assert spectral_error_ratio(A, r, 10, s) <= bound
    assert_orthonormal_columns(r.U, 1e-12)
    assert_orthonormal_columns(to_np(r.Vh).T, 1e-12)


@pytest.mark.parametrize("name", ["torch", "torch_coo", "torch_csr", "csr_array", "linear_operator", "operator", "dask"])
@pytest.mark.parametrize("wide", [False, True])
def test_backend_parity(name, wide):
    """Every backend gives the NumPy answer (up to the algorithm's accuracy:
    the random draws differ between libraries)."""
    A = (WIDE_BACKENDS if wide else BACKENDS)[name]
    ref = dense(A)
    a = randla.svd(ref, 10, rng=0)
    b = randla.svd(A, 10, rng=0)
    np.testing.assert_allclose(to_np(b.S), a.S, rtol=1e-3)
    # A well separated leading triplet agrees to high accuracy.
    np.testing.assert_allclose(to_np(b.U)[:, 0], a.U[:, 0], atol=1e-6)


@pytest.mark.parametrize("layout", ["dense", "sparse"])
def test_tensors_that_require_grad_are_read_by_value(layout):
    """A weight that requires grad: factors without a graph, and the same
    factors as for its detached values (no warning of scalar conversions)."""
    A = torch.as_tensor(planted(200, 120, "polynomial", rate=1.0, rng=0).A)
    weight = torch.nn.Parameter(A.to_sparse() if layout == "sparse" else A.clone())
    calls = [
        lambda X: randla.svd(X, 10, rng=0),
        lambda X: randla.svd(X, tol=0.3, rng=0),
        lambda X: randla.pca(X, 5, rng=0),
        lambda X: randla.qb(X, 10, rng=0),
    ]
    if layout == "dense":
        calls.append(lambda X: randla.cur(X, 10, rng=0))
    for call in calls:
        got, expected = call(weight), call(weight.detach())
        for field in dataclasses.fields(got):
            value = getattr(got, field.name)
            if isinstance(value, torch.Tensor):
                assert not value.requires_grad
                torch.testing.assert_close(value, getattr(expected, field.name), rtol=0, atol=0)
    assert weight.grad is None


def test_numpy_torch_parity_exact_low_rank():
    A = low_rank(150, 100, 8, rng=0)
    a = randla.svd(A, 8, rng=0)
    b = randla.svd(torch.as_tensor(A), 8, rng=0)
    np.testing.assert_allclose(b.S.numpy(), a.S, rtol=1e-12)
    np.testing.assert_allclose(b.U.numpy(), a.U, atol=1e-10)
    np.testing.assert_allclose(b.Vh.numpy(), a.Vh, atol=1e-10)


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_input_never_modified(name):
    A = BACKENDS[name]
    before = dense(A).copy()
    if sp.issparse(A):
        arrays = [x.copy() for x in (getattr(A, "data", None), getattr(A, "indices", None), getattr(A, "indptr", None)) if x is not None]
    randla.svd(A, 5, rng=0)
    randla.svd(A, tol=0.3, rng=0)
    assert np.array_equal(dense(A), before)
    if sp.issparse(A):
        now = [x for x in (getattr(A, "data", None), getattr(A, "indices", None), getattr(A, "indptr", None)) if x is not None]
        assert all(np.array_equal(x, y) for x, y in zip(arrays, now))


def test_int_input_not_modified():
    A = matrix((60, 40), np.int64)
    before = A.copy()
    r = randla.svd(A, 5, rng=0)
    assert A.dtype == np.int64 and np.array_equal(A, before)
    assert r.U.dtype == np.float64


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("sketch", ["gaussian", "sparse_sign"])
def test_no_dense_copy_of_sparse_input(fmt, sketch):
    """A 20000 x 10000 sparse matrix would need 1.6 GB dense; the whole
    decomposition stays within a few MB."""
    A = sparse_random(20_000, 10_000, 40_000, format=fmt, rng=0)
    tracemalloc.start()
    try:
        r = randla.svd(A, 5, sketch=sketch, power_iters=1, rng=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.U.shape == (20_000, 5)
    assert peak < 40e6, f"peak {peak / 1e6:.0f} MB"


@pytest.mark.parametrize("layout", ["coo", "csr"])
def test_no_dense_copy_of_torch_sparse_input(layout):
    """Dense, this 400000 x 400000 matrix is 1.3 TB: more than a test machine
    can allocate, so densifying it anywhere would raise."""
    S = sparse_random(400_000, 400_000, 50_000, rng=0)
    T = torch_sparse(S, layout)
    r = randla.svd(T, 3, oversample=2, power_iters=1, rng=0)
    assert isinstance(r.U, torch.Tensor) and r.U.shape == (400_000, 3)
    assert torch.all(torch.isfinite(r.S)) and r.S[0] > 0


# -- tolerance mode ---------------------------------------------------------------


def _optimal_rank(s, tol):
    """Smallest k with sum_{i>k} sigma_i^2 <= tol^2 ||A||_F^2 (Eckart-Young)."""
    tail = np.sqrt(np.cumsum((s**2)[::-1])[::-1] / np.sum(s**2))
    return int(np.argmax(np.append(tail, 0.0) <= tol))


@pytest.mark.parametrize("tol", [3e-3, 1e-3, 3e-4])
@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_float32_tol_mode_down_to_its_documented_floor(library, tol):
    """float32 reaches tol >= 3e-4 with a true estimate: ||A||_F summed in
    float32 had declared rank 139 converged at tol 3e-3 with error 4.6e-3.
    The estimate holds to the documented ~1% at 1e-3 and ~15% at 3e-4
    (float32's sqrt(eps) is 3.5e-4), which the rounding of the BLAS kernel
    in use decides."""
    A = planted(2000, 1000, "polynomial", rate=1.5, dtype=np.float32, rng=0).A
    r = randla.svd(torch.from_numpy(A) if library == "torch" else A, tol=tol, rng=0)
    true = relative_error(A.astype(np.float64), to_np(r.reconstruct()).astype(np.float64))
    accuracy = 0.15 if tol < 1e-3 else 0.05
    assert r.converged
    assert true <= (1 + accuracy) * tol
    assert r.error_estimate == pytest.approx(true, rel=accuracy)


@pytest.mark.parametrize("tol", [0.3, 0.1, 0.03])
@pytest.mark.parametrize("method", ["rsi", "rsvd"])
@pytest.mark.parametrize("container", ["numpy", "csr", "torch", "dask"])
def test_tol_mode_reaches_tolerance(tol, method, container):
    A = planted(300, 200, "polynomial", rate=1.0, rng=0).A
    inputs = {"numpy": A, "csr": sp.csr_array(A), "torch": torch.as_tensor(A), "dask": dask_array(A)}
    r = randla.svd(inputs[container], tol=tol, method=method, rng=0)
    true = relative_error(A, r)
    assert r.converged
    assert true <= tol
    # ||A||_F is known exactly: the estimate is the true error up to rounding.
    assert r.error_estimate == pytest.approx(true, rel=1e-6)
    # And the rank is close to the smallest rank that reaches tol (with power
    # iterations; a single sketch per block needs more).
    best = _optimal_rank(singular_values(A), tol)
    assert best <= r.rank <= (best + 3 if method == "rsi" else 1.5 * best + 5)


@pytest.mark.parametrize("shape", [(300, 200), (200, 300)])
def test_tol_mode_wide_and_tall(shape):
    A = planted(*shape, "exponential", rate=0.9, rng=1).A
    r = randla.svd(A, tol=1e-3, rng=0)
    assert r.U.shape == (shape[0], r.rank) and r.Vh.shape == (r.rank, shape[1])
    assert relative_error(A, r) <= 1e-3
    assert_orthonormal_columns(r.U, 1e-12)


def test_tol_mode_exact_low_rank():
    A = low_rank(300, 200, 12, rng=0)
    r = randla.svd(A, tol=1e-6, rng=0)
    assert r.converged and r.rank == 12
    assert relative_error(A, r) <= 1e-6


def test_tol_mode_rank_cap():
    A = planted(300, 200, "polynomial", rate=1.0, rng=0).A
    r = randla.svd(A, 20, tol=0.01, rng=0)
    assert r.rank == 20
    assert not r.converged
    true = relative_error(A, r)
    assert true > 0.01
    assert r.error_estimate == pytest.approx(true, rel=1e-6)
    # The capped result is still a near-optimal rank-20 approximation.
    assert frobenius_error_ratio(A, r, 20) <= 1.05


def test_tol_mode_rank_cap_keeps_the_oversampling():
    """A capped basis grows oversample columns past the cap before it is
    truncated to it: the top singular values are as good as in rank mode
    (a basis of exactly k columns had them 2% low here), and a tolerance the
    basis meets only past the cap is not reported as met."""
    A = np.random.default_rng(0).standard_normal((200, 50)) @ np.diag(np.geomspace(10, 0.01, 50))
    s = singular_values(A)
    r = randla.svd(A, 3, tol=0.01, rng=0)
    np.testing.assert_allclose(r.S, s[:3], rtol=1e-6)
    assert r.rank == 3 and not r.converged
    best = _optimal_rank(s, 0.05)
    r = randla.svd(A, best - 2, tol=0.05, rng=0)
    assert r.rank == best - 2 and not r.converged
    assert r.error_estimate == pytest.approx(relative_error(A, r), rel=1e-6) and r.error_estimate > 0.05
    assert randla.svd(A, best + 2, tol=0.05, rng=0).converged


@pytest.mark.parametrize("block_size", [1, 7, 64])
def test_tol_mode_block_size(block_size):
    A = planted(200, 150, "exponential", rate=0.85, rng=0).A
    r = randla.svd(A, tol=0.01, block_size=block_size, rng=0)
    assert r.converged and relative_error(A, r) <= 0.01


@pytest.mark.parametrize("tol", [0.3, 0.1])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tol_mode_linear_operator(tol, seed):
    """A LinearOperator does not know ||A||_F: the residual's norm is estimated
    from the sketches, so the tolerance is met up to the estimate's accuracy."""
    A = planted(300, 200, "polynomial", rate=1.0, rng=seed).A
    r = randla.svd(aslinearoperator(A), tol=tol, rng=seed)
    true = relative_error(A, r)
    assert r.converged
    assert true <= 1.1 * tol
    assert r.error_estimate == pytest.approx(true, rel=0.2)


@pytest.mark.parametrize("shape", [(60, 40), (40, 60)])
def test_tol_mode_zero_linear_operator(shape):
    """Not knowing ||A||_F, the first probe of a zero A is zero: the answer
    is the one for a zero array, a single zero triplet, exact."""
    expected = randla.svd(np.zeros(shape), tol=0.1, rng=0)
    r = randla.svd(aslinearoperator(np.zeros(shape)), tol=0.1, rng=0)
    assert r.converged and r.error_estimate == expected.error_estimate == 0.0
    assert r.rank == expected.rank == 1 and np.array_equal(r.S, expected.S)
    assert r.U.shape == expected.U.shape and r.Vh.shape == expected.Vh.shape
    assert_orthonormal_columns(r.U, 1e-12)
    assert_orthonormal_columns(r.Vh.T, 1e-12)


@GRAM_OVERFLOW
@pytest.mark.parametrize("scale", [1e-200, 1e160])
def test_tol_mode_linear_operator_far_from_unit_scale(scale):
    p = planted(300, 200, "polynomial", rate=1.0, rng=0)
    reference = randla.svd(aslinearoperator(p.A), tol=0.3, rng=0)
    r = randla.svd(aslinearoperator(p.A * scale), tol=0.3, rng=0)
    true = scaled_relative_error(p.A, r, scale)
    assert r.converged and true <= 1.1 * 0.3
    assert r.error_estimate == pytest.approx(true, rel=0.2)
    assert r.rank == reference.rank


def test_tol_mode_linear_operator_estimate_is_tight():
    """||A||_F^2 = ||Q^H A||_F^2 + ||A - Q Q^H A||_F^2 with the first part exact:
    only the residual is left to the probes. When ||A||_F was estimated from
    the first probe alone, its ~8% noise went into the truncation: 4 of these
    10 seeds claimed tol = 0.1 at errors up to 0.119."""
    A = planted(300, 200, "polynomial", rate=1.0, rng=1).A
    for seed in range(10):
        r = randla.svd(aslinearoperator(A), tol=0.1, rng=seed)
        true = relative_error(A, r)
        assert r.converged and true <= 1.02 * 0.1
        assert r.error_estimate == pytest.approx(true, rel=0.03)


def test_tol_mode_linear_operator_rank_cap():
    A = planted(300, 200, "polynomial", rate=1.0, rng=0).A
    r = randla.svd(aslinearoperator(A), 20, tol=0.01, rng=0)
    assert r.rank == 20 and not r.converged
    true = relative_error(A, r)
    assert r.error_estimate == pytest.approx(true, rel=0.2)


@pytest.mark.parametrize("method, expected", [("rsi", 2), ("rsvd", 0)])
def test_tol_mode_auto_power_iters(method, expected):
    A = planted(100, 80, rng=0).A
    assert randla.svd(A, tol=0.2, method=method, rng=0).power_iters == expected


def test_tol_below_the_dtypes_resolution_warns():
    # Below sqrt(eps) the estimate subtracts numbers equal to working precision:
    # float32 at tol = 1e-5 once stopped at rank 349 of 378, with converged=True.
    A = planted(300, 200, "polynomial", rate=1.0, rng=0).A
    with pytest.warns(UserWarning, match=r"tol=1e-05 is below what float32 arithmetic resolves \(about 2.4e-04\)"):
        randla.svd(A.astype(np.float32), tol=1e-5, rng=0)
    randla.svd(A, tol=1e-5, rng=0)  # float64 resolves it: no warning (they are errors here)
    with pytest.warns(UserWarning, match="tol=1e-09 is below what float64 arithmetic resolves"):
        randla.svd(torch.from_numpy(A), tol=1e-9, rng=0)


def _exactly_rank_15(seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((300, 15)) @ rng.standard_normal((15, 200))).astype(dtype)


@pytest.mark.parametrize("seed", range(6))
def test_tol_below_resolution_keeps_the_rank_of_exactly_low_rank_input(seed):
    """The indicator bottoms out near 1.5e-8 in float64: blocks that found only rounding
    grew the basis to all 200 columns in 4 of 10 seeds at tol = 1e-8, with no warning."""
    A = _exactly_rank_15(seed)
    with pytest.warns(UserWarning, match="tol=1e-08 is below what float64 arithmetic resolves"):
        r = randla.svd(A, tol=1e-8, rng=seed)
    assert r.rank == 15
    assert np.linalg.norm(A - r.reconstruct()) <= 1e-13 * np.linalg.norm(A)
    assert r.converged == (r.error_estimate <= 1e-8)


def test_tol_mode_same_rng_same_result():
    A = planted(200, 100, rng=0).A
    a, b = randla.svd(A, tol=0.1, rng=9), randla.svd(A, tol=0.1, rng=9)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert a.error_estimate == b.error_estimate


# -- properties over shapes, ranks, dtypes and seeds ------------------------------


@st.composite
def svd_problems(draw):
    m = draw(st.integers(1, 60))
    n = draw(st.integers(1, 60))
    rank = draw(st.integers(1, min(m, n)))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.complex128]))
    seed = draw(st.integers(0, 2**32 - 1))
    method = draw(st.sampled_from(METHODS))
    return m, n, rank, dtype, seed, method


@given(svd_problems())
def test_properties_hypothesis(problem):
    m, n, rank, dtype, seed, method = problem
    A = matrix((m, n), dtype, rng=seed)
    r = randla.svd(A, rank, method=method, rng=seed)
    U, S, Vh = r
    assert U.shape == (m, rank) and S.shape == (rank,) and Vh.shape == (rank, n)
    assert U.dtype == dtype and Vh.dtype == dtype and S.dtype == np.finfo(dtype).dtype
    eps = eps_of(U)
    assert_orthonormal_columns(U, 100 * eps)
    assert_orthonormal_columns(Vh.conj().T, 100 * eps)
    assert_sorted_nonnegative(S)
    s = singular_values(A.astype(np.complex128))
    assert np.all(S <= s[:rank] * (1 + 100 * eps) + 100 * eps * s[0])
    error = np.linalg.norm(A.astype(np.complex128) - to_np(r.reconstruct()), 2)
    optimum = s[rank] if rank < min(m, n) else 0.0
    bound = hmt_rsvd_bound(np.append(s, 0.0), rank, 10) if method == "rsvd" else 1.1 * optimum
    assert error <= bound + 1000 * eps * s[0]


@given(svd_problems(), st.sampled_from([0.5, 0.1, 0.01]))
def test_tol_properties_hypothesis(problem, tol):
    m, n, _, dtype, seed, method = problem
    if method == "block_krylov":
        method = "rsi"
    A = matrix((m, n), dtype, rng=seed)
    r = randla.svd(A, tol=tol, method=method, rng=seed)
    assert r.converged
    assert 1 <= r.rank <= min(m, n)
    assert_sorted_nonnegative(r.S)
    true = relative_error(A.astype(np.complex128), r)
    assert true <= tol * (1 + 1e-3)
    assert r.error_estimate == pytest.approx(true, rel=1e-2, abs=1e-3)


def test_same_rng_same_factors_on_numpy_and_torch_cpu():
    # The test matrix of a CPU tensor comes from the same NumPy generator.
    A = planted(120, 80, rng=3).A
    r_np = randla.svd(A, 8, rng=7)
    r_torch = randla.svd(torch.from_numpy(A), 8, rng=7)
    np.testing.assert_allclose(r_torch.U.numpy(), r_np.U, atol=1e-12)
    np.testing.assert_allclose(r_torch.S.numpy(), r_np.S, rtol=1e-12)
    np.testing.assert_allclose(r_torch.Vh.numpy(), r_np.Vh, atol=1e-12)


# The TruncatedSVD estimator (sklearn's conformance checks run in test_estimators.py).


def _lsa_data(dtype=np.float64):
    """Sparse data: a few rows of rank 6 over sparse noise, which leaves a tail of
    singular values well below the sixth."""
    rng = np.random.default_rng(3)
    U, V = np.linalg.qr(rng.standard_normal((40, 6)))[0], np.linalg.qr(rng.standard_normal((120, 6)))[0]
    signal = np.zeros((400, 120))
    signal[:40] = (U * [60, 50, 40, 30, 25, 20]) @ V.T
    return sp.csr_array(signal + sp.random(400, 120, density=0.05, random_state=3)).astype(dtype)


@pytest.mark.parametrize("sparse", [False, True])
def test_truncated_svd_estimator_matches_sklearns_exact_one(sparse):
    from sklearn.decomposition import TruncatedSVD as SklearnTruncatedSVD

    X = _lsa_data()
    data = X if sparse else X.toarray()
    ours = randla.TruncatedSVD(n_components=6, power_iters=8, random_state=0)
    exact = SklearnTruncatedSVD(n_components=6, algorithm="arpack", tol=1e-12).fit(X)
    Z = ours.fit_transform(data)
    for name in ["singular_values_", "explained_variance_", "explained_variance_ratio_"]:
        np.testing.assert_allclose(getattr(ours, name), getattr(exact, name), rtol=1e-6)
    signs = np.sign(np.sum(ours.components_ * exact.components_, axis=1))
    np.testing.assert_allclose(ours.components_, exact.components_ * signs[:, None], atol=1e-6)
    np.testing.assert_allclose(Z, exact.transform(X) * signs, atol=1e-6)
    np.testing.assert_allclose(ours.transform(data), Z, atol=1e-6)
    np.testing.assert_allclose(ours.inverse_transform(Z), Z @ ours.components_, atol=1e-12)
    assert sp.issparse(X) and X.dtype == np.float64  # not densified or converted in place


def test_truncated_svd_estimator_energy_share_gives_the_fewest_components():
    X = _lsa_data()
    s = np.linalg.svd(X.toarray(), compute_uv=False)
    captured = np.cumsum(s**2) / np.sum(s**2)
    for share in [0.5, 0.8, 0.95]:
        est = randla.TruncatedSVD(n_components=share, random_state=0).fit(X)
        fewest = int(np.searchsorted(captured, share) + 1)
        # The adaptive rank may take a component or two more than the optimum,
        # never fewer than it needs.
        assert fewest <= est.n_components_ <= fewest + 2
        assert np.sum(est.singular_values_**2) >= share * np.sum(s**2) * (1 - 1e-9)


def test_truncated_svd_estimator_keeps_float32_and_names_its_features():
    X = _lsa_data(np.float32)
    est = randla.TruncatedSVD(n_components=3, random_state=0)
    Z = est.fit_transform(X)
    assert Z.dtype == np.float32 and est.components_.dtype == np.float32
    assert list(est.get_feature_names_out()) == ["truncatedsvd0", "truncatedsvd1", "truncatedsvd2"]


@pytest.mark.parametrize("bad", [0, 1.0, 1.5, -0.2, 121, "auto"])
def test_truncated_svd_estimator_bad_n_components(bad):
    with pytest.raises(ValueError, match="n_components"):
        randla.TruncatedSVD(n_components=bad).fit(_lsa_data())


@pytest.mark.parametrize("wide", [False, True])
def test_truncated_svd_estimator_signs_and_fit_transform_as_sklearns(wide):
    """Largest entry of each component positive, on tall and on wide data, as
    scikit-learn's; fit_transform is transform of the training data, and the
    explained variances are those of its columns."""
    from sklearn.decomposition import TruncatedSVD as SklearnTruncatedSVD

    X = _lsa_data()
    X = X.T.tocsr() if wide else X
    ours = randla.TruncatedSVD(n_components=6, power_iters=8, random_state=0)
    Z = ours.fit_transform(X)
    exact = SklearnTruncatedSVD(n_components=6, algorithm="arpack", tol=1e-12).fit(X)
    np.testing.assert_allclose(ours.components_, exact.components_, atol=1e-6)
    np.testing.assert_allclose(Z, ours.transform(X), rtol=0, atol=1e-12 * np.abs(Z).max())
    np.testing.assert_allclose(ours.explained_variance_, np.var(Z, axis=0), rtol=1e-12)


def test_truncated_svd_estimator_share_of_energy_needs_a_growing_basis():
    with pytest.raises(ValueError, match="float `n_components`.*block_krylov' takes an int"):
        randla.TruncatedSVD(n_components=0.5, method="block_krylov").fit(_lsa_data())


@pytest.mark.parametrize("dtype, noise", [(np.float32, 1e-3), (np.float64, 1e-8)])
def test_tol_mode_on_a_small_residual(dtype, noise):
    """residual(A, L, R).norm() cancelled to garbage (24% high in float32, 0.0 in float64), which
    the tolerance mode took as exact: 195 columns with converged=False, or rank 1 claiming
    error 0 where the true error was 0.99. It now estimates the norm from its probes."""
    rng = np.random.default_rng(0)
    A = (rng.standard_normal((300, 10)) @ rng.standard_normal((10, 200)) + noise * rng.standard_normal((300, 200)))
    A = A.astype(dtype)
    L, R = randla.svd(A, 10, rng=0).factors()
    E = A.astype(np.float64) - L.astype(np.float64) @ R.astype(np.float64)
    r = randla.svd(randla.residual(A, L, R), tol=0.5, rng=0)
    true = np.linalg.norm(E - r.reconstruct().astype(np.float64)) / np.linalg.norm(E)
    assert r.converged and true <= 0.5
    assert r.error_estimate == pytest.approx(true, rel=0.02)
    # The truncation is the best of its rank, to the randomized basis's accuracy.
    s = np.linalg.svd(E, compute_uv=False)
    assert true <= 1.05 * np.sqrt(np.sum(s[r.rank :] ** 2)) / np.linalg.norm(E)


@pytest.mark.parametrize("layout", ["coo", "csr", "csc"])
def test_complex64_torch_sparse_in_tol_mode(layout):
    """norm() of a complex64 CSR or CSC tensor took torch.real of its values view, which torch refuses:
    svd and qb in tol mode, and stable_rank, failed."""
    import warnings

    rng = np.random.default_rng(0)
    D = ((rng.standard_normal((80, 60)) + 1j * rng.standard_normal((80, 60))) * (rng.random((80, 60)) < 0.2))
    D = D.astype(np.complex64)
    T = torch.as_tensor(D)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        A = {"coo": T.to_sparse_coo, "csr": T.to_sparse_csr, "csc": T.to_sparse_csc}[layout]()
    exact = np.linalg.norm(D.astype(np.complex128))
    assert randla.as_operator(A).norm() == pytest.approx(exact, rel=1e-12)
    for result in (randla.svd(A, tol=0.3, rng=0), randla.qb(A, tol=0.3, rng=0)):
        true = np.linalg.norm(D.astype(np.complex128) - to_np(result.reconstruct())) / exact
        assert result.converged and true <= 0.3
        # QB spans all 60 columns, where the float32 indicator reads rounding of up to sqrt(eps / 4).
        assert result.error_estimate == pytest.approx(true, rel=1e-3, abs=2e-4)
    Dd = D.astype(np.complex128)
    stable = randla.stable_rank(A, rng=0)
    assert stable.frobenius_norm == pytest.approx(exact, rel=1e-12)
    ratio = (exact / np.linalg.norm(Dd, 2)) ** 2
    assert stable.lower_bound <= ratio <= stable.estimate * (1 + 1e-5)
    assert stable.estimate == pytest.approx(ratio, rel=1e-3)


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-10), (np.float32, 1e-7), (np.float32, 1e-4),
                                        (np.float64, 1e-10)])
@pytest.mark.parametrize("seed", range(8))
def test_tol_below_resolution_never_claims_convergence(dtype, tol, seed):
    """Below the indicator's floor a clipped indicator of 0 ended the basis at its first block:
    an exactly rank-7 float32 matrix came back with rank 32, error_estimate 0.0 and
    converged=True (19 of 40 seeds), its true error 3000 times tol."""
    from randla.rangefinder import indicator_floor

    rng = np.random.default_rng(seed)
    A = (rng.standard_normal((300, 7)) @ rng.standard_normal((7, 100))).astype(dtype)
    with pytest.warns(UserWarning, match="below what .* arithmetic resolves"):
        r = randla.svd(A, tol=tol, rng=seed)
    floor = indicator_floor(np, dtype)
    Ad = A.astype(np.float64)
    s = np.linalg.svd(Ad, compute_uv=False)
    true = np.linalg.norm(Ad - r.reconstruct().astype(np.float64)) / np.linalg.norm(Ad)
    assert r.rank == 7 == int(np.sum(s > 1e3 * np.finfo(dtype).eps * s[0]))  # rounding dropped
    np.testing.assert_allclose(r.S, s[:7], rtol=100 * np.finfo(dtype).eps)
    assert not r.converged  # tol is not certified
    assert r.error_estimate >= math.sqrt(floor) >= true


@pytest.mark.parametrize("dtype, tol, converged", [(np.float64, 1e-12, True), (np.float32, 1e-10, False)])
def test_tol_below_resolution_at_full_width(dtype, tol, converged):
    """A basis of the whole short side leaves only rounding, ~eps sqrt(n): it meets a tol above that
    (float64 at 1e-12) and not one below it (float32 at 1e-10)."""
    A = np.random.default_rng(0).standard_normal((30, 20)).astype(dtype)
    with pytest.warns(UserWarning, match="below what .* arithmetic resolves"):
        r = randla.svd(A, tol=tol, rng=0)
    Ad = A.astype(np.float64)
    true = np.linalg.norm(Ad - r.reconstruct().astype(np.float64)) / np.linalg.norm(Ad)
    assert r.rank == 20 and r.converged is converged and bool(true <= tol) is converged


@pytest.mark.parametrize("tol", [1e-3, 1e-5, 1e-6])
def test_svd_tol_on_a_residual_below_its_norms_accuracy_probes_the_error(tol):
    # tol = 1e-6 on A - L R gave rank 126 (exact minimum 132), converged, true error 1.73e-6: the norm
    # of the residual, a difference, is known to ~1e-9 only. The error is probed there instead.
    from test_qb import _residual_problem

    res, D = _residual_problem()
    nd = np.linalg.norm(D)
    s = np.linalg.svd(D, compute_uv=False)
    kmin = int(np.argmax(np.sqrt(np.cumsum((s**2)[::-1])[::-1]) / nd <= tol))
    r = randla.svd(res, tol=tol, rng=0)
    true = np.linalg.norm(D - r.reconstruct()) / nd
    assert r.converged and true <= tol and kmin <= r.rank <= kmin + 3
    assert r.error_estimate == pytest.approx(true, rel=0.1)


def test_svd_tol_on_a_linear_operator_holds_with_high_probability():
    # 20 strong directions over a flat floor: the rank sat where the point estimate was just under tol,
    # and 55 of 100 seeds were above tol with converged=True. Now it is chosen on an upper bound.
    rng = np.random.default_rng(12345)
    U, _ = np.linalg.qr(rng.standard_normal((300, 200)))
    V, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    s = np.where(np.arange(200) < 20, 1.0, 0.05)
    A = (U * s) @ V.T
    nf = np.linalg.norm(A)
    kmin = int(np.argmax(np.sqrt(np.cumsum((s**2)[::-1])[::-1]) / nf <= 0.1))  # 119
    failed, ranks = 0, []
    for seed in range(30):
        r = randla.svd(aslinearoperator(A), tol=0.1, rng=seed)
        true = np.linalg.norm(A - r.reconstruct()) / nf
        failed += r.converged and true > 0.1
        assert r.error_estimate == pytest.approx(true, rel=0.05)  # still the point estimate
        ranks.append(r.rank)
    assert failed <= 2 and kmin - 3 <= np.mean(ranks) <= 1.1 * kmin


@pytest.mark.parametrize("block_size", [1, 2])
def test_svd_tol_on_a_linear_operator_with_narrow_blocks(block_size):
    # The bound took the spread of block_size probes only: at block_size=2 the tolerance failed in 22 of 40
    # runs that claimed it, and block_size=1 returned twice the minimum rank. Narrow blocks are topped up.
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((400, 300)))
    V, _ = np.linalg.qr(rng.standard_normal((300, 300)))
    s = 1 / np.arange(1, 301)
    A = (U * s) @ V.T
    nf = np.linalg.norm(A)
    kmin = int(np.argmax(np.sqrt(np.cumsum((s**2)[::-1])[::-1]) / nf <= 0.1))  # 51
    failed, ranks = 0, []
    for seed in range(20):
        r = randla.svd(aslinearoperator(A), tol=0.1, block_size=block_size, rng=seed)
        failed += r.converged and np.linalg.norm(A - r.reconstruct()) / nf > 0.1
        ranks.append(r.rank)
    assert failed <= 3 and kmin <= np.mean(ranks) <= 1.1 * kmin
