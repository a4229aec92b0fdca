"""The per-library operations: random draws, QR variants, normalisers."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import array_api_compat.numpy as np_xp
import array_api_compat.torch as torch_xp
from randla import backend
from randla.backend import (
    NORMALIZERS,
    conj_transpose,
    device_of,
    finfo_eps,
    frobenius_norm,
    householder_qr,
    namespace,
    normalize,
    orthonormalize,
    qr,
    random_signs,
    real_dtype,
    small_eigh,
    small_svd,
    standard_normal,
    to_numpy,
    triangular_inverse,
)
from randla.testing import planted, spectrum
from conftest import assert_orthonormal_columns, sin_max_angle, to_np

LIBRARIES = [
    (np_xp, np.float64),
    (np_xp, np.float32),
    (np_xp, np.complex128),
    (torch_xp, torch.float64),
    (torch_xp, torch.float32),
    (torch_xp, torch.complex128),
]
LIBRARY_IDS = ["np64", "np32", "npc128", "torch64", "torch32", "torchc128"]


def block(xp, dtype, m=80, n=6, cond=None, rng=0):
    """A tall block with a chosen condition number, in the given library."""
    complex_ = "complex" in str(dtype)
    rate = None if cond is None else cond ** (-1 / (n - 1))
    A = planted(m, n, "exponential" if cond else "flat", rate=rate, rng=rng,
                dtype=np.complex128 if complex_ else np.float64).A
    return xp.asarray(A, dtype=dtype) if xp is torch_xp else A.astype(dtype)


def eps(dtype):
    return 1.2e-7 if "float32" in str(dtype) or "complex64" in str(dtype) else 2.3e-16


# -- library detection ------------------------------------------------------------


def test_namespace_and_device():
    a, t = np.zeros((2, 2)), torch.zeros((2, 2))
    assert device_of(a) == "cpu" and device_of(t) == torch.device("cpu")
    assert namespace(a) is np_xp or namespace(a).__name__.endswith("numpy")
    assert namespace(t).__name__.endswith("torch")


def test_to_numpy():
    a = np.arange(4.0)
    assert to_numpy(a) is a
    t = torch.arange(4.0, requires_grad=True)
    out = to_numpy(t)
    assert isinstance(out, np.ndarray) and np.array_equal(out, [0, 1, 2, 3])


@pytest.mark.parametrize("xp", [np_xp, torch_xp], ids=["numpy", "torch"])
def test_real_dtype_and_eps(xp):
    assert real_dtype(xp, xp.complex64) == xp.float32
    assert real_dtype(xp, xp.complex128) == xp.float64
    assert real_dtype(xp, xp.float32) == xp.float32
    assert finfo_eps(xp, xp.float64) == np.finfo(np.float64).eps
    assert finfo_eps(xp, xp.float32) == np.finfo(np.float32).eps


# -- random draws -----------------------------------------------------------------


@pytest.mark.parametrize("xp, dtype", LIBRARIES, ids=LIBRARY_IDS)
def test_standard_normal(xp, dtype, untouched_global_rng):
    x = standard_normal(xp, (300, 200), dtype, "cpu", np.random.default_rng(0))
    assert tuple(x.shape) == (300, 200) and x.dtype == dtype
    v = to_np(x)
    assert abs(v.mean()) <= 0.01
    assert abs(np.mean(np.abs(v) ** 2) - 1) <= 0.01  # E|z|^2 = 1, real or complex
    if np.iscomplexobj(v):
        assert abs(v.real.var() - 0.5) <= 0.01
    same = standard_normal(xp, (300, 200), dtype, "cpu", np.random.default_rng(0))
    other = standard_normal(xp, (300, 200), dtype, "cpu", np.random.default_rng(1))
    assert np.array_equal(to_np(same), v) and not np.array_equal(to_np(other), v)


@pytest.mark.parametrize("xp, dtype", LIBRARIES, ids=LIBRARY_IDS)
def test_random_signs(xp, dtype, untouched_global_rng):
    x = to_np(random_signs(xp, (100, 30), dtype, "cpu", np.random.default_rng(0)))
    assert set(np.unique(x)) == {-1.0, 1.0}
    assert abs(x.mean()) <= 0.05
    assert np.array_equal(x, to_np(random_signs(xp, (100, 30), dtype, "cpu", np.random.default_rng(0))))


def test_draws_advance_the_generator():
    gen = np.random.default_rng(0)
    a = standard_normal(torch_xp, (5, 5), torch.float64, "cpu", gen)
    b = standard_normal(torch_xp, (5, 5), torch.float64, "cpu", gen)
    assert not torch.equal(a, b)


# -- QR and orthonormalisation ----------------------------------------------------


@pytest.mark.parametrize("xp, dtype", LIBRARIES, ids=LIBRARY_IDS)
@pytest.mark.parametrize("cond", [None, 1e3, 1e12])
def test_qr(xp, dtype, cond):
    """Y = Q R with Q orthonormal, whether Cholesky-QR2 or the Householder
    fallback is taken (cond 1e12 is past what Cholesky-QR can handle)."""
    if cond == 1e12 and "float32" in str(dtype):
        cond = 1e5
    Y = block(xp, dtype, cond=cond)
    Q, R = qr(xp, Y)
    assert Q.dtype == dtype and tuple(Q.shape) == tuple(Y.shape)
    assert_orthonormal_columns(Q, 50 * eps(dtype))
    scale = np.linalg.norm(to_np(Y), 2)
    np.testing.assert_allclose(to_np(Q @ R), to_np(Y), atol=100 * eps(dtype) * scale)
    assert np.allclose(np.tril(to_np(R), -1), 0)


@pytest.mark.parametrize("xp, dtype", LIBRARIES, ids=LIBRARY_IDS)
def test_orthonormalize_rank_deficient(xp, dtype):
    """A zero column and a repeated column: still an orthonormal basis that
    contains range(Y)."""
    Y = to_np(block(xp, dtype))
    Y[:, 2] = 0
    Y[:, 4] = Y[:, 1]
    Yx = torch.as_tensor(Y) if xp is torch_xp else Y
    Q = orthonormalize(xp, Yx)
    assert_orthonormal_columns(Q, 50 * eps(dtype))
    Qn = to_np(Q)
    np.testing.assert_allclose(Qn @ (Qn.conj().T @ Y), Y, atol=100 * eps(dtype) * np.abs(Y).max())


@pytest.mark.parametrize("xp, dtype", LIBRARIES, ids=LIBRARY_IDS)
def test_householder_qr(xp, dtype):
    Y = block(xp, dtype, cond=1e3)
    Q = householder_qr(xp, Y)
    assert_orthonormal_columns(Q, 50 * eps(dtype))
    assert sin_max_angle(Q, orthonormalize(xp, Y)) <= 1e3 * eps(dtype)


@pytest.mark.parametrize("normalizer", NORMALIZERS)
@pytest.mark.parametrize("xp, dtype", LIBRARIES, ids=LIBRARY_IDS)
@pytest.mark.parametrize("cond", [10.0, "large"])
def test_normalize_keeps_the_range(normalizer, xp, dtype, cond):
    if cond == "large":
        cond = 1e3 if "float32" in str(dtype) else 1e6
    Y = block(xp, dtype, cond=cond)
    Z = normalize(xp, Y, normalizer)
    assert tuple(Z.shape) == tuple(Y.shape) and Z.dtype == dtype
    assert np.all(np.isfinite(to_np(Z)))
    Qy = orthonormalize(xp, Y)
    Qz = np.linalg.qr(to_np(Z).astype(np.complex128))[0]
    # Both bases carry a backward error of O(eps ||Y||): the weakest
    # direction of Y may turn by O(eps cond(Y)), no more.
    assert sin_max_angle(Qz, Qy) <= 100 * cond * eps(dtype)
    if normalizer == "qr":
        assert_orthonormal_columns(Z, 50 * eps(dtype))
    if normalizer in ("cholqr", "auto"):
        # One Cholesky-QR pass: orthonormal to O(eps cond^2), so well
        # conditioned, which is all a normaliser between passes must be.
        assert np.linalg.cond(to_np(Z)) <= 1.5
    if normalizer == "none":
        assert np.abs(to_np(Z)).max() == pytest.approx(1.0)
    if normalizer == "lu":
        # P L: a permuted unit lower triangle; partial pivoting bounds its
        # entries by 1 (by sqrt(2) in complex, pivoted on |re| + |im|).
        bound = np.sqrt(2) if "complex" in str(dtype) else 1.0
        assert np.abs(to_np(Z)).max() <= bound * (1 + 1e-6)


@pytest.mark.parametrize("normalizer", NORMALIZERS)
@pytest.mark.parametrize("xp", [np_xp, torch_xp], ids=["numpy", "torch"])
def test_normalize_zero_block(normalizer, xp):
    """A zero block (A = 0) must not produce NaN or warnings."""
    Y = xp.zeros((20, 4), dtype=xp.float64)
    Z = to_np(normalize(xp, Y, normalizer))
    assert np.all(np.isfinite(Z))


@pytest.mark.parametrize("shape", [(40, 6), (6, 6), (4, 9)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
def test_lu_normalizer_torch_is_permuted_lower(shape, dtype):
    Y = torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(0))
    P, L, _ = torch.linalg.lu(Y)
    assert torch.equal(normalize(torch_xp, Y, "lu"), P @ L)


def test_lu_normalizer_torch_tall_block():
    """No m x m permutation matrix: a million rows would need 8 TB for one."""
    Y = torch.randn(10**6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    Z = normalize(torch_xp, Y, "lu")
    assert Z.shape == Y.shape and float(Z.abs().max()) <= 1.0
    assert sin_max_angle(np.linalg.qr(Z.numpy())[0], np.linalg.qr(Y.numpy())[0]) <= 1e-10


@pytest.mark.parametrize("scale", [1e-150, 1e150])
@pytest.mark.parametrize("normalizer", NORMALIZERS)
def test_normalize_extreme_scale(normalizer, scale):
    Y = scale * block(np_xp, np.float64, cond=100.0)
    Z = normalize(np_xp, Y, normalizer)
    assert np.all(np.isfinite(Z))
    assert sin_max_angle(np.linalg.qr(Z)[0], np.linalg.qr(Y / scale)[0]) <= 1e-10


@pytest.mark.parametrize("scale", [1e-200, 1e160, 1e200, 1e300])
def test_cholesky_qr_falls_back_quietly_at_extreme_scale(scale):
    """Y^H Y overflows beyond ~1e154: Cholesky-QR gives way to Householder
    without NumPy overflow warnings (errors under this test suite)."""
    Y = scale * block(np_xp, np.float64, cond=100.0)
    Q, R = qr(np_xp, Y)
    assert_orthonormal_columns(Q, 50 * eps(np.float64))
    np.testing.assert_allclose(Q @ R / scale, Y / scale, atol=1e-12 * np.linalg.norm(Y / scale, 2))
    for normalizer in ("auto", "cholqr"):
        Z = normalize(np_xp, Y, normalizer)
        assert sin_max_angle(np.linalg.qr(Z)[0], Q) <= 1e-10


# -- norms ------------------------------------------------------------------------


def _scales(dtype):
    """Magnitudes whose squares leave the float range of dtype, and 1."""
    if "32" in str(dtype) or "complex64" in str(dtype):
        return [1e-25, 1.0, 1e25]
    return [1e-300, 1e-170, 1.0, 1e160, 1e300]


@pytest.mark.parametrize("xp, dtype", LIBRARIES, ids=LIBRARY_IDS)
def test_frobenius_norm_at_any_scale(xp, dtype):
    """Squares of these entries overflow or underflow; the norm does not."""
    A = block(xp, dtype, m=50, n=7)
    exact = float(np.linalg.norm(to_np(A).astype(np.complex128)))
    for scale in _scales(dtype):
        # abs=0: pytest.approx would otherwise take anything below 1e-12 as equal.
        assert frobenius_norm(xp, A * scale) == pytest.approx(exact * scale, rel=10 * eps(dtype), abs=0)
        assert frobenius_norm(xp, A[:, 0] * scale) == pytest.approx(
            float(np.linalg.norm(to_np(A[:, 0]).astype(np.complex128))) * scale, rel=10 * eps(dtype), abs=0
        )


@pytest.mark.parametrize("xp, dtype", LIBRARIES, ids=LIBRARY_IDS)
def test_frobenius_norm_of_subnormal_entries(xp, dtype):
    """The largest entry itself subnormal: complex division by it overflows
    (1 / 1e-314 is inf), so NaN came back for complex arrays."""
    tiny = 1e-42 if "32" in str(dtype) or "complex64" in str(dtype) else 1e-314
    unit = block(xp, dtype, m=20, n=3)
    unit = unit / float(np.abs(to_np(unit)).max())
    A = unit * tiny
    exact = float(np.linalg.norm(to_np(unit).astype(np.complex128))) * tiny
    assert frobenius_norm(xp, A) == pytest.approx(exact, rel=1e-3, abs=0)  # subnormals keep few digits


def test_frobenius_norm_zero_and_non_finite():
    assert frobenius_norm(np_xp, np.zeros((4, 3))) == 0.0
    assert frobenius_norm(torch_xp, torch.zeros(4, 3)) == 0.0
    assert frobenius_norm(np_xp, np.zeros(0)) == 0.0  # the data of a sparse matrix without entries
    for shape in [(5, 0), (0, 0), (0, 5)]:  # a factor of rank 0 (5 x 0) used to divide by zero
        assert frobenius_norm(np_xp, np.zeros(shape)) == 0.0
        assert frobenius_norm(torch_xp, torch.zeros(shape)) == 0.0
    assert frobenius_norm(np_xp, np.array([[1.0, np.inf]])) == np.inf
    assert np.isnan(frobenius_norm(np_xp, np.array([[np.nan, 1e-200]])))


def test_frobenius_norm_rescales_block_by_block(monkeypatch):
    """Far from unit scale the entries are rescaled a few rows at a time,
    never as a whole copy of the matrix."""
    monkeypatch.setattr(backend, "_NORM_BLOCK", 10_000)
    A = planted(1000, 400, rng=0).A * 1e-170
    exact = float(np.linalg.norm(A / 1e-170)) * 1e-170
    tracemalloc.start()
    try:
        value = frobenius_norm(np_xp, A)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert value == pytest.approx(exact, rel=1e-13)
    assert peak < A.nbytes / 10, f"peak {peak / 1e6:.1f} MB"


# -- small dense problems ---------------------------------------------------------


@pytest.mark.parametrize("xp, dtype", LIBRARIES, ids=LIBRARY_IDS)
def test_small_svd(xp, dtype):
    B = block(xp, dtype, m=12, n=8, cond=1e3)
    u, s, vh = small_svd(xp, B)
    assert tuple(u.shape) == (12, 8) and tuple(s.shape) == (8,) and tuple(vh.shape) == (8, 8)
    np.testing.assert_allclose(to_np(s), spectrum(8, "exponential", rate=1e3 ** (-1 / 7)), rtol=1e3 * eps(dtype))


@pytest.mark.parametrize("xp, dtype", LIBRARIES, ids=LIBRARY_IDS)
def test_small_eigh_symmetrises(xp, dtype):
    B = to_np(block(xp, dtype, m=10, n=10))
    H = B + B.conj().T
    skew = H + 1e-3 * (B - B.conj().T)  # the anti-Hermitian part is dropped
    T = torch.as_tensor(skew) if xp is torch_xp else skew
    w, v = small_eigh(xp, T)
    w = to_np(w)
    assert np.all(np.diff(w) >= 0)  # ascending
    np.testing.assert_allclose(w, np.linalg.eigvalsh(H), atol=1e3 * eps(dtype) * np.abs(w).max())
    assert_orthonormal_columns(v, 100 * eps(dtype))


@pytest.mark.parametrize("xp, dtype", LIBRARIES, ids=LIBRARY_IDS)
def test_triangular_inverse(xp, dtype):
    R = xp.triu(block(xp, dtype, m=40, n=40, cond=1e3)) + 2 * xp.eye(40, dtype=dtype)
    inverse = to_np(triangular_inverse(xp, R))
    residual = inverse @ to_np(R) - np.eye(40)
    assert np.abs(residual).max() < 1e4 * eps(dtype)
    assert np.abs(np.tril(inverse, -1)).max() < 1e4 * eps(dtype)  # upper triangular


def test_conj_transpose():
    a = planted(5, 3, rng=0).A
    t = conj_transpose(np_xp, a)
    assert np.array_equal(t, a.T) and np.shares_memory(t, a)  # no copy for real input
    c = planted(5, 3, dtype=np.complex128, rng=0).A
    assert np.array_equal(conj_transpose(np_xp, c), c.conj().T)
    tc = torch.as_tensor(c)
    assert torch.equal(conj_transpose(torch_xp, tc).resolve_conj(), tc.conj().T.resolve_conj())


def test_module_names():
    for name in backend.__all__:
        assert hasattr(backend, name)


@given(
    st.integers(1, 60),
    st.integers(1, 20),
    st.sampled_from(["np64", "np32", "npc128", "torch64"]),
    st.sampled_from(NORMALIZERS),
    st.integers(0, 2**32 - 1),
)
def test_orthonormalize_hypothesis(m, n, which, normalizer, seed):
    xp, dtype = dict(zip(LIBRARY_IDS, LIBRARIES))[which]
    n = min(n, m)
    Y = block(xp, dtype, m=m, n=n, rng=seed) if n > 1 else (
        xp.asarray(planted(m, 1, rng=seed).A, dtype=dtype) if xp is torch_xp else planted(m, 1, rng=seed).A.astype(dtype))
    Q = orthonormalize(xp, Y)
    assert_orthonormal_columns(Q, 100 * eps(dtype))
    Z = normalize(xp, Y, normalizer)
    assert np.all(np.isfinite(to_np(Z)))
