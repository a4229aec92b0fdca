"""Random test matrices: shapes, scaling, sparsity, products, reproducibility."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.sparse.linalg import aslinearoperator

import array_api_compat.numpy as np_xp
import array_api_compat.torch as torch_xp
import randla
from randla.sketch import SKETCHES, Sketch, draw_sketch
from randla.testing import planted, sparse_random
from conftest import dask_array, singular_values, spectral_error_ratio, to_np, torch_sparse

#: c with E[Omega Omega^H] = c I for an n x l sketch.
GRAM_SCALE = {"gaussian": "l", "rademacher": "l", "sparse_sign": 1, "countsketch": 1, "srht": 1}


def gram_scale(kind, l):
    return l if GRAM_SCALE[kind] == "l" else 1


@pytest.mark.parametrize("kind", SKETCHES)
@pytest.mark.parametrize(
    "xp, dtype",
    [
        (np_xp, np.float64),
        (np_xp, np.float32),
        (np_xp, np.complex128),
        (torch_xp, torch.float32),
        (torch_xp, torch.float64),
        (torch_xp, torch.complex128),
    ],
    ids=["np64", "np32", "npc128", "torch32", "torch64", "torchc128"],
)
def test_shape_dtype_library(kind, xp, dtype):
    omega = draw_sketch(kind, 50, 12, xp=xp, dtype=dtype, rng=0)
    assert isinstance(omega, Sketch) and isinstance(omega, randla.Operator)
    assert omega.kind == kind and omega.shape == (50, 12)
    D = omega.dense()
    assert tuple(D.shape) == (50, 12) and D.dtype == dtype
    assert isinstance(D, torch.Tensor if xp is torch_xp else np.ndarray)
    assert np.all(np.isfinite(to_np(D)))


def test_default_is_numpy_float64():
    D = draw_sketch("gaussian", 10, 3, rng=0).dense()
    assert isinstance(D, np.ndarray) and D.dtype == np.float64


@pytest.mark.parametrize("kind", SKETCHES)
def test_scaling_in_expectation(kind):
    """The average of Omega Omega^T over many draws is close to c I."""
    n, l, draws = 48, 12, 300
    acc = np.zeros((n, n))
    for seed in range(draws):
        D = draw_sketch(kind, n, l, rng=seed).dense()
        acc += D @ D.T
    acc /= draws * gram_scale(kind, l)
    # Rows of Rademacher and sparse sketches have a fixed norm; Gaussian and
    # SRHT rows only in expectation.
    exact_rows = kind in ("rademacher", "sparse_sign", "countsketch")
    assert np.abs(np.diag(acc) - 1).max() <= (1e-12 if exact_rows else 0.15)
    assert np.abs(np.diag(acc).mean() - 1) <= 0.03
    off = acc - np.diag(np.diag(acc))
    assert np.abs(off).max() <= 0.15


def test_gaussian_moments():
    D = draw_sketch("gaussian", 400, 100, rng=0).dense()
    assert abs(D.mean()) <= 0.01 and abs(D.std() - 1) <= 0.01
    C = draw_sketch("gaussian", 400, 100, dtype=np.complex128, rng=0).dense()
    # CN(0, 1): E|z|^2 = 1, real and imaginary parts of variance 1/2.
    assert abs(np.mean(np.abs(C) ** 2) - 1) <= 0.01
    assert abs(C.real.var() - 0.5) <= 0.01 and abs(C.imag.var() - 0.5) <= 0.01


def test_rademacher_entries():
    D = draw_sketch("rademacher", 200, 30, rng=0).dense()
    assert set(np.unique(D)) == {-1.0, 1.0}
    assert abs(D.mean()) <= 0.03
    T = draw_sketch("rademacher", 200, 30, xp=torch_xp, dtype=torch.float32, rng=0).dense()
    assert set(torch.unique(T).tolist()) == {-1.0, 1.0}


@pytest.mark.parametrize("n, l", [(64, 16), (100, 100), (37, 5)])
def test_srht_columns_are_orthogonal(n, l):
    """sqrt(n/l) D C^T R: signs times l distinct orthonormal DCT columns."""
    D = draw_sketch("srht", n, l, rng=0).dense()
    np.testing.assert_allclose(D.T @ D, (n / l) * np.eye(l), atol=1e-12)


def test_srht_wider_than_tall_refused():
    with pytest.raises(ValueError, match=r"l <= n.*l=11, n=10"):
        draw_sketch("srht", 10, 11, rng=0)


@pytest.mark.parametrize(
    "kind, nnz_per_row, l, expected",
    [
        ("sparse_sign", 8, 20, 8),
        ("sparse_sign", 8, 5, 5),  # capped at l
        ("sparse_sign", 3, 20, 3),
        ("sparse_sign", 1, 20, 1),
        ("countsketch", 8, 20, 1),  # always one per row
    ],
)
def test_sparse_nonzeros_per_row(kind, nnz_per_row, l, expected):
    omega = draw_sketch(kind, 300, l, nnz_per_row=nnz_per_row, rng=0)
    assert omega.nnz_per_row == expected
    D = omega.dense()
    counts = (D != 0).sum(axis=1)
    assert np.all(counts == expected)  # distinct columns: no collisions summed away
    values = np.unique(np.abs(D[D != 0]))
    np.testing.assert_allclose(values, [1 / np.sqrt(expected)], rtol=1e-15)
    assert set(np.unique(np.sign(D[D != 0]))) == {-1.0, 1.0}


@pytest.mark.parametrize("n, l", [(60, 50), (500, 60), (30, 45)])
def test_countsketch_has_full_rank(n, l):
    """No bucket left empty (n >= l), no two rows sharing one (n < l): hashed
    independently, about e^(-n/l) of the columns would be zero."""
    for seed in range(20):
        D = draw_sketch("countsketch", n, l, rng=seed).dense()
        counts = (D != 0).sum(axis=0)
        if n >= l:
            assert counts.min() >= n // l and counts.max() <= -(-n // l)
        else:
            assert counts.max() == 1
        assert np.linalg.matrix_rank(D) == min(n, l)


def test_sparse_sign_default_is_eight():
    assert draw_sketch("sparse_sign", 100, 20, rng=0).nnz_per_row == 8


def _operators():
    A = planted(60, 40, rng=0).A
    S = sparse_random(60, 40, 400, rng=0)
    return {
        "numpy": A,
        "numpy_F": np.asfortranarray(A),
        "csr": sp.csr_array(S),
        "csc": sp.csc_matrix(S),
        "coo": sp.coo_array(S),
        "linear_operator": aslinearoperator(A),
        "torch": torch.as_tensor(A),
        "torch_coo": torch_sparse(S, "coo"),
        "torch_csr": torch_sparse(S, "csr"),
        "centered": randla.Centered(S),
        "dask": dask_array(A),
    }


OPERATORS = _operators()


@pytest.mark.parametrize("kind", SKETCHES)
@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_apply_equals_product_with_dense(kind, name):
    op = randla.as_operator(OPERATORS[name])
    omega = draw_sketch(kind, op.shape[1], 10, xp=op.xp, dtype=op.dtype, device=op.device, rng=0)
    Y = omega.apply(op)
    assert type(Y) is type(omega.dense())
    np.testing.assert_allclose(to_np(Y), to_np(op.matmat(omega.dense())), atol=1e-12)


@pytest.mark.parametrize("kind", SKETCHES)
def test_sketch_is_an_operator(kind):
    omega = draw_sketch(kind, 30, 8, dtype=np.complex128, rng=0)
    D = omega.dense()
    X = planted(8, 3, dtype=np.complex128, rng=1).A
    Y = planted(30, 3, dtype=np.complex128, rng=2).A
    np.testing.assert_allclose(omega.matmat(X), D @ X, atol=1e-14)
    np.testing.assert_allclose(omega.rmatmat(Y), D.conj().T @ Y, atol=1e-14)


@pytest.mark.parametrize("kind", SKETCHES)
@pytest.mark.parametrize("xp, dtype", [(np_xp, np.float64), (torch_xp, torch.float64)], ids=["numpy", "torch"])
def test_seeded_reproducibility(kind, xp, dtype, untouched_global_rng):
    a = to_np(draw_sketch(kind, 40, 10, xp=xp, dtype=dtype, rng=7).dense())
    b = to_np(draw_sketch(kind, 40, 10, xp=xp, dtype=dtype, rng=7).dense())
    c = to_np(draw_sketch(kind, 40, 10, xp=xp, dtype=dtype, rng=8).dense())
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    gen = np.random.default_rng(7)
    d = to_np(draw_sketch(kind, 40, 10, xp=xp, dtype=dtype, rng=gen).dense())
    e = to_np(draw_sketch(kind, 40, 10, xp=xp, dtype=dtype, rng=gen).dense())
    assert not np.array_equal(d, e)  # the generator advances


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="hadamard", n=10, l=3), "`sketch` must be one of .*got 'hadamard'"),
        (dict(kind="gaussian", n=0, l=3), "`n` must be an int >= 1; got 0"),
        (dict(kind="gaussian", n=10, l=0), "`l` must be an int >= 1; got 0"),
        (dict(kind="gaussian", n=10, l=2.5), "`l` must be an int >= 1; got 2.5"),
        (dict(kind="sparse_sign", n=10, l=3, nnz_per_row=0), "`nnz_per_row` must be an int >= 1; got 0"),
    ],
)
def test_bad_arguments(kwargs, match):
    kind = kwargs.pop("kind")
    with pytest.raises(ValueError, match=match):
        draw_sketch(kind, rng=0, **kwargs)


@pytest.mark.parametrize(
    "rng, error, match",
    [("seed", TypeError, "`rng` must be None, an int"), (-1, ValueError, "`rng` seed must be >= 0; got -1")],
)
def test_bad_rng(rng, error, match):
    """The rng is checked as in every public function, not by NumPy's own messages."""
    with pytest.raises(error, match=match):
        draw_sketch("gaussian", 10, 3, rng=rng)


@pytest.mark.parametrize("kind", SKETCHES)
@pytest.mark.parametrize("container", ["numpy", "csr", "torch", "dask"])
def test_every_sketch_in_svd(kind, container):
    """Each kind drives randla.svd to <= 1.1 sigma_{k+1} on a planted matrix."""
    A = planted(300, 200, "polynomial", rate=0.5, rng=0).A
    M = {"numpy": A, "csr": sp.csr_array(A), "torch": torch.as_tensor(A), "dask": dask_array(A)}[container]
    r = randla.svd(M, 15, sketch=kind, rng=0)
    assert spectral_error_ratio(A, r, 15) <= 1.1


@pytest.mark.parametrize("kind", SKETCHES)
@pytest.mark.parametrize("method", ["rsvd", "block_krylov"])
def test_every_sketch_near_the_short_side(kind, method):
    """A sketch nearly as wide as A (l = 50 of n = 60) and one exactly as wide
    (l = n, the identity: a square +-1 matrix of size 10 is often singular)
    lose no direction of A: near Eckart-Young, and exact at full rank."""
    A = np.random.default_rng(0).standard_normal((300, 60))
    s = np.linalg.svd(A, compute_uv=False)
    for seed in range(5):
        r = randla.svd(A, 40, method=method, sketch=kind, rng=seed)
        assert np.linalg.norm(A - r.reconstruct()) <= 1.2 * np.linalg.norm(s[40:])
    C = A[:, :10]
    for seed in range(20):
        r = randla.svd(C, 10, method=method, sketch=kind, rng=seed)
        assert np.linalg.norm(C - r.reconstruct()) <= 1e-12 * np.linalg.norm(C)


@pytest.mark.parametrize("kind", SKETCHES)
def test_every_sketch_on_sparse_data_and_in_tol_mode(kind):
    S = sparse_random(400, 300, 4000, rng=0)
    s = singular_values(S)
    r = randla.svd(S, 10, sketch=kind, rng=0)
    assert spectral_error_ratio(S, r, 10, s) <= 1.1
    t = randla.svd(S, tol=0.5, sketch=kind, rng=0)
    assert t.converged
    assert np.linalg.norm(S.toarray() - t.reconstruct()) <= 0.5 * np.linalg.norm(S.toarray())
    # A LinearOperator's norm is estimated from the sketch: the estimate must
    # be scaled right for every kind.
    e = randla.qb(aslinearoperator(S), tol=0.5, sketch=kind, rng=0)
    true = np.linalg.norm(S.toarray() - e.reconstruct()) / np.linalg.norm(S.toarray())
    assert e.error_estimate == pytest.approx(true, rel=0.25)


@given(
    st.sampled_from(SKETCHES),
    st.integers(1, 60),
    st.integers(1, 60),
    st.integers(0, 2**32 - 1),
)
def test_properties_hypothesis(kind, n, l, seed):
    if kind == "srht":
        l = min(l, n)
    omega = draw_sketch(kind, n, l, rng=seed)
    D = omega.dense()
    assert D.shape == (n, l) and np.all(np.isfinite(D))
    assert np.array_equal(D, draw_sketch(kind, n, l, rng=seed).dense())
    if kind in ("sparse_sign", "countsketch"):
        assert np.all((D != 0).sum(axis=1) == omega.nnz_per_row)
        # Every row has unit norm: E[Omega Omega^T] = I.
        np.testing.assert_allclose(np.linalg.norm(D, axis=1), 1.0, rtol=1e-14)
    if kind == "srht":
        np.testing.assert_allclose(D.T @ D, (n / l) * np.eye(l), atol=1e-10)


# -- products with data of another precision or container; cost of drawing and of products ------------------


def _exact_product(A, omega):
    return to_np(A).astype(np.float64) @ to_np(omega.dense()).astype(np.float64)


@pytest.mark.parametrize("kind", SKETCHES)
@pytest.mark.parametrize("library", ["numpy", "torch"])
@pytest.mark.parametrize("data, sketch", [("float32", "float64"), ("float64", "float32")])
def test_apply_returns_the_data_dtype_whatever_the_sketch_precision(kind, library, data, sketch):
    """One rule for every kind: A @ Omega in A's dtype. The dense kinds used to
    return the sketch's float64 on NumPy and to raise on torch (float != double)."""
    xp, lib = (torch_xp, torch) if library == "torch" else (np_xp, np)
    A = planted(30, 20, rng=0).A.astype(data)
    M = torch.from_numpy(A) if library == "torch" else A
    omega = draw_sketch(kind, 20, 5, xp=xp, dtype=getattr(lib, sketch), rng=0)
    Y = omega.apply(randla.as_operator(M))
    assert type(Y) is type(M) and Y.dtype == M.dtype
    exact = _exact_product(A, omega)
    err = np.abs(to_np(Y) - exact).max() / np.abs(exact).max()
    assert err <= 1e-5 and (data == "float32" or err <= 1e-12)


@pytest.mark.parametrize("kind", SKETCHES)
def test_a_complex_sketch_of_real_data_is_complex_in_the_data_precision(kind):
    A = planted(30, 20, rng=0).A.astype(np.float32)
    omega = draw_sketch(kind, 20, 5, dtype=np.complex128, rng=0)
    Y = omega.apply(A)
    assert Y.dtype == np.complex64
    exact = A.astype(np.float64) @ omega.dense()
    assert np.abs(Y - exact).max() <= 1e-5 * np.abs(exact).max()


_CONTAINERS = {
    "numpy": lambda A: A,
    "csr_array": sp.csr_array,
    "csc_matrix": sp.csc_matrix,
    "linear_operator": aslinearoperator,
    "torch": torch.as_tensor,
    "torch_coo": lambda A: torch_sparse(A, "coo"),
    "dask": dask_array,
    "operator": randla.as_operator,
}


@pytest.mark.parametrize("kind", SKETCHES)
@pytest.mark.parametrize("name", sorted(_CONTAINERS))
def test_apply_takes_anything_as_operator_takes(kind, name):
    """apply(A) and A @ sketch for plain matrices, not only randla Operators
    (apply raised AttributeError: no attribute 'matmat'; A @ sketch a NumPy
    gufunc error or 'unsupported operand type')."""
    A = planted(30, 20, rng=0).A
    M = _CONTAINERS[name](A)
    op = randla.as_operator(M)
    omega = draw_sketch(kind, 20, 6, xp=op.xp, dtype=op.dtype, device=op.device, rng=0)
    expected = _exact_product(A, omega)
    Y = omega.apply(M)
    assert type(Y) is type(omega.dense()) and Y.dtype == op.dtype
    np.testing.assert_allclose(to_np(Y), expected, atol=1e-12)
    if name != "linear_operator":  # LinearOperator's @ makes an object array of what it does not know
        np.testing.assert_allclose(to_np(M @ omega), expected, atol=1e-12)


def test_apply_refuses_a_matrix_of_the_wrong_width():
    omega = draw_sketch("sparse_sign", 20, 5, rng=0)
    with pytest.raises(ValueError, match=r"needs A with 20 columns.*20 x 5 sketch; got A of shape \(20, 30\)"):
        omega.apply(np.ones((20, 30)))
    with pytest.raises(TypeError, match="A must be a matrix"):
        omega.apply([[1.0] * 20])


@pytest.mark.parametrize("zeta, l", [(8, 20), (3, 7), (5, 5)])
def test_sparse_sign_rows_are_uniform_subsets(zeta, l):
    """Each row: zeta distinct columns, a uniformly random subset of the l (every
    column and every pair of columns equally likely), independent signs +-1/sqrt(zeta)."""
    n = 40_000
    omega = draw_sketch("sparse_sign", n, l, nnz_per_row=zeta, rng=0)
    S = omega._omega
    assert S.has_canonical_format and np.array_equal(np.diff(S.indptr), np.full(n, zeta))
    cols = S.indices.reshape(n, zeta)
    assert np.all(np.diff(cols, axis=1) > 0)  # sorted, hence distinct
    np.testing.assert_array_equal(np.abs(S.data), np.full(n * zeta, 1 / np.sqrt(zeta)))
    p = zeta / l
    counts = np.bincount(cols.ravel(), minlength=l)
    assert np.abs(counts - n * p).max() <= 5 * np.sqrt(n * p * (1 - p)) + 1e-9
    hits = np.zeros((n, l), dtype=np.float64)
    hits[np.arange(n)[:, None], cols] = 1.0
    pairs = (hits.T @ hits)[np.triu_indices(l, 1)]
    q = zeta * (zeta - 1) / (l * (l - 1))
    assert np.abs(pairs - n * q).max() <= 5 * np.sqrt(n * q * (1 - q)) + 1e-9
    positive = np.count_nonzero(S.data > 0)
    assert abs(positive - n * zeta / 2) <= 5 * np.sqrt(n * zeta / 4)


def test_drawing_a_sparse_sign_sketch_takes_memory_of_its_nonzeros():
    """O(n zeta), not the n x l float keys it took (160 MB here, and 32 GB at
    n = 10^6, l = 2000)."""
    n, l = 20_000, 1000
    tracemalloc.start()
    omega = draw_sketch("sparse_sign", n, l, rng=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert omega._omega.nnz == 8 * n
    assert peak <= 8 * 8 * n * 8  # measured 3.4 n zeta 8 bytes; n x l float64 keys are 125 n zeta 8 bytes


@pytest.mark.parametrize("kind", ["sparse_sign", "countsketch"])
@pytest.mark.parametrize(
    "block", ["numpy", "numpy_f32", "numpy_c128", "csr_array", "csr_matrix", "torch", "torch_f32", "torch_c128"]
)
def test_sparse_sketch_products_equal_the_dense_ones(kind, block):
    """matmat, rmatmat and .H @ with the stored sparse Omega: the values, library
    and dtype of the products with dense()."""
    library = "torch" if block.startswith("torch") else "numpy"
    xp, lib = (torch_xp, torch) if library == "torch" else (np_xp, np)
    for sketch_dtype in ("float64", "float32", "complex128"):
        omega = draw_sketch(kind, 40, 6, xp=xp, dtype=getattr(lib, sketch_dtype), rng=0)
        dtype = {"f32": "float32", "c128": "complex128"}.get(block.rpartition("_")[2], "float64")
        X, Y = planted(6, 3, rng=1).A.astype(dtype), planted(40, 3, rng=2).A.astype(dtype)
        if dtype == "complex128":
            X, Y = X + 1j * planted(6, 3, rng=3).A, Y + 1j * planted(40, 3, rng=4).A
        wrap = {"csr_array": sp.csr_array, "csr_matrix": sp.csr_matrix}.get(block, lib.asarray)
        X, Y = wrap(X), wrap(Y)
        D = omega.dense()
        if library == "torch":  # torch multiplies only equal dtypes
            common = torch.promote_types(D.dtype, X.dtype)
            expected = [D.to(common) @ X.to(common), D.to(common).mH @ Y.to(common)]
        else:
            expected = [D @ X, D.conj().T @ Y]
        for got, want in zip([omega.matmat(X), omega.rmatmat(Y), omega.H @ Y], expected + expected[1:]):
            assert type(got) is type(want) and got.dtype == want.dtype
            tol = 1e-6 if "float32" in (str(got.dtype), sketch_dtype) or "complex64" in str(got.dtype) else 1e-14
            np.testing.assert_allclose(to_np(got), to_np(want), rtol=tol, atol=tol)


@pytest.mark.parametrize("kind", ["sparse_sign", "countsketch"])
def test_sparse_sketch_of_a_sparse_matrix_takes_memory_of_its_nonzeros(kind):
    """Omega^H A for sketch-and-solve without the dense n x l Omega (160 MB here)."""
    n, l = 100_000, 200
    A = sparse_random(n, 20, 20_000, rng=0)
    omega = draw_sketch(kind, n, l, rng=0)
    dense_A = A.toarray()
    expected = omega._omega.T.toarray() @ dense_A
    for product in (lambda: omega.rmatmat(A), lambda: omega.H @ A, lambda: omega.rmatmat(dense_A)):
        tracemalloc.start()
        SA = product()
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert type(SA) is np.ndarray and SA.dtype == np.float64
        np.testing.assert_allclose(SA, expected, atol=1e-12)
        assert peak <= 4 * 2**20  # measured 0.4 MB; a dense Omega takes 160 MB


@pytest.mark.parametrize("dtype", [np.float16, np.longdouble, np.clongdouble])
def test_gaussian_in_half_and_extended_precision(dtype):
    """Drawn in float32 (float64 for long double) and cast, as every other kind
    is: NumPy's generator raised 'Unsupported dtype' for these."""
    drawn = {np.float16: np.float32, np.longdouble: np.float64, np.clongdouble: np.complex128}[dtype]
    D = draw_sketch("gaussian", 400, 100, dtype=dtype, rng=0).dense()
    assert D.dtype == dtype
    np.testing.assert_array_equal(D, draw_sketch("gaussian", 400, 100, dtype=drawn, rng=0).dense().astype(dtype))
    assert abs(float(D.mean().real)) <= 0.01 and abs(float(np.mean(np.abs(D) ** 2)) - 1) <= 0.02


@pytest.mark.parametrize("kind", ["gaussian", "rademacher", "sparse_sign", "countsketch", "srht"])
def test_complex_dtypes_as_documented(kind):
    """The module docs: in a complex dtype "gaussian" is CN(0, 1) (real and
    imaginary parts of variance 1/2, E|omega|^2 = 1); the other kinds stay real."""
    D = draw_sketch(kind, 4000, 10, dtype=np.complex128, rng=0).dense()
    assert D.dtype == np.complex128
    if kind == "gaussian":
        assert np.mean(D.real**2) == pytest.approx(0.5, abs=0.03)
        assert np.mean(D.imag**2) == pytest.approx(0.5, abs=0.03)
    else:
        assert not np.any(D.imag)
