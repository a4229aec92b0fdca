"""randla.kernels landmark selection and column Nystrom against exact references.

No rank-k approximation of a PSD K has trace error below the tail
sum_{i>k} lambda_i(K) (numpy.linalg.eigvalsh), and a column Nystrom
approximation K[:, S] K[S, S]^+ K[S, :] can be formed densely for small n:
every check below compares with one of the two.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.linalg import aslinearoperator

from randla import estimate_error
from randla.kernels import (
    ColumnNystromResult,
    PartialCholesky,
    column_nystrom,
    kernel_operator,
    landmarks,
    rpcholesky,
)
from randla.testing import clustered, psd
from conftest import assert_orthonormal_columns, assert_sorted_nonnegative, to_np

METHODS = ("rpcholesky", "uniform", "greedy", "kmeans++", "leverage")
#: rpcholesky variants, as keyword arguments of rpcholesky().
VARIANTS = {
    "plain": {"accelerated": False},
    "block": {"block_size": 8, "accelerated": False},
    "accelerated": {"accelerated": True},
    "candidates": {"candidates": 3, "block_size": 4},
}


def rbf(n=300, d=4, bandwidth=1.5, seed=0):
    X = np.random.default_rng(seed).standard_normal((n, d))
    return kernel_operator(X, bandwidth=bandwidth)


def dense_of(K) -> np.ndarray:
    return to_np(K.block()) if hasattr(K, "block") else to_np(K)


PROBLEMS = {
    "psd_exponential": lambda seed: psd(300, decay="exponential", rate=0.9, rng=seed),
    "psd_polynomial": lambda seed: psd(300, decay="polynomial", rate=1.0, rng=seed),
    "rbf_points": lambda seed: rbf(seed=seed),
    "laplacian_points": lambda seed: kernel_operator(
        np.random.default_rng(seed).standard_normal((300, 4)), kernel="laplacian", bandwidth=3.0
    ),
}


def exact_trace_error(Kd, F) -> float:
    F = to_np(F).astype(np.float64)
    return float(np.trace(Kd) - np.sum(F * F))


def check_result(r, n, k=None):
    assert isinstance(r, PartialCholesky)
    idx, F = r
    assert idx.dtype == np.int64 and idx.ndim == 1
    assert np.unique(idx).size == idx.size, "landmarks repeat"
    assert np.all((idx >= 0) & (idx < n))
    assert tuple(F.shape) == (n, idx.size) and r.rank == idx.size
    if k is not None:
        assert r.rank == k


# -- accuracy against the optimum ------------------------------------------------------


@pytest.mark.parametrize("problem", sorted(PROBLEMS))
@pytest.mark.parametrize("method", METHODS)
def test_trace_error_at_least_optimal_and_exact(problem, method):
    K = PROBLEMS[problem](0)
    Kd = dense_of(K)
    tail = np.cumsum(np.linalg.eigvalsh(Kd))  # tail[j] = sum of the j+1 smallest
    n = Kd.shape[0]
    for k in (10, 30):
        r = landmarks(K, k, method=method, rng=1)
        check_result(r, n, k)
        error = exact_trace_error(Kd, r.factor)
        optimal = tail[n - k - 1]
        assert error >= optimal * (1 - 1e-10)
        # The reported error is tr(K - F F^T), exactly.
        assert r.trace_error == pytest.approx(error, rel=1e-8, abs=1e-10 * r.trace)
        assert r.trace == pytest.approx(np.trace(Kd), rel=1e-12)
        # Measured: every method is within 4x the optimum on these problems.
        assert error <= 4.0 * optimal


@pytest.mark.parametrize("problem", ["psd_exponential", "rbf_points"])
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rpcholesky_meets_its_guarantee(problem, variant):
    # [CETW2024]: E tr(K - F F^T) <= (1 + eps) sum_{i>r} lambda_i once
    # k >= r / eps + r log(1 / (eps eta)), eta = sum_{i>r} lambda_i / tr K.
    r, eps = 10, 0.5
    ratios = []
    for seed in range(3):
        K = PROBLEMS[problem](seed)
        w = np.linalg.eigvalsh(dense_of(K))[::-1]
        optimal = w[r:].sum()
        k = math.ceil(r / eps + r * math.log(w.sum() / (eps * optimal)))
        ratios.append(rpcholesky(K, k, rng=seed, **VARIANTS[variant]).trace_error / optimal)
    assert np.mean(ratios) <= 1 + eps


@pytest.mark.parametrize("method", METHODS)
def test_trace_error_decreases_with_rank(method):
    K = rbf(seed=2)
    errors = [landmarks(K, k, method=method, rng=3).trace_error for k in (5, 10, 20, 40)]
    if method == "leverage":  # the pilot changes with k: landmark sets are not nested
        assert errors[3] < errors[1] < errors[0]
    else:  # the same rng gives nested landmark sets
        assert all(b < a for a, b in zip(errors, errors[1:])), errors


def test_rpcholesky_beats_uniform_on_clustered_points():
    # 20 clusters, sizes ~1000 down to 1: uniform sampling misses the tiny
    # ones, each worth its size in trace error. Measured ratio: 5.3.
    ratios = {"rpcholesky": [], "uniform": []}
    for seed in range(4):
        K = kernel_operator(clustered(1000, 2, 20, rng=seed).X, bandwidth=1.0)
        for method in ratios:
            ratios[method].append(landmarks(K, 60, method=method, rng=seed).trace_error)
    assert np.mean(ratios["uniform"]) >= 2.0 * np.mean(ratios["rpcholesky"])


def test_candidates_beat_plain_rpcholesky_and_uniform_on_isotropic_points():
    # Isotropic Gaussian points: plain RPCholesky spends landmarks on the
    # isolated points of the tails and uniform sampling does slightly better
    # (measured: uniform / plain 0.97); keeping the best of 2 proposals per
    # landmark removes more trace than either (measured: 1.08 and 1.11).
    errors = {"plain": [], "uniform": [], "candidates": []}
    for seed in range(3):
        X = np.random.default_rng(seed).standard_normal((2000, 10))
        K = kernel_operator(X, kernel="rbf", gamma=0.05)
        errors["plain"].append(rpcholesky(K, 100, rng=seed).trace_error)
        errors["uniform"].append(landmarks(K, 100, method="uniform", rng=seed).trace_error)
        errors["candidates"].append(rpcholesky(K, 100, candidates=2, rng=seed).trace_error)
    mean = {key: np.mean(value) for key, value in errors.items()}
    assert mean["candidates"] < mean["uniform"]
    assert mean["candidates"] < mean["plain"]


def test_candidates_take_the_best_proposal():
    # With one landmark per round, the landmark kept is the proposal of
    # largest trace reduction ||K[:, j]||^2 / K_jj: on one round (rank 1)
    # that is a column of maximal norm among the proposals.
    K = rbf(n=200, seed=13)
    Kd = dense_of(K)
    gain = np.sum(Kd * Kd, axis=0) / np.diag(Kd)
    kept = [rpcholesky(K, 1, candidates=200, block_size=1, rng=s).indices[0] for s in range(5)]
    # 200 proposals drawn with replacement cover most points; the best one is
    # within the top few of all n.
    assert all(gain[j] >= np.sort(gain)[-5] for j in kept)
    for s in range(5):
        r = rpcholesky(K, 1, candidates=3, block_size=1, rng=s)
        assert r.trace == pytest.approx(np.trace(Kd))
        assert r.trace_error == pytest.approx(np.trace(Kd) - gain[r.indices[0]], rel=1e-9)


# -- exactly low-rank input -----------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", METHODS + ("block", "accelerated", "candidates"))
def test_exact_low_rank_recovered_with_its_rank(method, dtype):
    A = psd(200, rank=12, rng=4).astype(dtype)
    if method in VARIANTS:
        r = rpcholesky(A, 40, rng=0, **VARIANTS[method])
    else:
        r = landmarks(A, 40, method=method, rng=0)
    check_result(r, 200, 12)
    eps = np.finfo(dtype).eps
    F = to_np(r.factor).astype(np.float64)
    assert r.factor.dtype == dtype
    assert np.all(np.isfinite(F))
    assert np.abs(A - F @ F.T).max() <= 1e3 * eps
    assert r.trace_error <= 1e3 * eps * r.trace


def test_rank_stops_at_the_numerical_rank_of_a_smooth_kernel():
    # Wide bandwidth: eigenvalues fall below 1e-15 * lambda_1 after about 60.
    K = rbf(n=400, d=2, bandwidth=5.0)
    Kd = dense_of(K)
    for method in METHODS:
        r = landmarks(K, 200, method=method, rng=0)
        assert r.rank < 100
        F = to_np(r.factor)
        assert np.all(np.isfinite(F))
        assert np.abs(Kd - F @ F.T).max() <= 1e-9


@pytest.mark.parametrize("method", METHODS)
def test_zero_matrix_gives_an_empty_factor(method):
    r = landmarks(np.zeros((5, 5)), 3, method=method, rng=0)  # and no warning
    assert r.rank == 0 and r.factor.shape == (5, 0) and r.indices.shape == (0,)
    assert r.trace == 0.0 and r.trace_error == 0.0 and r.relative_error == 0.0
    U, S = r.eig()
    assert U.shape == (5, 0) and S.shape == (0,)


def test_duplicate_points_are_not_repeated_landmarks():
    X = np.repeat(np.random.default_rng(0).standard_normal((3, 2)), 20, axis=0)
    K = kernel_operator(X, bandwidth=1.0)
    for method in METHODS:
        r = landmarks(K, 10, method=method, rng=0)
        assert r.rank == 3, method
        assert len({tuple(X[i]) for i in r.indices}) == 3


def stable_nystrom_error(Kd, S) -> float:
    """||K - F F^T||_F for F = C L^{-T}, L L^T = W + 100 eps max(W) I: the stable dense
    column Nystrom approximation of [CETW2024]'s code, C = K[:, S], W = K[S, S]."""
    from scipy.linalg import cholesky, solve_triangular

    C = Kd[:, S]
    W = C[S]
    L = cholesky(W + 100 * np.finfo(float).eps * W.max() * np.eye(len(S)), lower=True)
    F = solve_triangular(L, C.T, lower=True).T
    return float(np.linalg.norm(Kd - F @ F.T))


@pytest.mark.parametrize(
    "method, options",
    [
        ("uniform", {"block_size": 1}),
        ("uniform", {}),
        ("uniform", {"tol": 1e-14}),
        ("kmeans++", {"block_size": 1}),
        ("leverage", {"block_size": 1}),
        ("rpcholesky", {}),
        ("greedy", {}),
    ],
)
def test_landmarks_past_the_numerical_rank_stay_accurate(method, options):
    # 1000 points in 2-D, gamma = 0.5: eigenvalues fall below 1e-15 lambda_1
    # after about 210, so 300 landmarks go past the numerical rank. Landmarks
    # not picked by their residual then meet pivots at the rounding level,
    # which an unshifted factor turns into ||K - F F^T|| ~ 0.08 ||K|| and
    # tr(K - F F^T) = -35, reported as 0.
    X = np.random.default_rng(0).standard_normal((1000, 2))
    K = kernel_operator(X, gamma=0.5)
    Kd = dense_of(K)
    norm = np.linalg.norm(Kd)
    rank = None if "tol" in options else 300
    r = landmarks(K, rank, method=method, rng=0, **options)
    E = Kd - to_np(r.factor) @ to_np(r.factor).T
    # K - F F^T is PSD to rounding, so trace_error is its trace norm.
    assert np.linalg.eigvalsh(E)[0] >= -1e-12 * norm
    assert r.trace_error == pytest.approx(np.trace(E), abs=1e-12 * r.trace)
    # As accurate as the stable dense approximation from the same landmarks
    # (measured: within 10%); pivoted methods reach the rounding level.
    error = np.linalg.norm(E)
    assert error <= 1.5 * stable_nystrom_error(Kd, r.indices) + 1e-13 * norm
    if method in ("rpcholesky", "greedy"):
        assert error <= 1e-13 * norm


@pytest.mark.parametrize("method", METHODS)
def test_kernels_evaluated_with_more_rounding_than_eps_are_not_rejected(method):
    # Clusters up to 36 bandwidths from the origin: the RBF kernel's
    # ||x||^2 + ||y||^2 - 2 <x, y> loses three digits (K's smallest
    # eigenvalue is -2e-12), more than the rounding the factorisation assumes.
    Kop = kernel_operator(clustered(1000, 2, 20, rng=0).X, bandwidth=1.0)
    Kd = dense_of(Kop)
    for options in ({}, {"block_size": 1}):
        r = landmarks(Kop, 300, method=method, rng=0, **options)
        E = Kd - to_np(r.factor) @ to_np(r.factor).T
        assert r.trace_error == pytest.approx(np.trace(E), abs=1e-4 * r.trace)
        assert np.linalg.eigvalsh(E)[0] >= -1e-4 * np.linalg.norm(Kd)


# -- tolerance mode ---------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("tol", [1e-1, 1e-2, 1e-4])
def test_tol_is_met(method, tol):
    K = rbf(seed=5)
    Kd = dense_of(K)
    r = landmarks(K, method=method, tol=tol, rng=0)
    check_result(r, 300)
    assert exact_trace_error(Kd, r.factor) <= tol * np.trace(Kd) * (1 + 1e-8)
    assert r.trace_error <= tol * r.trace
    # Not beyond what the tolerance needs. Pivoted methods stop at the first
    # landmark that meets it: the factor without its last column misses it.
    # Sampling methods add blocks of 16: the same method at rank - 16 misses it.
    if method in ("rpcholesky", "greedy"):
        F = to_np(r.factor)
        assert exact_trace_error(Kd, F[:, :-1]) > tol * np.trace(Kd)
    elif r.rank > 16:
        fewer = landmarks(K, r.rank - 16, method=method, rng=0)
        assert fewer.trace_error > tol * fewer.trace


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rpcholesky_tol_and_rank_cap(variant):
    K = rbf(seed=6)
    r = rpcholesky(K, tol=1e-3, rng=0, **VARIANTS[variant])
    assert r.trace_error <= 1e-3 * r.trace
    capped = rpcholesky(K, 5, tol=1e-3, rng=0, **VARIANTS[variant])
    assert capped.rank == 5 and capped.trace_error > 1e-3 * capped.trace
    assert rpcholesky(K, 400, rng=0).rank <= 300  # rank is capped at n


# -- the factor is the column Nystrom approximation ------------------------------------


@pytest.mark.parametrize("method", METHODS + ("block", "accelerated", "candidates"))
def test_factor_is_c_w_pinv_ct(method):
    K = rbf(n=120, seed=7)
    Kd = dense_of(K)
    if method in VARIANTS:
        r = rpcholesky(K, 25, rng=1, **VARIANTS[method])
    else:
        r = landmarks(K, 25, method=method, rng=1)
    idx, F = r
    C = Kd[:, idx]
    reference = C @ np.linalg.pinv(C[idx], hermitian=True) @ C.T
    np.testing.assert_allclose(to_np(r.reconstruct()), reference, atol=1e-9)
    # F interpolates the landmark columns and is triangular on the landmarks.
    np.testing.assert_allclose(to_np(F) @ to_np(F)[idx].T, C, atol=1e-9)
    assert np.allclose(np.triu(to_np(F)[idx], 1), 0)


def test_eig_and_column_nystrom():
    K = rbf(seed=8)
    r = landmarks(K, 20, rng=0)
    e = r.eig()
    assert isinstance(e, ColumnNystromResult)
    U, S = e
    assert U.shape == (300, 20) and e.rank == 20
    assert_orthonormal_columns(U, 1e-12)
    assert_sorted_nonnegative(S)
    np.testing.assert_allclose(to_np(e.reconstruct()), to_np(r.reconstruct()), atol=1e-12)
    F = to_np(r.factor)
    np.testing.assert_allclose(S, np.linalg.eigvalsh(F.T @ F)[::-1], rtol=1e-10)
    assert np.all(U[np.argmax(np.abs(U), axis=0), np.arange(20)] > 0)  # signs fixed
    c = column_nystrom(K, 20, rng=0)
    np.testing.assert_array_equal(c.indices, r.indices)
    np.testing.assert_allclose(c.S, S)
    assert c.trace_error == r.trace_error and c.method == "rpcholesky"
    assert column_nystrom(K, 20, landmarks="greedy").method == "greedy"
    assert column_nystrom(K, tol=1e-2, rng=0).trace_error <= 1e-2 * c.trace


def test_results_are_frozen_and_unpack():
    r = rpcholesky(rbf(n=50), 5, rng=0)
    idx, F = r
    assert idx is r.indices and F is r.factor and len(r) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.indices = None
    assert repr(r).startswith("PartialCholesky(indices=array(5,), factor=array(50, 5)")
    assert r.relative_error == r.trace_error / r.trace


# -- reproducibility and backends ---------------------------------------------------------


@pytest.mark.parametrize("method", METHODS + ("block", "accelerated", "candidates"))
def test_same_rng_same_result(method, untouched_global_rng):
    K = rbf(n=200, seed=9)

    def run(seed):
        if method in VARIANTS:
            return rpcholesky(K, 15, rng=seed, **VARIANTS[method])
        return landmarks(K, 15, method=method, rng=seed)

    a, b, c = run(11), run(11), run(np.random.default_rng(12))
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(to_np(a.factor), to_np(b.factor))
    if method != "greedy":
        assert not np.array_equal(a.indices, c.indices)


def test_accelerated_draws_like_sequential_rpcholesky():
    # The first two pivots of RPCholesky have a known law; accelerated
    # RPCholesky reproduces it exactly [ETW2024], block RPCholesky does not.
    B = np.random.default_rng(5).standard_normal((6, 3)) * np.array([3.0, 1.0, 0.3])
    A = B @ B.T + 0.05 * np.eye(6)
    law = {}
    d = np.diag(A)
    for i in range(6):
        residual = np.diag(A - np.outer(A[:, i], A[:, i]) / A[i, i]).clip(0)
        for j in range(6):
            if j != i:
                law[i, j] = d[i] / d.sum() * residual[j] / residual.sum()
    runs = 3000

    def distance(**options):
        counts = Counter(tuple(rpcholesky(A, 2, rng=s, **options).indices) for s in range(runs))
        return 0.5 * sum(abs(counts.get(key, 0) / runs - law.get(key, 0)) for key in set(counts) | set(law))

    assert distance(accelerated=False) < 0.05
    assert distance(accelerated=True, block_size=4) < 0.05
    assert distance(accelerated=False, block_size=2) > 0.15


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("source", ["dense", "kernel_operator"])
def test_torch_input(dtype, source):
    X = torch.as_tensor(np.random.default_rng(10).standard_normal((200, 3)), dtype=dtype)
    K = kernel_operator(X, bandwidth=1.5)
    if source == "dense":
        K = K.block()
    Kd = dense_of(K).astype(np.float64)
    eps = torch.finfo(dtype).eps
    for method in METHODS:
        r = landmarks(K, 20, method=method, rng=0)
        check_result(r, 200, 20)
        assert isinstance(r.factor, torch.Tensor) and r.factor.dtype == dtype
        error = exact_trace_error(Kd, r.factor)
        assert error >= np.sum(np.linalg.eigvalsh(Kd)[:180]) * (1 - 1e-4)
        assert r.trace_error == pytest.approx(error, rel=1e-3, abs=100 * eps * r.trace)
    best = rpcholesky(K, 20, candidates=2, rng=0)
    check_result(best, 200, 20)
    assert isinstance(best.factor, torch.Tensor) and best.factor.dtype == dtype
    assert best.trace_error == pytest.approx(exact_trace_error(Kd, best.factor), rel=1e-3, abs=100 * eps * best.trace)
    r = rpcholesky(K, 20, accelerated=True, rng=0)
    U, S = r.eig()
    assert isinstance(U, torch.Tensor) and U.dtype == dtype and S.dtype == dtype
    assert_orthonormal_columns(U, 100 * eps)


@pytest.mark.parametrize("half", [np.float16, torch.bfloat16])
def test_half_precision_computed_in_float32_returned_in_kind(half):
    A = psd(60, rank=8, rng=0)
    A = A.astype(half) if half is np.float16 else torch.as_tensor(A, dtype=half)
    for method in METHODS:
        r = landmarks(A, 8, method=method, rng=0)
        assert r.factor.dtype == A.dtype and r.rank == 8
        U, S = r.eig()
        assert U.dtype == A.dtype and S.dtype == A.dtype
        error = np.abs(to_np(A).astype(np.float64) - to_np(r.reconstruct()).astype(np.float64)).max()
        assert error <= 0.05  # half-precision rounding of A and F


def test_dense_input_kept_and_integers_promoted():
    B = np.random.default_rng(0).integers(-5, 6, size=(50, 5))
    A = B @ B.T  # integer PSD of rank 5
    before = A.copy()
    r = rpcholesky(A, 10, rng=0)
    np.testing.assert_array_equal(A, before)
    assert r.factor.dtype == np.float64 and r.rank == 5
    K = np.asfortranarray(psd(50, rng=1))
    assert landmarks(K, 5, method="greedy").rank == 5


# -- bad input, one at a time ---------------------------------------------------------------


def test_errors_for_what_has_no_column_access():
    A = psd(20, rng=0)
    for bad in (sp.csr_array(A), aslinearoperator(A), torch.as_tensor(A).to_sparse(), A.tolist(), "K"):
        with pytest.raises(TypeError, match="columns and the diagonal"):
            rpcholesky(bad, 3)
    with pytest.raises(TypeError, match="real"):
        rpcholesky(A.astype(np.complex128), 3)


@pytest.mark.parametrize(
    "K, match",
    [
        (np.ones((3, 4)), "square"),
        (np.ones((2, 2, 2)), "square"),
        (np.zeros((0, 0)), "at least one"),
        (np.diag([1.0, np.nan, 1.0]), "NaN or Inf on its diagonal"),
        (np.diag([1.0, -1.0, 1.0]), "not positive semidefinite"),
        (np.triu(np.ones((4, 4))), "symmetric"),
    ],
)
def test_errors_for_bad_matrices(K, match):
    with pytest.raises(ValueError, match=match):
        rpcholesky(K, 2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", METHODS)
def test_errors_for_indefinite_matrices(method, dtype):
    # Non-negative diagonals, so only the residual shows it: K - F F^T has
    # diag(-3, 0) after the first landmark of [[1, 2], [2, 1]]; the second
    # matrix has eigenvalue -0.8 and every 2 x 2 principal minor >= 0.
    indefinite = [[[1.0, 2.0], [2.0, 1.0]], [[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]]]
    for K in indefinite:
        with pytest.raises(ValueError, match="not positive semidefinite.*residual"):
            landmarks(np.array(K, dtype=dtype), 2, method=method, rng=0)


def test_errors_for_nan_off_the_diagonal_and_rectangular_kernels():
    A = psd(10, rng=0)
    A[1, 2] = A[2, 1] = np.inf  # off the columns probed for symmetry
    with pytest.raises(ValueError, match="NaN or Inf entries in the columns"):
        landmarks(A, 10, method="uniform", rng=0)
    A[0, 1] = A[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf entries"):
        rpcholesky(A, 3, rng=0)
    X = np.random.default_rng(0).standard_normal((10, 2))
    with pytest.raises(ValueError, match=r"k\(X, X\)"):
        rpcholesky(kernel_operator(X, X), 3)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"rank": None}, ValueError, "got neither"),
        ({"rank": 0}, ValueError, "rank"),
        ({"rank": 2.5}, ValueError, "rank"),
        ({"rank": True}, ValueError, "rank"),
        ({"rank": 3, "tol": 0.0}, ValueError, "tol"),
        ({"rank": 3, "tol": 1.0}, ValueError, "tol"),
        ({"rank": 3, "tol": "small"}, ValueError, "tol"),
        ({"rank": 3, "block_size": 0}, ValueError, "block_size"),
        ({"rank": 3, "accelerated": "yes"}, TypeError, "accelerated"),
        ({"rank": 3, "candidates": 0}, ValueError, "candidates"),
        ({"rank": 3, "candidates": 1.5}, ValueError, "candidates"),
        ({"rank": 3, "rng": -1}, ValueError, "rng"),
        ({"rank": 3, "rng": "seed"}, TypeError, "rng"),
    ],
)
def test_errors_for_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        rpcholesky(psd(10, rng=0), **kwargs)


def test_errors_for_bad_methods_and_options():
    A = psd(10, rng=0)
    with pytest.raises(ValueError, match="`method` must be one of"):
        landmarks(A, 3, method="random")
    with pytest.raises(ValueError, match="unknown option.*'accelerated'.*block_size"):
        landmarks(A, 3, method="uniform", accelerated=True)
    with pytest.raises(ValueError, match="ridge"):
        landmarks(A, 3, method="leverage", ridge=-1.0)
    with pytest.raises(ValueError, match="oversample"):
        landmarks(A, 3, method="leverage", oversample=-2)
    with pytest.raises(ValueError, match="`landmarks` must be one of"):
        column_nystrom(A, 3, landmarks="rpc")


@pytest.mark.parametrize("method", METHODS + ("block", "accelerated", "candidates"))
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_factor_is_exactly_lower_triangular_on_the_landmarks(method, dtype):
    # Past the numerical rank the residual rows of earlier landmarks are
    # rounding divided by small pivots (1e-8 in float64 here); as documented,
    # F[indices] is lower triangular, F[indices] F[indices]^T = W + D.
    X = np.random.default_rng(1).standard_normal((300, 1)).astype(dtype)
    K = kernel_operator(X, gamma=2.5)
    if method in VARIANTS:
        r = rpcholesky(K, 120, rng=0, **VARIANTS[method])
    else:
        r = landmarks(K, 120, method=method, rng=0)
    Fi = to_np(r.factor)[r.indices]
    assert r.rank > 20
    assert np.array_equal(np.triu(Fi, 1), np.zeros_like(Fi))


def test_estimate_error_of_a_landmark_factor():
    """K ~ F F^T: estimate_error takes the result as it takes a decomposition's."""
    K = kernel_operator(np.random.default_rng(0).standard_normal((200, 3)))
    chosen = rpcholesky(K, 20, rng=0)
    L, R = chosen.factors()
    assert L is chosen.factor and R.shape == (20, 200)
    exact = np.linalg.norm(K.block() - chosen.reconstruct(), 2)
    assert estimate_error(K, chosen, rng=0) == pytest.approx(exact, rel=1e-6)


def test_draw_keeps_small_float32_weights_in_the_law():
    """_draw summed float32 weights in float32: a weight below eps32 times the sum before it got an empty
    interval of the cumulative sum, so it could never be drawn (0 of 100 first pivots against 10.7% expected)."""
    from array_api_compat import array_namespace

    from randla.kernels.landmarks import _draw

    n, draws = 100_001, 200_000
    weights = np.full(n, 0.03, dtype=np.float32)
    weights[0] = 1e6  # float32 sums past it step by 0.0625: each 0.03 rounds away
    rest = float(np.sum(weights[1:], dtype=np.float64))
    p = rest / (rest + 1e6)  # 0.0030 of the draws go to the small weights
    idx = _draw(np, weights, draws, np.random.default_rng(0))
    hits = np.mean(idx != 0)
    assert abs(hits - p) < 5 * math.sqrt(p * (1 - p) / draws)
    # The law of the weights as given: the same indices as their exact float64 values.
    np.testing.assert_array_equal(idx, _draw(np, weights.astype(np.float64), draws, np.random.default_rng(0)))
    tensor = torch.from_numpy(weights)
    t_idx = _draw(array_namespace(tensor), tensor, draws, np.random.default_rng(0))
    np.testing.assert_array_equal(t_idx, idx)



@pytest.mark.parametrize("method", METHODS)
def test_converged_says_whether_tol_was_met(method):
    K = psd(300, decay="polynomial", rng=0)
    capped = landmarks(K, 5, method=method, tol=1e-6, rng=0)
    assert not capped.converged and capped.trace_error > 1e-6 * capped.trace
    assert not capped.eig().converged
    met = landmarks(K, tol=0.05, method=method, rng=0)
    assert met.converged and met.trace_error <= 0.05 * met.trace
    assert landmarks(K, 5, method=method, rng=0).converged  # no tol: nothing to miss
    assert not rpcholesky(K, 5, tol=1e-6, rng=0).converged and not column_nystrom(K, 5, tol=1e-6, rng=0).converged


def test_dask_arrays_are_refused_clearly():
    da = pytest.importorskip("dask.array")
    K = da.from_array(psd(60, rank=10, rng=0), chunks=20)
    for call in (lambda: rpcholesky(K, 5, rng=0), lambda: column_nystrom(K, 5, rng=0),
                 lambda: landmarks(K, 5, method="uniform", rng=0)):
        with pytest.raises(TypeError, match=r"got a Dask array.*K\.compute\(\)"):
            call()
