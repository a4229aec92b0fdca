"""randla.eigh and randla.nystrom against numpy.linalg.eigh."""

from __future__ import annotations

import collections
import dataclasses
import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import randla
from randla.testing import planted, psd, sparse_random
from randla.sketch import SKETCHES
from conftest import (
    assert_orthonormal_columns,
    assert_sorted_nonnegative,
    dask_array,
    dense,
    eps_of,
    library_of,
    to_np,
    torch_sparse,
)


def symmetric(n, decay="polynomial", rate=None, dtype=np.float64, rng=0):
    """A Hermitian indefinite matrix: the Hermitian part of a planted one."""
    P = planted(n, n, decay, rate=rate, dtype=dtype, rng=rng).A
    return (P + P.conj().T) / 2


def by_magnitude(w):
    """Eigenvalues sorted by descending magnitude."""
    return w[np.argsort(-np.abs(w), kind="stable")]


def exact_eigvals(A):
    return by_magnitude(np.linalg.eigvalsh(dense(A)))


# -- eigh -------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 5, 15])
@pytest.mark.parametrize("seed", [0, 1])
def test_eigh_indefinite_fast_decay(k, seed):
    A = symmetric(200, "exponential", rate=0.8, rng=seed)
    w0 = exact_eigvals(A)
    assert np.any(w0[:15] < 0) and np.any(w0[:15] > 0)  # indefinite
    w, V = randla.eigh(A, k, rng=seed)
    np.testing.assert_allclose(w, w0[:k], rtol=1e-8, atol=1e-12)
    assert_orthonormal_columns(V, 1e-12)
    # Eigenpairs: the residual of each pair is small (eigenvectors converge
    # as the square root of the eigenvalues).
    residual = np.linalg.norm(A @ V - V * w, axis=0)
    assert np.all(residual <= 1e-4 * abs(w0[0]))


@pytest.mark.parametrize("k", [5, 20])
def test_eigh_indefinite_slow_decay(k):
    A = symmetric(200, "polynomial", rate=1.0, rng=0)
    w0 = exact_eigvals(A)
    w, V = randla.eigh(A, k, rng=0)
    assert np.all(np.abs(w - w0[:k]) <= 1e-3 * abs(w0[0]))
    assert np.all(np.sign(w) == np.sign(w0[:k]))
    assert_orthonormal_columns(V, 1e-12)


@pytest.mark.parametrize("decay, rtol", [("exponential", 1e-10), ("polynomial", 1e-3)])
def test_eigh_psd(decay, rtol):
    A = psd(200, decay=decay, rng=0)
    w0 = np.linalg.eigvalsh(A)[::-1]
    w, V = randla.eigh(A, 10, rng=0)
    np.testing.assert_allclose(w, w0[:10], rtol=rtol)
    assert np.all(w > 0)


def test_eigh_flat_spectrum_of_both_signs():
    # A random graph's adjacency: eigenvalues in +- pairs crowding the k-th.
    # Rayleigh-Ritz on the subspace-iteration basis alone returned the 2nd to
    # 6th 39-53% too small; on [Q, A Q] they are within 5%.
    G = sp.random(3000, 3000, density=0.002, random_state=0, format="csr")
    G = (G + G.T).tocsr()
    w0 = by_magnitude(np.linalg.eigvalsh(G.toarray()))[:6]
    w, V = randla.eigh(G, 6, rng=0)
    # Magnitudes only: which of a near-tie +-4.2 pair comes first is rounding.
    assert np.all(np.abs(np.abs(w) - np.abs(w0)) <= 0.05 * np.abs(w0))
    assert np.linalg.norm(G @ V - V * w, 2) <= 0.1 * abs(w0[0])


def test_eigh_spectral_error_near_optimal():
    """||A - V diag(w) V^H||_2 against the optimum |lambda|_{k+1}."""
    A = symmetric(200, "polynomial", rate=0.5, rng=0)
    w0 = exact_eigvals(A)
    r = randla.eigh(A, 10, rng=0)
    error = np.linalg.norm(A - r.reconstruct(), 2)
    assert abs(w0[10]) * (1 - 1e-10) <= error <= 1.1 * abs(w0[10])


def test_eigh_exact_low_rank():
    A = psd(150, rank=6, rng=0) - 0.5 * psd(150, rank=3, rng=1)  # indefinite, rank <= 9
    w0 = exact_eigvals(A)
    r = randla.eigh(A, 9, rng=0)
    np.testing.assert_allclose(r.w, w0[:9], rtol=1e-10)
    assert np.linalg.norm(A - r.reconstruct(), 2) <= 1e-10 * np.linalg.norm(A, 2)


def test_eigh_rank_deficient():
    A = psd(100, rank=4, rng=0)
    w, V = randla.eigh(A, 8, rng=0)
    assert np.all(np.abs(w[4:]) <= 1e-10)
    assert_orthonormal_columns(V, 1e-10)


def test_eigh_with_a_sketch_of_n_columns_is_exact_without_passes():
    A = symmetric(30, "polynomial", rate=0.5, rng=0)
    r = randla.eigh(A, 25, rng=0)  # l = min(25 + 10, 30): the identity
    assert r.power_iters == 0
    np.testing.assert_allclose(r.w, exact_eigvals(A)[:25], rtol=1e-10)


def test_eigh_zero_matrix():
    w, V = randla.eigh(np.zeros((30, 30)), 4, rng=0)
    assert np.array_equal(w, np.zeros(4))
    assert_orthonormal_columns(V, 1e-12)


def test_eigh_order_is_by_descending_magnitude():
    A = symmetric(120, "exponential", rate=0.7, rng=3)
    w, _ = randla.eigh(A, 12, rng=0)
    assert np.all(np.diff(np.abs(w)) <= 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex64, np.complex128])
def test_eigh_dtype_kept(dtype):
    A = symmetric(80, "exponential", rate=0.7, dtype=dtype, rng=0).astype(dtype)
    w, V = randla.eigh(A, 5, rng=0)
    assert V.dtype == dtype and w.dtype == np.finfo(dtype).dtype
    assert w.shape == (5,) and V.shape == (80, 5)
    assert_orthonormal_columns(V, 100 * eps_of(V))
    np.testing.assert_allclose(w, exact_eigvals(A.astype(np.complex128))[:5], rtol=100 * eps_of(V), atol=1e-6)


def test_eigh_int_input():
    A = np.round(100 * symmetric(50, "exponential", rng=0)).astype(np.int64)
    A = A + A.T  # exactly symmetric integers
    w, V = randla.eigh(A, 3, rng=0)
    assert w.dtype == np.float64 and V.dtype == np.float64
    np.testing.assert_allclose(w, exact_eigvals(A.astype(float))[:3], rtol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.complex128, torch.bfloat16])
def test_eigh_torch(dtype):
    base = np.complex128 if dtype.is_complex else np.float64
    A = torch.as_tensor(symmetric(80, "exponential", rate=0.7, dtype=base, rng=0)).to(dtype)
    w, V = randla.eigh(A, 5, rng=0)
    assert isinstance(w, torch.Tensor) and isinstance(V, torch.Tensor)
    assert V.dtype == dtype
    ref = exact_eigvals(to_np(A).astype(np.complex128))[:5]
    np.testing.assert_allclose(to_np(w), ref, rtol=0.02 if dtype == torch.bfloat16 else 1e-4)


def test_eigh_bfloat16_computed_in_float32():
    A = torch.as_tensor(symmetric(80, "exponential", rate=0.7, rng=0)).to(torch.bfloat16)
    half, single = randla.eigh(A, 5, rng=1), randla.eigh(A.float(), 5, rng=1)
    for h, s in zip(half, single):
        assert h.dtype == torch.bfloat16 and torch.equal(h, s.to(torch.bfloat16))


def _symmetric_sparse():
    B = sparse_random(150, 150, 1500, rng=0)
    return sp.csr_array(B + B.T)


@pytest.mark.parametrize(
    "make",
    [
        lambda: _symmetric_sparse(),
        lambda: sp.csc_matrix(_symmetric_sparse()),
        lambda: aslinearoperator(_symmetric_sparse()),
        lambda: torch_sparse(_symmetric_sparse(), "coo"),
        lambda: torch_sparse(_symmetric_sparse(), "csr"),
        lambda: randla.as_operator(_symmetric_sparse().toarray()),
        lambda: dask_array(_symmetric_sparse().toarray()),
    ],
    ids=["csr_array", "csc_matrix", "linear_operator", "torch_coo", "torch_csr", "operator", "dask"],
)
def test_eigh_backends(make):
    A = make()
    w0 = exact_eigvals(A)
    w, V = randla.eigh(A, 5, rng=0)
    expected = library_of(A)
    assert isinstance(w, expected) and isinstance(V, expected)
    # This sparse spectrum has close eigenvalues: 4 passes leave ~1e-3.
    assert np.all(np.abs(to_np(w) - w0[:5]) <= 1e-2 * abs(w0[0]))
    assert_orthonormal_columns(V, 1e-12)
    if expected is np.ndarray:  # same library, same draws: the dense answer
        ref = randla.eigh(dense(A), 5, rng=0)
        np.testing.assert_allclose(w, ref.w, rtol=1e-10)


def test_eigh_input_not_modified():
    A = symmetric(60, rng=0)
    before = A.copy()
    randla.eigh(A, 5, rng=0)
    assert np.array_equal(A, before)


def test_eigh_same_rng_same_result(untouched_global_rng):
    A = symmetric(80, rng=0)
    a, b = randla.eigh(A, 5, rng=3), randla.eigh(A, 5, rng=3)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = randla.eigh(A, 5, power_iters=0, rng=4)
    d = randla.eigh(A, 5, power_iters=0, rng=5)
    assert not np.array_equal(c.w, d.w)


@pytest.mark.parametrize("rng", [None, 1, np.random.SeedSequence(1), np.random.PCG64(1), np.random.default_rng(1)])
def test_eigh_rng_kinds(rng, untouched_global_rng):
    A = torch.as_tensor(psd(50, rng=0))
    w, _ = randla.eigh(A, 3, rng=rng)
    np.testing.assert_allclose(w.numpy(), np.linalg.eigvalsh(A.numpy())[::-1][:3], rtol=1e-8)


@pytest.mark.parametrize("make", [lambda: planted(60, 60, rng=0).A, lambda: planted(60, 60, dtype=np.complex128, rng=0).A])
def test_non_hermitian_refused(make):
    A = make()
    with pytest.raises(ValueError, match="Hermitian"):
        randla.eigh(A, 5, rng=0)
    with pytest.raises(ValueError, match="Hermitian"):
        randla.nystrom(A, 5, rng=0)


@pytest.mark.parametrize("sketch", SKETCHES)
def test_non_hermitian_refused_with_every_sketch(sketch):
    """The check mixes all the sketch's columns: a single column of a
    CountSketch is often zero, and at l = n (the identity) a coordinate vector
    that sees one row and one column of A."""
    A = planted(200, 200, rng=0).A
    for seed in range(10):
        for rank in (90, 190, 200):
            with pytest.raises(ValueError, match="Hermitian"):
                randla.eigh(A, rank, sketch=sketch, rng=seed)
            with pytest.raises(ValueError, match="Hermitian"):
                randla.nystrom(A, rank, sketch=sketch, rng=seed)


@pytest.mark.parametrize("scale", [1e-170, 1e160])
def test_non_hermitian_refused_at_any_scale(scale):
    """||A w - A^H w|| and ||A w|| are taken with scaling: without it both
    would underflow to 0 or overflow to inf here, and prove nothing."""
    A = planted(60, 60, rng=0).A * scale
    with pytest.raises(ValueError, match="Hermitian"):
        randla.eigh(A, 5, rng=0)
    with pytest.raises(ValueError, match="Hermitian"):
        randla.nystrom(A, 5, rng=0)


def test_complex_symmetric_but_not_hermitian_refused():
    """A == A^T is not enough for complex A."""
    P = planted(60, 60, dtype=np.complex128, rng=0).A
    A = P + P.T
    with pytest.raises(ValueError, match="Hermitian"):
        randla.eigh(A, 3, rng=0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: -np.eye(50),  # negative definite: the sketch's core has no positive eigenvalue
        lambda: np.diag([1.0, -100.0] + [0.0] * 48),  # a negative trace
        lambda: sp.csr_array(np.kron(np.eye(25), [[1.0, 2.0], [2.0, 1.0]])),  # positive diagonal, eigenvalues 3 and -1
        lambda: torch.from_numpy(-psd(60, rank=10, rng=0)),
    ],
)
@pytest.mark.parametrize("tol", [None, 0.01])
def test_nystrom_refuses_a_matrix_that_is_not_psd(make, tol):
    """Nystrom's trace error tr(A) - sum(S) is >= 0 for PSD A; for A that is
    not, it was clipped to an exact 0, and the tolerance read as met."""
    with pytest.raises(ValueError, match="not positive semidefinite"):
        randla.nystrom(make(), 5, tol=tol, rng=0)


def test_nystrom_takes_psd_matrices_with_rounding_level_negative_eigenvalues():
    A = psd(200, rank=10, rng=0)
    w, V = np.linalg.eigh(A)
    A = (V * np.where(w > 1e-8, w, -1e-13)) @ V.T  # numerically PSD, as a computed kernel matrix is
    A = (A + A.T) / 2
    for k in (5, 40):
        assert randla.nystrom(A, k, rng=0).trace_error >= 0


@pytest.mark.parametrize("seed", [1, 2])
@pytest.mark.parametrize("k, tol", [(20, None), (40, None), (40, 1e-6)])
def test_nystrom_takes_a_gram_matrix_formed_in_float32(seed, k, tol):
    """A Gram matrix formed in float32 and cast to float64 has negative
    eigenvalues at float32's rounding (-3e-8 relative); they were refused as
    "not positive semidefinite" against a threshold tied to float64's eps, and
    the rounding-level core eigenvalues kept were inverted, costing 1e-4."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((500, 20)).astype(np.float32)
    K = (X @ X.T).astype(np.float64)
    w = np.linalg.eigvalsh(K)[::-1]
    assert w[-1] < 0  # indefinite, at rounding level
    r = randla.nystrom(K, k, tol=tol, rng=seed)
    assert np.all(r.S >= 0) and r.trace_error >= 0
    # Entries carry float32 rounding (6e-8): the top eigenvalues and K itself
    # are recovered to a few times that, far from float32's sqrt(eps) = 3.5e-4.
    assert np.abs(r.S[:20] - w[:20]).max() <= 1e-6 * w[0]
    assert np.linalg.norm(K - (r.U * r.S) @ r.U.T) <= 1e-6 * np.linalg.norm(K)


@pytest.mark.parametrize("k", [5, 20])
@pytest.mark.parametrize("tol", [None, 0.01])
def test_nystrom_refusal_is_relative_to_the_largest_eigenvalue(k, tol):
    """A negative eigenvalue of 1e-2 of the largest is refused; one of 1e-7,
    within rounding of float32 entries, is clipped."""
    A = psd(200, rank=10, rng=0)
    w, V = np.linalg.eigh(A)
    for rel, refused in [(1e-2, True), (1e-7, False)]:
        w[0] = -rel * w[-1]
        B = (V * w) @ V.T
        B = (B + B.T) / 2
        if refused:
            with pytest.raises(ValueError, match="not positive semidefinite"):
                randla.nystrom(B, k, tol=tol, rng=0)
        else:
            r = randla.nystrom(B, k, tol=tol, rng=0)
            assert np.all(r.S >= 0) and r.trace_error >= 0


@pytest.mark.parametrize("power_iters", [0, 2])
def test_passes_over_a_are_as_documented(power_iters):
    """nystrom: power_iters + 1 (with the probes of the trace estimate, where
    tr(A) is unknown, one more); eigh: 2 power_iters + 3."""
    A = psd(300, rank=40, rng=0)
    op, calls = counting(A)
    randla.nystrom(op, 10, power_iters=power_iters, rng=0)
    assert calls == {"A": power_iters + 2}  # the last: the trace probes of a LinearOperator
    op, calls = counting(A)
    randla.eigh(op, 10, power_iters=power_iters, rng=0)
    assert calls == {"A": 2 * power_iters + 3}


def test_a_single_column_sketch_still_sees_a_skew_part():
    """w^T S w = 0 for a real skew-symmetric S: one column takes A^H w."""
    A = psd(50, rank=5, rng=0) + 0.1 * np.triu(np.ones((50, 50)), 1)
    with pytest.raises(ValueError, match="Hermitian"):
        randla.eigh(A, 1, oversample=0, rng=0)


def test_non_square_refused():
    A = planted(60, 40, rng=0).A
    with pytest.raises(ValueError, match=r"square.*\(60, 40\)"):
        randla.eigh(A, 3)
    with pytest.raises(ValueError, match=r"square.*\(60, 40\)"):
        randla.nystrom(A, 3)


def test_eigh_result_object():
    A = psd(50, rng=0)
    r = randla.eigh(A, 4, rng=0)
    w, V = r
    assert w is r.w and V is r.V and len(r) == 2 and r.rank == 4
    assert r.power_iters == 4
    L, R = r.factors()
    np.testing.assert_allclose(L @ R, (V * w) @ V.T)
    np.testing.assert_allclose(r.reconstruct(), L @ R)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.w = None


@st.composite
def hermitian_problems(draw):
    n = draw(st.integers(1, 60))
    rank = draw(st.integers(1, n))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.complex128]))
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["psd", "indefinite"]))
    return n, rank, dtype, seed, kind


@given(hermitian_problems())
def test_eigh_properties_hypothesis(problem):
    n, rank, dtype, seed, kind = problem
    A = psd(n, dtype=dtype, rng=seed) if kind == "psd" else symmetric(n, dtype=dtype, rng=seed).astype(dtype)
    w, V = randla.eigh(A, rank, rng=seed)
    assert w.shape == (rank,) and V.shape == (n, rank)
    assert V.dtype == dtype
    eps = eps_of(V)
    assert_orthonormal_columns(V, 100 * eps)
    assert np.all(np.diff(np.abs(w)) <= 100 * eps)
    # Ritz values lie inside the spectrum.
    lam = np.linalg.eigvalsh(A.astype(np.complex128))
    scale = np.abs(lam).max()
    assert np.all(w >= lam[0] - 100 * eps * scale) and np.all(w <= lam[-1] + 100 * eps * scale)
    # The largest eigenvalue in magnitude is found (power iterations converge
    # on these spectra: their leading gap is at least 1/2).
    assert abs(w[0]) == pytest.approx(scale, rel=1e-3)


# -- nystrom ----------------------------------------------------------------------


def trace_norm(M):
    return float(np.abs(np.linalg.eigvalsh(M)).sum())


@pytest.mark.parametrize(
    "decay, rate", [("polynomial", 1.0), ("polynomial", 2.0), ("exponential", 0.9)]
)
@pytest.mark.parametrize("k, l", [(5, 15), (10, 20), (10, 30)])
def test_nystrom_trace_norm_error_bound(decay, rate, k, l):
    """E ||A - A_hat||_* <= (1 + k / (l - k - 1)) ||A - A_k||_*
    (Tropp, Yurtsever, Udell & Cevher 2017): the mean over seeds respects it
    with a 10% margin for the sampling."""
    A = psd(150, decay=decay, rate=rate, rng=0)
    lam = np.linalg.eigvalsh(A)[::-1]
    optimum = lam[k:].sum()
    errors = []
    for seed in range(6):
        U, S = randla.nystrom(A, k, oversample=l - k, rng=seed)
        errors.append(trace_norm(A - (U * S) @ U.T))
    assert all(e >= optimum * (1 - 1e-10) for e in errors)
    assert np.mean(errors) <= 1.1 * (1 + k / (l - k - 1)) * optimum


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_nystrom_is_psd_and_below_a(dtype):
    """A_hat is PSD and A - A_hat is PSD (Nystrom never overestimates)."""
    A = psd(120, decay="polynomial", rate=1.0, dtype=dtype, rng=0)
    r = randla.nystrom(A, 10, rng=0)
    U, S = r
    assert_sorted_nonnegative(S)
    assert_orthonormal_columns(U, 1e-12)
    Ahat = r.reconstruct()
    np.testing.assert_allclose(Ahat, Ahat.conj().T, atol=1e-14)
    assert np.linalg.eigvalsh(Ahat).min() >= -1e-12
    assert np.linalg.eigvalsh(A - Ahat).min() >= -1e-12
    lam = np.linalg.eigvalsh(A)[::-1]
    assert np.all(S <= lam[:10] * (1 + 1e-10))


@pytest.mark.parametrize("rank", [1, 8])
def test_nystrom_exact_low_rank(rank):
    A = psd(100, rank=8, rng=0)
    U, S = randla.nystrom(A, 8, rng=0)
    assert np.linalg.norm(A - (U * S) @ U.T) <= 1e-10 * np.linalg.norm(A)
    if rank == 1:
        U, S = randla.nystrom(A, 1, rng=0)
        assert S[0] == pytest.approx(np.linalg.eigvalsh(A)[-1], rel=1e-10)


def test_nystrom_rank_deficient_and_zero():
    A = psd(60, rank=3, rng=0)
    U, S = randla.nystrom(A, 6, rng=0)
    assert np.all(S[3:] <= 1e-10) and np.all(S >= 0)
    assert_orthonormal_columns(U, 1e-10)
    U, S = randla.nystrom(np.zeros((30, 30)), 4, rng=0)
    assert np.array_equal(S, np.zeros(4)) and np.all(np.isfinite(U))


def test_nystrom_power_iters_help():
    A = psd(150, decay="polynomial", rate=1.0, rng=0)
    lam = np.linalg.eigvalsh(A)[::-1]
    errors = {
        q: np.mean([trace_norm(A - randla.nystrom(A, 10, power_iters=q, rng=s).reconstruct()) for s in range(4)])
        for q in (0, 2)
    }
    assert errors[2] < errors[0]
    assert errors[2] <= 1.1 * lam[10:].sum()


@pytest.mark.parametrize("scale", [1e-150, 1e150])
def test_nystrom_and_eigh_scale(scale):
    A = psd(80, rng=0)
    lam = np.linalg.eigvalsh(A)[::-1]
    U, S = randla.nystrom(scale * A, 5, rng=0)
    np.testing.assert_allclose(S / scale, lam[:5], rtol=0.2)
    w, _ = randla.eigh(scale * A, 5, rng=0)
    np.testing.assert_allclose(w / scale, lam[:5], rtol=1e-10)


@pytest.mark.parametrize("dtype, scale", [(np.float64, 1e-200), (np.float64, 1e200), (np.float32, 1e22)])
def test_nystrom_far_from_unit_scale(dtype, scale):
    """The stabilising shift nu = sqrt(n) eps ||Y||_F takes a scaled norm:
    ||Y||_F^2 overflows here (and underflows at 1e-200)."""
    A = psd(80, rank=8, rng=0)
    lam = np.linalg.eigvalsh(A)[::-1]
    r = randla.nystrom((A * scale).astype(dtype), 5, rng=0)
    rtol = 1e-8 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(r.S / scale, lam[:5], rtol=rtol)
    assert 0 < r.shift / scale < 1e3 * np.finfo(dtype).eps * lam[0]


@pytest.mark.parametrize("container", [np.asarray, torch.as_tensor])
def test_complex_hermitian_near_underflow_is_not_refused(container):
    """At 1e-300, A w - A^H w holds subnormal rounding noise; its norm came
    back inf for complex A, and the Hermitian check refused a Hermitian A."""
    G = planted(30, 5, dtype=np.complex128, rng=0).A * 10
    A = G @ G.conj().T
    lam = np.linalg.eigvalsh(A)[::-1]
    w, _ = randla.eigh(container(A * 1e-300), 5, rng=0)
    np.testing.assert_allclose(to_np(w) / 1e-300, lam[:5], rtol=1e-8)
    U, S = randla.nystrom(container(A * 1e-300), 30, rng=0)
    np.testing.assert_allclose(to_np(S)[:5] / 1e-300, lam[:5], rtol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_nystrom_dtype_kept(dtype):
    A = psd(60, dtype=dtype, rng=0)
    r = randla.nystrom(A, 5, rng=0)
    assert r.U.dtype == dtype and r.S.dtype == np.finfo(dtype).dtype
    assert r.U.shape == (60, 5) and r.S.shape == (5,)
    assert r.shift >= 0
    assert_sorted_nonnegative(r.S)


@pytest.mark.parametrize(
    "make",
    [
        lambda A: torch.as_tensor(A),
        lambda A: torch.as_tensor(A).to(torch.bfloat16),
        lambda A: sp.csr_array(A),
        lambda A: aslinearoperator(A),
        lambda A: torch_sparse(sp.csr_array(A), "coo"),
        dask_array,
    ],
    ids=["torch", "torch_bf16", "csr", "linear_operator", "torch_coo", "dask"],
)
def test_nystrom_backends(make):
    A = psd(80, rank=10, rng=0)
    M = make(A)
    U, S = randla.nystrom(M, 10, rng=0)
    expected = library_of(M)
    assert isinstance(U, expected)
    rtol = 0.02 if getattr(M, "dtype", None) == torch.bfloat16 else 1e-8
    np.testing.assert_allclose(to_np(S), np.linalg.eigvalsh(dense(M).astype(float))[::-1][:10], rtol=rtol)


@pytest.mark.parametrize("container", ["numpy", "linear_operator"])
def test_nystrom_legacy_rng(container, untouched_global_rng):
    """A RandomState (legacy-seeded MT19937, no SeedSequence to spawn from)
    is accepted as by svd, and is reproducible; the trace-error probes of a
    LinearOperator need a second stream."""
    A = psd(80, rank=8, rng=0)
    M = aslinearoperator(A) if container == "linear_operator" else A
    a = randla.nystrom(M, 3, rng=np.random.RandomState(0))
    b = randla.nystrom(M, 3, rng=np.random.RandomState(0))
    np.testing.assert_array_equal(a.S, b.S)
    assert a.trace_error == b.trace_error
    np.testing.assert_allclose(a.S, np.linalg.eigvalsh(A)[::-1][:3], rtol=1e-8)


def test_nystrom_same_rng_same_result(untouched_global_rng):
    A = psd(80, decay="polynomial", rng=0)
    a, b = randla.nystrom(A, 5, rng=11), randla.nystrom(A, 5, rng=11)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    c = randla.nystrom(A, 5, rng=12)
    assert not np.array_equal(a.S, c.S)


def test_nystrom_result_object():
    A = psd(50, rng=0)
    r = randla.nystrom(A, 4, rng=0)
    U, S = r
    assert len(r) == 2 and r.rank == 4 and U is r.U
    L, R = r.factors()
    np.testing.assert_allclose(L @ R, (U * S) @ U.T)
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.S = None


@given(hermitian_problems())
def test_nystrom_properties_hypothesis(problem):
    n, rank, dtype, seed, _ = problem
    A = psd(n, dtype=dtype, rng=seed)
    U, S = randla.nystrom(A, rank, rng=seed)
    assert U.shape == (n, rank) and S.shape == (rank,)
    assert U.dtype == dtype
    assert_sorted_nonnegative(S)
    lam = np.linalg.eigvalsh(A.astype(np.complex128))[::-1]
    eps = eps_of(U)
    assert np.all(S <= lam[:rank] + 100 * eps * lam[0])
    # Columns carrying a nonzero eigenvalue are orthonormal.
    keep = S > 100 * eps * lam[0]
    assert_orthonormal_columns(U[:, keep], 100 * eps)


# -- trace error and tolerance of nystrom ----------------------------------------------


def _trace_residual(A, r):
    return float(np.trace(A - r.reconstruct()))


@pytest.mark.parametrize("container", ["numpy", "sparse", "torch", "kernel"])
def test_nystrom_trace_error_is_exact_when_the_trace_is_cheap(container):
    A = randla.testing.psd(200, decay="polynomial", rate=1.0, rng=0)
    if container == "sparse":
        A = sp.csr_array(A)
    elif container == "torch":
        A = torch.from_numpy(A)
    elif container == "kernel":
        X = np.random.default_rng(0).standard_normal((200, 3))
        A = randla.kernel_operator(X, bandwidth=1.0)
    r = randla.nystrom(A, 20, rng=0)
    dense = A.toarray() if container == "sparse" else (A.block() if container == "kernel" else np.asarray(A))
    assert r.trace_error_exact
    assert r.trace_error == pytest.approx(_trace_residual(dense, randla.NystromResult(
        np.asarray(r.U), np.asarray(r.S))), rel=1e-8)


@pytest.mark.parametrize("container", ["numpy", "sparse", "torch"])
def test_nystrom_float32_trace_beyond_the_float32_range(container):
    """tr(A) and sum(S) exceed float32's 3.4e38 while every entry fits: summed
    in float32 they overflowed (a RuntimeWarning, then inf or a zero error)."""
    P = randla.testing.psd(30, rank=8, rng=0)  # trace 4.16
    A = (P * 1e38).astype(np.float32)
    wrap = {"numpy": np.asarray, "sparse": sp.csr_array, "torch": torch.from_numpy}[container]
    exact = float(np.trace(A.astype(np.float64)))
    r = randla.nystrom(wrap(A), 3, rng=0)
    S = to_np(r.S).astype(np.float64)
    assert r.trace_error == pytest.approx(exact - S.sum(), rel=1e-5)
    assert r.trace_error == pytest.approx(1e38 * (np.trace(P) - np.linalg.eigvalsh(P)[::-1][:3].sum()), rel=1e-3)
    t = randla.nystrom(wrap(A), tol=0.1, rng=0)
    assert t.rank <= 8 and t.trace_error <= 0.1 * exact


def test_nystrom_trace_error_estimate_for_operators():
    A = randla.testing.psd(300, decay="polynomial", rate=0.5, rng=1)
    errors = []
    for seed in range(8):
        r = randla.nystrom(aslinearoperator(A), 20, rng=seed)
        assert not r.trace_error_exact
        residual = A - r.reconstruct()
        # Unbiased, standard deviation <= sqrt(2 / probes) ||A - A_hat||_F.
        errors.append((r.trace_error - np.trace(residual)) / (np.sqrt(2 / 16) * np.linalg.norm(residual)))
    assert max(abs(e) for e in errors) < 4
    assert abs(np.mean(errors)) < 4 / np.sqrt(8)


@pytest.mark.parametrize("tol", [0.3, 0.1, 0.01])
def test_nystrom_tol_reaches_the_trace_tolerance_with_the_smallest_rank(tol):
    A = randla.testing.psd(400, decay="polynomial", rate=1.5, rng=2)
    r = randla.nystrom(A, tol=tol, rng=0)
    total = np.trace(A)
    assert _trace_residual(A, r) <= tol * total * (1 + 1e-10)
    assert r.trace_error == pytest.approx(_trace_residual(A, r), rel=1e-8, abs=1e-12 * total)
    # One rank less misses the tolerance: the trace error grows by S[k-1].
    assert r.trace_error + float(r.S[-1]) > tol * total
    # The rank stays near the optimal one for that trace error.
    w = np.linalg.eigvalsh(A)[::-1]
    optimal = int(np.argmax(np.cumsum(w[::-1])[::-1] <= tol * total))
    assert r.rank <= 2 * optimal + 10


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_nystrom_tol_half_precision_with_a_large_trace(dtype):
    """tr(A) is summed in double, where it is finite: in fp16 it would
    overflow (65504) and leave the trace error unknown."""
    X = np.random.default_rng(0).standard_normal((400, 5)) * 10
    A = torch.from_numpy(X @ X.T).to(dtype)
    Ad = to_np(A).astype(np.float64)
    total = np.trace(Ad)
    assert total > 65504
    r = randla.nystrom(A, tol=0.01, rng=0)
    assert r.rank == 5  # A has rank 5, up to rounding
    assert math.isfinite(r.trace_error) and r.trace_error <= 0.01 * total
    U, S = (to_np(x).astype(np.float64) for x in r)
    assert np.trace(Ad - (U * S) @ U.T) <= 0.01 * total


@pytest.mark.filterwarnings("ignore:overflow encountered in reduce:RuntimeWarning")
def test_nystrom_tol_infinite_trace_is_not_met():
    """A trace beyond the float64 range (NumPy warns of the overflow) leaves
    the error unknown: the rank goes to the cap rather than to the smallest.
    (A float32 trace is summed in double, where 4e38 is finite.)"""
    A = np.eye(400) * 1e307
    assert np.isinf(randla.as_operator(A).trace())
    r = randla.nystrom(A, 10, tol=0.5, rng=0)
    assert r.rank == 10
    assert r.trace_error == math.inf
    assert randla.as_operator(np.eye(400, dtype=np.float32) * np.float32(1e36)).trace() == pytest.approx(4e38)


def test_nystrom_tol_respects_the_rank_cap():
    A = randla.testing.psd(300, decay="polynomial", rate=0.5, rng=3)
    r = randla.nystrom(A, 5, tol=1e-3, rng=0)
    assert r.rank == 5


def test_nystrom_needs_rank_or_tol():
    A = randla.testing.psd(30, rng=0)
    with pytest.raises(ValueError, match="rank.*tol"):
        randla.nystrom(A)
    with pytest.raises(ValueError, match="tol"):
        randla.nystrom(A, tol=1.5)
    with pytest.raises(ValueError, match="probes"):
        randla.nystrom(A, 3, probes=0)


def counting(A):
    """A as a LinearOperator that counts its products with A and with A^H."""
    calls = collections.Counter()

    def product(name):
        return lambda X: calls.update([name]) or A @ X

    op = LinearOperator(A.shape, matvec=product("A"), rmatvec=product("A^H"), matmat=product("A"),
                        rmatmat=product("A^H"), dtype=A.dtype)
    return op, calls


def test_hermitian_check_needs_no_pass_and_none_for_kernel_matrices(monkeypatch):
    # A pass over A for the check alone is, for an implicit kernel matrix, a
    # whole evaluation of K: the sketch's core Omega^H A Omega shows it.
    A = psd(400, decay="polynomial", rng=0)
    op, calls = counting(A)
    r = randla.nystrom(op, tol=1e-3, rng=0)
    assert r.rank > 64 and calls["A^H"] == 0

    X = np.random.default_rng(0).standard_normal((300, 4))
    K = randla.kernel_operator(X, gamma=0.5)
    monkeypatch.setattr(type(K), "rmatmat", lambda self, Y: pytest.fail("K^H was applied"))
    dense = K.block()
    U, S = randla.nystrom(K, tol=1e-3, rng=0)
    assert np.trace(dense - (U * S) @ U.T) <= 1.001e-3 * np.trace(dense)
    w, V = randla.eigh(K, 10, rng=0)
    np.testing.assert_allclose(w, np.linalg.eigvalsh(dense)[::-1][:10], rtol=1e-6)


@pytest.mark.parametrize("layout", ["coo", "csr", "csc"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_nystrom_trace_error_is_exact_for_torch_sparse(layout, dtype):
    """tr(A) read from the diagonal of a torch sparse tensor, as from SciPy's:
    it was a Girard-Hutchinson estimate (trace_error_exact=False, one more pass)."""
    P = psd(300, decay="polynomial", rate=1.0, rng=0)
    D = torch.from_numpy(P).to(dtype)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        A = {"coo": D.to_sparse_coo, "csr": D.to_sparse_csr, "csc": D.to_sparse_csc}[layout]()
        r = randla.nystrom(A, 10, rng=0)
    entries = to_np(D).astype(np.float64)
    S = to_np(r.S).astype(np.float64)
    assert r.trace_error_exact
    assert r.trace_error == pytest.approx(np.trace(entries) - S.sum(), rel=1e-12, abs=1e-12 * np.trace(entries))
    # The rank-10 error of the best PSD approximation bounds it from below; near it for this decay.
    w = np.linalg.eigvalsh(entries)[::-1]
    assert w[10:].sum() * (1 - 1e-6) <= r.trace_error <= 2 * w[10:].sum()


@pytest.mark.parametrize("c", [3.0, 14.0])
def test_nystrom_refuses_an_indefinite_matrix_its_sketch_dilutes(c):
    """I - c q q^T: the core Omega^T A Omega stays positive definite and tr(A) - sum(S) positive,
    but the top eigenvalue of A_hat exceeds A's Rayleigh quotient at its own vector."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal(300)
    q /= np.linalg.norm(q)
    A = np.eye(300) - c * np.outer(q, q)
    for seed in range(10):
        for rank in (5, 10):
            with pytest.raises(ValueError, match="not positive semidefinite"):
                randla.nystrom(A, rank, rng=seed)
    with pytest.raises(ValueError, match="not positive semidefinite"):
        randla.nystrom(sp.linalg.aslinearoperator(A), 10, rng=0)


def test_nystrom_reports_whether_tol_was_met():
    A = psd(300, decay="polynomial", rng=0)
    capped = randla.nystrom(A, 5, tol=1e-6, rng=0)
    assert not capped.converged and capped.trace_error > 1e-6 * np.trace(A)
    met = randla.nystrom(A, tol=0.05, rng=0)
    assert met.converged and np.trace(A - met.reconstruct()) <= 0.05 * np.trace(A) * (1 + 1e-12)
    assert randla.nystrom(A, 5, rng=0).converged
