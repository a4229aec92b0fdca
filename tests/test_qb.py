"""randla.qb: fixed-size and tolerance-driven QB decompositions."""

from __future__ import annotations

import dataclasses

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
    assert_orthonormal_columns,
    dask_array,
    dense,
    eps_of,
    library_of,
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


def projection_error_ratio(A, Q, k):
    """||A - Q Q^H A||_2 / sigma_{k+1}."""
    Ad = dense(A)
    Q = to_np(Q)
    s = singular_values(Ad)
    return np.linalg.norm(Ad - Q @ (Q.conj().T @ Ad), 2) / s[k]


# -- fixed size -------------------------------------------------------------------


@pytest.mark.parametrize(
    "decay, rate, bound",
    [("polynomial", 0.5, 1.1), ("exponential", 0.8, 1.0 + 1e-8), ("flat", None, 1.0 + 1e-10)],
)
@pytest.mark.parametrize("shape", [(300, 200), (200, 300)])
def test_fixed_rank_accuracy(decay, rate, bound, shape):
    """Q has k + oversample columns; its error is measured against sigma_{k+1}."""
    A = planted(*shape, decay, rate=rate, rng=0).A
    Q, B = randla.qb(A, 20, rng=0)
    assert Q.shape == (shape[0], 30) and B.shape == (30, shape[1])
    assert_orthonormal_columns(Q, 1e-12)
    np.testing.assert_allclose(B, Q.T @ A, atol=1e-12)
    assert spectral_error_ratio(A, Q @ B, 20) <= bound


def test_exact_low_rank_recovered():
    A = low_rank(300, 200, 10, rng=0)
    r = randla.qb(A, 10, rng=0)
    assert relative_error(A, r, ord=2) <= 1e-10


@pytest.mark.parametrize("dtype", [np.longdouble, np.clongdouble])
@pytest.mark.parametrize("container", ["numpy", "csr"])
def test_extended_precision_computed_in_double(dtype, container):
    """LAPACK has no long double: it is computed in (complex) double, not
    float32 (a silent 1e-7 error) nor passed on to numpy.linalg (TypeError)."""
    A = low_rank(60, 40, 5, rng=0).astype(dtype)
    A = sp.csr_array(A) if container == "csr" else A
    for r in (randla.qb(A, 5, rng=0), randla.qb(A, tol=1e-7, rng=0)):
        error = dense(A).astype(np.complex128) - (r.Q @ r.B).astype(np.complex128)
        assert np.linalg.norm(error) <= 1e-12 * np.linalg.norm(dense(A).astype(np.complex128))


def test_rank_deficient_and_zero():
    A = low_rank(100, 80, 4, rng=0)
    Q, B = randla.qb(A, 10, rng=0)
    assert_orthonormal_columns(Q, 1e-10)
    assert relative_error(A, Q @ B, ord=2) <= 1e-10
    Q, B = randla.qb(np.zeros((40, 30)), 5, rng=0)
    assert_orthonormal_columns(Q, 1e-12)
    assert np.array_equal(B, np.zeros_like(B))


@pytest.mark.parametrize("scale", [1e-150, 1e150])
def test_scale(scale):
    p = planted(200, 100, "polynomial", rate=0.5, scale=scale, rng=0)
    Q, B = randla.qb(p.A, 10, rng=0)
    assert np.all(np.isfinite(B))
    assert projection_error_ratio(p.A, Q, 10) <= 1.0 + 1e-3


@pytest.mark.parametrize("oversample", [0, 5])
def test_oversample_sets_columns(oversample):
    A = planted(100, 60, rng=0).A
    Q, B = randla.qb(A, 10, oversample=oversample, rng=0)
    assert Q.shape == (100, 10 + oversample)
    Q, B = randla.qb(A, 55, oversample=oversample, rng=0)
    assert Q.shape == (100, min(60, 55 + oversample))  # capped at min(m, n)


@pytest.mark.parametrize("normalizer", ["auto", "qr", "lu", "cholqr", "none"])
@pytest.mark.parametrize("sketch", ["gaussian", "rademacher", "sparse_sign", "countsketch", "srht"])
def test_normalizers_and_sketches(normalizer, sketch):
    A = planted(200, 120, "polynomial", rate=0.5, rng=0).A
    Q, _ = randla.qb(A, 10, normalizer=normalizer, sketch=sketch, rng=0)
    assert_orthonormal_columns(Q, 1e-12)
    assert projection_error_ratio(A, Q, 10) <= 1.05


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128, np.int64, np.float16])
def test_dtype_kept(dtype):
    A = matrix((80, 50), dtype, decay="exponential", rate=0.7)
    Q, B = randla.qb(A, 5, rng=0)
    out = np.float64 if dtype == np.int64 else dtype
    assert Q.dtype == out and B.dtype == out
    assert_orthonormal_columns(Q, 1e-2 if dtype == np.float16 else 100 * eps_of(Q))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex128, torch.bfloat16])
def test_torch(dtype):
    base = np.complex128 if dtype.is_complex else np.float64
    A = torch.as_tensor(matrix((80, 50), base, decay="exponential", rate=0.7)).to(dtype)
    Q, B = randla.qb(A, 5, rng=0)
    assert isinstance(Q, torch.Tensor) and Q.dtype == dtype and B.dtype == dtype
    if dtype == torch.bfloat16:
        single = randla.qb(A.float(), 5, rng=0)
        assert torch.equal(Q, single.Q.to(dtype)) and torch.equal(B, single.B.to(dtype))


@pytest.mark.parametrize(
    "make",
    [
        lambda A: np.asfortranarray(A),
        lambda A: sp.csr_array(A),
        lambda A: sp.csc_matrix(A),
        lambda A: sp.coo_array(A),
        lambda A: aslinearoperator(A),
        lambda A: torch.as_tensor(A),
        lambda A: torch_sparse(sp.csr_array(A), "coo"),
        lambda A: torch_sparse(sp.csr_array(A), "csr"),
        lambda A: randla.as_operator(A),
        dask_array,
    ],
    ids=["fortran", "csr_array", "csc_matrix", "coo_array", "linear_operator", "torch", "torch_coo", "torch_csr", "operator",
         "dask"],
)
@pytest.mark.parametrize("wide", [False, True])
def test_backends(make, wide):
    A = sparse_random(150, 100, 1500, rng=0).toarray()
    if wide:
        A = np.ascontiguousarray(A.T)
    M = make(A)
    Q, B = randla.qb(M, 10, rng=0)
    expected = library_of(M)
    assert isinstance(Q, expected) and isinstance(B, expected)
    assert tuple(Q.shape) == (A.shape[0], 20) and tuple(B.shape) == (20, A.shape[1])
    assert_orthonormal_columns(Q, 1e-12)
    np.testing.assert_allclose(to_np(B), to_np(Q).T @ A, atol=1e-12)
    assert projection_error_ratio(A, Q, 10) <= 1.1
    before = dense(M).copy()
    randla.qb(M, tol=0.3, rng=0)
    assert np.array_equal(dense(M), before)


def test_same_rng_same_result(untouched_global_rng):
    A = planted(100, 70, "polynomial", rate=0.5, rng=0).A
    a, b = randla.qb(A, 5, rng=5), randla.qb(A, 5, rng=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = randla.qb(A, 5, rng=6)
    assert not np.array_equal(a.Q, c.Q)
    for rng in (None, np.random.SeedSequence(1), np.random.PCG64(1), np.random.default_rng(1)):
        Q, _ = randla.qb(A, 5, rng=rng)
        assert_orthonormal_columns(Q, 1e-12)


def test_result_object():
    A = planted(60, 40, rng=0).A
    r = randla.qb(A, 4, rng=0)
    Q, B = r
    assert Q is r.Q and B is r.B and len(r) == 2
    assert r.rank == 14 and r.power_iters == 4
    assert r.error_estimate is None and r.converged
    np.testing.assert_allclose(r.reconstruct(), Q @ B)
    assert r.factors() == (Q, B)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.Q = None


# -- tolerance mode ---------------------------------------------------------------


@pytest.mark.parametrize("tol", [0.5, 0.1, 0.01])
@pytest.mark.parametrize(
    "make",
    [lambda A: A, lambda A: sp.csr_array(A), lambda A: torch.as_tensor(A)],
    ids=["numpy", "csr", "torch"],
)
def test_tol_reaches_tolerance(tol, make):
    A = planted(300, 200, "polynomial", rate=1.0, rng=1).A
    r = randla.qb(make(A), tol=tol, rng=0)
    true = relative_error(A, r)
    assert r.converged
    assert true <= tol
    # ||A||_F is known exactly: the indicator is the true error up to rounding.
    assert r.error_estimate == pytest.approx(true, rel=1e-6)
    assert_orthonormal_columns(r.Q, 1e-12)
    # Blocks of 32 columns: the basis is a multiple of the block size.
    assert r.rank % 32 == 0 or r.rank == 200


@pytest.mark.parametrize("block_size", [1, 5, 16])
def test_tol_block_size(block_size):
    A = planted(200, 150, "exponential", rate=0.8, rng=0).A
    r = randla.qb(A, tol=1e-3, block_size=block_size, rng=0)
    assert r.converged and relative_error(A, r) <= 1e-3
    assert r.rank % block_size == 0
    # Stopped soon after the smallest rank that can reach tol.
    s = singular_values(A)
    tail = np.sqrt(np.cumsum((s**2)[::-1])[::-1] / np.sum(s**2))
    best = int(np.argmax(tail <= 1e-3))
    assert best <= r.rank <= best + block_size + 2


def test_tol_rank_cap():
    A = planted(300, 200, "polynomial", rate=1.0, rng=0).A
    r = randla.qb(A, 20, tol=0.01, rng=0)
    assert r.rank == 20 and not r.converged
    true = relative_error(A, r)
    assert true > 0.01
    assert r.error_estimate == pytest.approx(true, rel=1e-6)


def test_tol_exact_low_rank():
    A = low_rank(200, 150, 7, rng=0)
    r = randla.qb(A, tol=1e-7, block_size=4, rng=0)
    assert r.converged and r.rank == 8
    assert relative_error(A, r) <= 1e-7


@pytest.mark.parametrize("seed", range(6))
def test_tol_below_resolution_stops_at_rounding(seed):
    """A block that finds only rounding ends the basis: it grew to all 200 columns of an
    exactly rank-15 matrix at tol = 1e-8 in 4 of 10 seeds."""
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((300, 15)) @ rng.standard_normal((15, 200))
    with pytest.warns(UserWarning, match="below what float64 arithmetic resolves"):
        r = randla.qb(A, tol=1e-8, block_size=16, rng=seed)
    assert r.rank in (16, 32)  # one block, or one more whose rounding was still measured
    assert relative_error(A, r) <= 1e-13


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tol", [0.3, 0.1])
def test_tol_linear_operator(seed, tol):
    """No exact ||A||_F: the estimate, from the 32 columns of each block's
    sketch, tracks the true error within ~20%."""
    A = planted(300, 200, "polynomial", rate=1.0, rng=seed).A
    r = randla.qb(aslinearoperator(A), tol=tol, rng=seed)
    true = relative_error(A, r)
    assert r.converged
    assert true <= 1.1 * tol
    assert r.error_estimate == pytest.approx(true, rel=0.2)


def test_tol_linear_operator_rank_cap():
    A = planted(300, 200, "polynomial", rate=1.0, rng=0).A
    r = randla.qb(aslinearoperator(A), 20, tol=0.01, rng=0)
    assert r.rank == 20 and not r.converged
    assert r.error_estimate == pytest.approx(relative_error(A, r), rel=0.2)


@pytest.mark.parametrize("power_iters, expected", [("auto", 2), (0, 0), (3, 3)])
def test_tol_power_iters(power_iters, expected):
    A = planted(100, 80, rng=0).A
    r = randla.qb(A, tol=0.1, power_iters=power_iters, rng=0)
    assert r.power_iters == expected
    assert relative_error(A, r) <= 0.1


@pytest.mark.parametrize("container", ["numpy", "linear_operator"])
def test_tol_zero_matrix(container):
    A = np.zeros((30, 20))
    r = randla.qb(aslinearoperator(A) if container == "linear_operator" else A, tol=0.1, rng=0)
    assert r.converged and r.error_estimate == 0.0
    assert r.rank >= 1 and np.array_equal(r.B, np.zeros((r.rank, 20)))


@GRAM_OVERFLOW
@pytest.mark.parametrize(
    "dtype, scale",
    [(np.float64, 1e-300), (np.float64, 1e-170), (np.float64, 1e160), (np.float64, 1e300),
     (np.float32, 1e-22), (np.float32, 1e20)],
)
@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_tol_far_from_unit_scale(library, dtype, scale):
    """Squares of A's size leave the float range at these scales; the error
    indicator is kept relative to ||A||_F and stays the true error."""
    A = planted(200, 100, "polynomial", rate=0.5, rng=0).A
    X = (A * scale).astype(dtype)
    r = randla.qb(torch.from_numpy(X) if library == "torch" else X, tol=0.3, rng=0)
    Q, B = (to_np(x).astype(np.float64) for x in r)
    true = np.linalg.norm(A - Q @ (B / scale)) / np.linalg.norm(A)
    assert r.converged and true <= 0.3 * (1 + 1e-4)
    assert r.error_estimate == pytest.approx(true, rel=1e-6 if dtype == np.float64 else 1e-3)


@given(
    st.integers(1, 60),
    st.integers(1, 60),
    st.sampled_from([np.float32, np.float64, np.complex128]),
    st.integers(0, 2**32 - 1),
    st.sampled_from([0.5, 0.1, 0.01]),
    st.integers(1, 40),
)
def test_properties_hypothesis(m, n, dtype, seed, tol, block_size):
    A = matrix((m, n), dtype, rng=seed)
    eps = np.finfo(dtype).eps
    k = min(m, n)
    rank = 1 + seed % k
    Q, B = randla.qb(A, rank, rng=seed)
    assert Q.shape == (m, min(rank + 10, k)) and B.shape == (Q.shape[1], n)
    assert Q.dtype == dtype and B.dtype == dtype
    assert_orthonormal_columns(Q, 100 * eps)
    s = singular_values(A.astype(np.complex128))
    error = np.linalg.norm(A - Q @ B, 2)
    assert error <= 1.1 * (s[rank] if rank < k else 0.0) + 1000 * eps * s[0]

    r = randla.qb(A, tol=tol, block_size=block_size, rng=seed)
    assert r.converged and r.rank <= k
    true = relative_error(A.astype(np.complex128), r)
    assert true <= tol * (1 + 1e-3)
    assert r.error_estimate == pytest.approx(true, rel=1e-2, abs=1e-3)


@pytest.mark.parametrize("shape", [(300, 40), (40, 300)])
def test_block_krylov_basis_never_wider_than_the_range(shape):
    """Blocks of l = 35 columns in a range of dimension 40: the second block
    adds only the 5 columns left, and the basis reproduces A."""
    A = np.random.default_rng(0).standard_normal(shape)
    r = randla.qb(A, 25, method="block_krylov", rng=0)
    assert r.Q.shape == (shape[0], 40)
    assert np.linalg.norm(A - r.reconstruct()) <= 1e-12 * np.linalg.norm(A)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(6))
def test_tol_below_resolution_reports_at_least_the_floor(dtype, seed):
    """A clipped indicator of 0 claimed converged=True with error_estimate 0.0 at tol = 1e-10,
    where the true error of an exactly rank-7 float32 matrix is ~3e-7."""
    from randla.rangefinder import indicator_floor

    rng = np.random.default_rng(seed)
    A = (rng.standard_normal((300, 7)) @ rng.standard_normal((7, 100))).astype(dtype)
    with pytest.warns(UserWarning, match="below what .* arithmetic resolves"):
        r = randla.qb(A, tol=1e-10, rng=seed)
    Ad = A.astype(np.float64)
    true = np.linalg.norm(Ad - r.reconstruct().astype(np.float64)) / np.linalg.norm(Ad)
    assert r.rank == 32  # the first block; the second found only rounding
    assert not r.converged
    assert r.error_estimate >= np.sqrt(indicator_floor(np, dtype)) >= true
    assert true <= 10 * np.finfo(dtype).eps  # A's range is captured, to rounding


def _residual_problem():
    """A - L R for a rank-10 truncation of A, whose tail is 3e-3 ||A_10||: its norm is a difference."""
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((300, 200)))
    V, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    A = (U * np.concatenate([np.ones(10), 3e-3 * 0.9 ** np.arange(190)])) @ V.T
    L, R = randla.svd(A, 10, rng=0).factors()
    return randla.residual(A, L, R), A - L @ R


@pytest.mark.parametrize("tol", [1e-3, 1e-5, 1e-6])
def test_qb_tol_on_a_residual_below_its_norms_accuracy_probes_the_error(tol):
    # ||A - L R||_F is a difference known to a relative ~1e-9 here; the indicator read a true error of
    # 1.4e-6 as 0 and claimed tol = 1e-6 met. Where the norm is too coarse for tol, the error is probed.
    res, D = _residual_problem()
    q = randla.qb(res, tol=tol, rng=0)
    true = np.linalg.norm(D - q.Q @ q.B) / np.linalg.norm(D)
    assert q.converged and true <= tol
    assert q.error_estimate == pytest.approx(true, rel=0.2)


def test_qb_tol_on_a_centred_operator_counts_the_cancellation_of_its_norm():
    # Means 300x the spread, reached through products only: Centered.norm is ||A||^2 - m ||mu||^2, which
    # cancels to a relative ~1e-8 here; converged=True came with a true error 1.003 x tol.
    from test_operators import _NormOnly

    rng = np.random.default_rng(26)
    U, _ = np.linalg.qr(rng.standard_normal((400, 200)))
    V, _ = np.linalg.qr(rng.standard_normal((200, 200)))
    X = (U * 0.93 ** np.arange(200)) @ V.T
    X -= X.mean(axis=0)
    A = X + 300.0 * (1 + rng.random(200))
    # Too coarse for tol^2 = 1e-6: the error is probed, and holds with high probability.
    failed = 0
    for seed in range(10):
        q = randla.qb(randla.Centered(_NormOnly(A)), tol=1e-3, rng=seed)
        true = np.linalg.norm(X - q.Q @ q.B) / np.linalg.norm(X)
        assert q.converged and true <= 1.05e-3
        assert q.error_estimate == pytest.approx(true, rel=0.2)
        failed += true > 1e-3
    assert failed <= 1


def test_qb_tol_on_a_linear_operator_converges_only_where_tol_holds():
    # converged=True is decided on an upper confidence bound of the probed error.
    A = planted(300, 200, "polynomial", rate=0.5, rng=0).A
    nf = np.linalg.norm(A)
    for seed in range(20):
        q = randla.qb(aslinearoperator(A), tol=0.1, rng=seed)
        assert q.converged and np.linalg.norm(A - q.Q @ q.B) / nf <= 0.1


def test_qb_tol_on_a_real_torch_matrix_with_a_complex_shift():
    # Real dtype, complex products: the basis is complex (a real W met a complex block and torch refused).
    rng = np.random.default_rng(0)
    A = rng.standard_normal((60, 8)) @ rng.standard_normal((8, 60))
    q = randla.qb(randla.Shifted(torch.from_numpy(A), 2j), tol=0.5, rng=0)
    D = A + 2j * np.eye(60)
    true = np.linalg.norm(D - (q.Q @ q.B).numpy()) / np.linalg.norm(D)
    assert q.Q.dtype == torch.complex128 and q.converged and true <= 0.5
    assert q.error_estimate == pytest.approx(true, rel=0.1)
    ref = randla.qb(randla.Shifted(A, 2j), tol=0.5, rng=0)  # the NumPy run agrees
    np.testing.assert_allclose((q.Q @ q.B).numpy(), ref.Q @ ref.B, atol=1e-10)


@pytest.mark.parametrize("decompose", [randla.qb, randla.svd])
def test_block_krylov_refuses_a_normalizer(decompose):
    A = planted(100, 80, "polynomial", rate=0.5, rng=0).A
    with pytest.raises(ValueError, match="block_krylov.*normalizer='qr'"):
        decompose(A, 5, method="block_krylov", normalizer="qr", rng=0)
    decompose(A, 5, method="block_krylov", normalizer="auto", rng=0)
    with pytest.raises(ValueError, match="normalizer"):  # an unknown name is refused as before
        decompose(A, 5, method="block_krylov", normalizer="bogus", rng=0)
