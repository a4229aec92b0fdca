"""Operators: every adapter and composite against the dense products."""

from __future__ import annotations

import collections
import math
import threading
import tracemalloc
import warnings
from decimal import Decimal
from fractions import Fraction

import cloudpickle
import dask
import dask.array as da
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.sparse.linalg import LinearOperator, aslinearoperator

import randla
from randla.operators import Operator
from randla.testing import planted, sparse_random
from conftest import dask_array, dense, dtype_name, in_container, matrix, spectral_error_ratio, to_np, torch_sparse

M, N = 40, 30


def blocks(shape, dtype, library="numpy"):
    """Probe blocks X (n, 4) and Y (m, 4) in the operator's library and dtype."""
    m, n = shape
    base = np.complex128 if np.dtype(dtype).kind == "c" else np.float64
    X = planted(n, 4, dtype=base, rng=11).A
    Y = planted(m, 4, dtype=base, rng=12).A
    X, Y = X.astype(dtype), Y.astype(dtype)
    if library == "torch":
        return torch.as_tensor(X), torch.as_tensor(Y)
    return X, Y


def check_products(op, reference, rtol):
    """op.matmat(X) == A X and op.rmatmat(Y) == A^H Y against a dense reference."""
    work = np.dtype(dtype_name(op.dtype))
    library = "torch" if op.xp.__name__.endswith("torch") else "numpy"
    X, Y = blocks(op.shape, work, library)
    AX, AHY = op.matmat(X), op.rmatmat(Y)
    assert type(AX) is type(X) and type(AHY) is type(Y)
    assert tuple(AX.shape) == (op.shape[0], 4) and tuple(AHY.shape) == (op.shape[1], 4)
    R = reference.astype(np.complex128)
    scale = np.linalg.norm(R, 2) * np.linalg.norm(to_np(X), 2)
    np.testing.assert_allclose(to_np(AX), R @ to_np(X), atol=rtol * scale)
    np.testing.assert_allclose(to_np(AHY), R.conj().T @ to_np(Y), atol=rtol * scale)
    np.testing.assert_allclose(to_np(op @ X), to_np(AX))


# -- adapters ---------------------------------------------------------------------


def _adapters():
    A = planted(M, N, rng=0).A
    Ac = planted(M, N, dtype=np.complex128, rng=0).A
    S = sparse_random(M, N, 300, rng=0)
    Sc = sp.csr_array(S + 1j * sparse_random(M, N, 300, rng=1))
    return {
        "numpy_C": (A, "float64"),
        "numpy_F": (np.asfortranarray(A), "float64"),
        "numpy_f32": (A.astype(np.float32), "float32"),
        "numpy_f16": (A.astype(np.float16), "float32"),
        "numpy_c128": (Ac, "complex128"),
        "numpy_c64": (Ac.astype(np.complex64), "complex64"),
        "numpy_int": (matrix((M, N), np.int64), "float64"),
        "numpy_bool": (A > 0, "float64"),
        "numpy_longdouble": (A.astype(np.longdouble), "float64"),
        "numpy_clongdouble": (Ac.astype(np.clongdouble), "complex128"),
        "sparse_longdouble": (sp.csr_array(S, dtype=np.longdouble), "float64"),
        "numpy_view": (planted(2 * M, 2 * N, rng=0).A[::2, 1::2], "float64"),
        "csr_array": (sp.csr_array(S), "float64"),
        "csc_array": (sp.csc_array(S), "float64"),
        "coo_array": (sp.coo_array(S), "float64"),
        "csr_matrix": (sp.csr_matrix(S), "float64"),
        "csc_matrix": (sp.csc_matrix(S), "float64"),
        "coo_matrix": (sp.coo_matrix(S), "float64"),
        "lil_matrix": (sp.lil_matrix(S), "float64"),
        "dok_array": (sp.dok_array(S), "float64"),
        "bsr_array": (sp.bsr_array(S), "float64"),
        "dia_array": (sp.dia_array(sp.diags_array(np.arange(1.0, N + 1), shape=(M, N))), "float64"),
        "sparse_int": (sp.csr_array(np.round(10 * S.toarray()).astype(np.int32)), "float64"),
        "sparse_f32": (sp.csr_array(S, dtype=np.float32), "float32"),
        "sparse_complex": (Sc, "complex128"),
        "linear_operator": (aslinearoperator(A), "float64"),
        "linear_operator_complex": (aslinearoperator(Ac), "complex128"),
        "torch_f64": (torch.as_tensor(A), "float64"),
        "torch_f32": (torch.as_tensor(A).float(), "float32"),
        "torch_bf16": (torch.as_tensor(A).bfloat16(), "float32"),
        "torch_f16": (torch.as_tensor(A).half(), "float32"),
        "torch_c128": (torch.as_tensor(Ac), "complex128"),
        "torch_int": (torch.as_tensor(matrix((M, N), np.int64)), "float64"),
        "torch_F": (torch.as_tensor(np.asfortranarray(A)), "float64"),
        "torch_transposed_view": (torch.as_tensor(planted(N, M, rng=0).A).T, "float64"),
        "torch_coo": (torch_sparse(S, "coo"), "float64"),
        "torch_csr": (torch_sparse(S, "csr"), "float64"),
        "torch_coo_complex": (torch_sparse(Sc, "coo"), "complex128"),
        "torch_csr_bf16": (torch_sparse(S, "csr").to(torch.bfloat16), "float32"),
        "dask_f64": (dask_array(A), "float64"),
        "dask_f32": (dask_array(A.astype(np.float32)), "float32"),
        "dask_f16": (dask_array(A.astype(np.float16)), "float32"),
        "dask_c128": (dask_array(Ac), "complex128"),
        "dask_c64": (dask_array(Ac.astype(np.complex64)), "complex64"),
        "dask_int": (dask_array(matrix((M, N), np.int64)), "float64"),
    }


ADAPTERS = _adapters()


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_adapter_products(name):
    A, work = ADAPTERS[name]
    op = randla.as_operator(A)
    assert isinstance(op, Operator)
    assert op.shape == (M, N)
    assert dtype_name(op.dtype) == work
    reference = dense(A)
    low = any(t in name for t in ("f32", "f16", "bf16", "c64"))
    check_products(op, reference, 1e-5 if low else 1e-13)
    X, Y = blocks(op.shape, np.dtype(work), "torch" if name.startswith("torch") else "numpy")
    assert op.matmat(X).dtype == op.dtype and op.rmatmat(Y).dtype == op.dtype


@pytest.mark.parametrize("name", sorted(n for n, (_, work) in ADAPTERS.items() if work.startswith("complex")))
def test_complex_adapter_with_real_blocks(name):
    """A^H Y and A X for a complex A and real blocks: the conjugate is A's to take."""
    A, _ = ADAPTERS[name]
    op = randla.as_operator(A)
    X, Y = blocks(op.shape, np.float64, "torch" if name.startswith("torch") else "numpy")
    R = dense(A).astype(np.complex128)
    scale = np.linalg.norm(R, 2) * 2
    np.testing.assert_allclose(to_np(op.rmatmat(Y)), R.conj().T @ to_np(Y), atol=1e-6 * scale)
    np.testing.assert_allclose(to_np(op.H.matmat(Y)), R.conj().T @ to_np(Y), atol=1e-6 * scale)
    np.testing.assert_allclose(to_np(op.T.matmat(Y)), R.T @ to_np(Y), atol=1e-6 * scale)
    if name.startswith(("torch", "linear_operator")):
        return  # torch multiplies only equal dtypes, and says so; a LinearOperator has no means
    np.testing.assert_allclose(to_np(op.matmat(X)), R @ to_np(X), atol=1e-6 * scale)
    explicit = R - R.mean(axis=0)
    np.testing.assert_allclose(to_np(randla.Centered(A).rmatmat(Y)), explicit.conj().T @ to_np(Y), atol=1e-6 * scale)


@pytest.mark.parametrize("name", sorted(ADAPTERS))
def test_adapter_squared_norm(name):
    A, _ = ADAPTERS[name]
    op = randla.as_operator(A)
    value = op.squared_norm()
    if name.startswith("linear_operator"):
        assert value is None  # not cheap to know
        return
    exact = np.linalg.norm(dense(A).astype(np.complex128)) ** 2
    low = any(t in name for t in ("f32", "f16", "bf16", "c64"))
    assert value == pytest.approx(exact, rel=1e-5 if low else 1e-12)


def test_coo_with_duplicates_squared_norm():
    """Duplicate COO entries are summed before squaring."""
    rows = np.array([0, 0, 1, 2, 2, 2])
    cols = np.array([1, 1, 0, 2, 2, 2])
    vals = np.array([1.0, 2.0, -1.0, 0.5, 0.5, -2.0])
    A = sp.coo_array((vals, (rows, cols)), shape=(3, 3))
    assert not A.has_canonical_format
    op = randla.as_operator(A)
    assert op.squared_norm() == pytest.approx(np.linalg.norm(A.toarray()) ** 2, rel=1e-15)
    T = torch.sparse_coo_tensor(
        torch.as_tensor(np.vstack([rows, cols])), torch.as_tensor(vals), (3, 3), check_invariants=True
    )
    assert randla.as_operator(T).squared_norm() == pytest.approx(np.linalg.norm(A.toarray()) ** 2, rel=1e-15)
    check_products(op, A.toarray(), 1e-15)


def test_dia_padding_and_duplicate_csr_squared_norm():
    """DIA stores entries that fall outside the matrix; a CSR built by hand
    may repeat a column in a row. Neither may count in ||A||_F^2."""
    data = planted(3, N, rng=0).A
    D = sp.dia_array((data, [0, 4, -5]), shape=(M, N))
    assert np.abs(data).sum() > np.abs(D.toarray()).sum()  # some are padding
    assert randla.as_operator(D).squared_norm() == pytest.approx(np.linalg.norm(D.toarray()) ** 2, rel=1e-12)
    C = sp.csr_array((np.array([1.0, 2.0, 3.0]), np.array([0, 0, 1]), np.array([0, 2, 3])), shape=(2, 2))
    assert not C.has_canonical_format
    before = (C.data.copy(), C.indices.copy())
    assert randla.as_operator(C).squared_norm() == pytest.approx(9.0 + 9.0)
    assert np.array_equal(C.data, before[0]) and np.array_equal(C.indices, before[1])  # untouched
    check_products(randla.as_operator(D), D.toarray(), 1e-13)


def test_integer_sparse_norm_is_taken_in_float64():
    """Integer data is promoted before squaring: int32 squares of entries
    near 1e5 wrap around."""
    D = np.round(planted(M, N, rng=0).A * 1e6).astype(np.int32)
    exact = float(np.linalg.norm(D.astype(np.float64)))
    assert int(np.abs(D).max()) ** 2 > np.iinfo(np.int32).max
    for A in (sp.csr_array(D), sp.coo_matrix(D), sp.dia_array(D)):
        op = randla.as_operator(A)
        assert op.norm() == pytest.approx(exact, rel=1e-12)
        assert op.squared_norm() == pytest.approx(exact**2, rel=1e-12)
        assert A.dtype == np.int32  # never modified


_NORM_CONTAINERS = {
    "numpy": lambda S: S.toarray(),
    "numpy_F": lambda S: np.asfortranarray(S.toarray()),
    "csr": sp.csr_array,
    "torch": lambda S: torch.as_tensor(S.toarray()),
    "torch_coo": lambda S: torch_sparse(S, "coo"),
    "transposed": lambda S: randla.Transposed(sp.csr_array(S)),
    "centered": lambda S: randla.Centered(sp.csr_array(S), axis=0),
    "dask": lambda S: dask_array(S.toarray()),
}


@pytest.mark.parametrize("scale", [1e-300, 1e-170, 1e160, 1e300])
@pytest.mark.parametrize("container", sorted(_NORM_CONTAINERS))
def test_norm_at_any_scale(container, scale):
    """||A||_F is right where ||A||_F^2 leaves the float64 range (beyond
    ~1e154 or below ~1e-154); the square is then inf or 0."""
    S = sparse_random(M, N, 300, rng=0)
    A = S.toarray()
    explicit = A - A.mean(axis=0) if container == "centered" else A
    exact = float(np.linalg.norm(explicit))
    op = randla.as_operator(_NORM_CONTAINERS[container](S * scale))
    assert op.norm() == pytest.approx(exact * scale, rel=1e-12, abs=0)
    squared = op.squared_norm()
    assert squared == (math.inf if scale > 1 else 0.0)


@pytest.mark.parametrize("scale", [1e-25, 1e25])
@pytest.mark.parametrize("container", ["numpy", "torch", "csr", "torch_coo", "dask"])
def test_float32_norm_at_any_scale(container, scale):
    """float32 squares leave the range beyond ~1e19 and below ~1e-19."""
    S = sp.csr_array(sparse_random(M, N, 300, rng=0) * scale, dtype=np.float32)
    exact = float(np.linalg.norm(S.toarray().astype(np.float64)))
    op = randla.as_operator(_NORM_CONTAINERS[container](S))
    assert op.norm() == pytest.approx(exact, rel=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "complex64", "float16"])
@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_single_precision_norm_is_summed_in_double(library, dtype):
    """A float32 BLAS sum of 2 million squares was off by ~1e-5 relative; the
    squares of single and half precision entries are exact in float64."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((2000, 1000)).astype(dtype)
    if dtype == "complex64":
        A += 1j * rng.standard_normal((2000, 1000)).astype(np.float32)
    exact = float(np.sqrt(np.sum(np.abs(A.astype(np.complex128)) ** 2)))
    op = randla.as_operator(torch.from_numpy(A) if library == "torch" else A)
    assert op.norm() == pytest.approx(exact, rel=1e-13)


@pytest.mark.parametrize(
    "make",
    [
        lambda P: P.astype(np.float16),
        lambda P: torch.from_numpy(P).half(),
        lambda P: torch.from_numpy(P).bfloat16(),
    ],
    ids=["numpy_f16", "torch_f16", "torch_bf16"],
)
def test_half_precision_trace_is_summed_in_float32(make):
    """Half precisions are computed in float32, the trace too: in fp16 this
    sum overflows (65504), in bf16 it keeps 3 digits."""
    X = np.random.default_rng(0).standard_normal((400, 5)) * 10
    A = make(X @ X.T)
    exact = float(np.trace(dense(A).astype(np.float64)))
    assert exact > 65504
    assert randla.as_operator(A).trace() == pytest.approx(exact, rel=1e-6)


@pytest.mark.parametrize("name", ["numpy_c128", "numpy_F", "csr_array", "torch_f64", "torch_coo", "sparse_int", "dask_int"])
def test_adapter_never_copies_or_modifies(name):
    A, _ = ADAPTERS[name]
    before = dense(A).copy()
    op = randla.as_operator(A)
    check_products(op, before, 1e-5)
    op.squared_norm()
    assert np.array_equal(dense(A), before)


@pytest.mark.parametrize(
    "make",
    [
        lambda: planted(1000, 800, rng=0).A,
        lambda: np.asfortranarray(planted(1000, 800, rng=0).A),
        lambda: planted(1000, 800, dtype=np.complex128, rng=0).A.astype(np.complex64),
        lambda: planted(1000, 800, rng=0).A[:, ::2],
        lambda: sparse_random(1000, 800, 200_000, rng=0),
        lambda: sparse_random(1000, 800, 200_000, format="coo", rng=0),
    ],
    ids=["C", "F", "complex64", "strided_view", "csr", "coo"],
)
def test_as_operator_does_not_copy(make):
    """Wrapping allocates nothing of the matrix's size, and a product only
    its output (the matrices here are several MB; a block is a few kB)."""
    import tracemalloc

    A = make()
    X = np.ones((A.shape[1], 2), dtype=A.dtype)
    randla.as_operator(A[:3, :3]).matmat(X[:3])  # first-use imports and caches
    tracemalloc.start()
    try:
        op = randla.as_operator(A)
        op.matmat(X)
        op.rmatmat(np.ones((A.shape[0], 2), dtype=A.dtype))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 200_000, f"{peak} bytes"


def test_results_come_back_in_the_library():
    op = randla.as_operator(torch.as_tensor(planted(M, N, rng=0).A))
    assert isinstance(op.matmat(torch.ones((N, 2), dtype=torch.float64)), torch.Tensor)
    op = randla.as_operator(sp.csr_array(sparse_random(M, N, 100, rng=0)))
    out = op.matmat(np.ones((N, 2)))
    assert type(out) is np.ndarray


def test_operator_returned_as_is():
    op = randla.as_operator(planted(M, N, rng=0).A)
    assert randla.as_operator(op) is op


def test_as_output_dtypes():
    op = randla.as_operator(matrix((M, N), np.int64))
    assert op.as_output(np.ones(3)).dtype == np.float64
    op = randla.as_operator(torch.as_tensor(planted(M, N, rng=0).A).bfloat16())
    assert op.as_output(torch.ones(3)).dtype == torch.bfloat16
    op = randla.as_operator(planted(M, N, rng=0).A.astype(np.float32))
    assert op.as_output(np.ones(3, dtype=np.float32)).dtype == np.float32


def test_repr():
    op = randla.as_operator(planted(M, N, rng=0).A)
    assert "40x30" in repr(op)


# -- composites -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("conjugate", [True, False])
@pytest.mark.parametrize("container", ["numpy", "csr", "torch", "linear_operator", "dask"])
def test_transposed(dtype, conjugate, container):
    A = planted(M, N, dtype=dtype, rng=0).A
    wrap = {
        "numpy": lambda a: a,
        "csr": sp.csr_array,
        "torch": torch.as_tensor,
        "linear_operator": aslinearoperator,
        "dask": dask_array,
    }[container]
    op = randla.Transposed(wrap(A), conjugate=conjugate)
    assert op.shape == (N, M)
    reference = A.conj().T if conjugate else A.T
    check_products(op, reference, 1e-13)
    assert op.squared_norm() == (None if container == "linear_operator" else pytest.approx(np.linalg.norm(A) ** 2))
    # Transposing back gives A again.
    check_products(op.H if conjugate else op.T, A, 1e-13)


def test_h_and_t_properties():
    A = planted(M, N, dtype=np.complex128, rng=0).A
    op = randla.as_operator(A)
    check_products(op.H, A.conj().T, 1e-13)
    check_products(op.T, A.T, 1e-13)
    check_products(op.T.H, A.conj(), 1e-13)
    check_products(op.H.T, A.conj(), 1e-13)
    check_products(op.T.T, A, 1e-13)
    assert op.H.H is op


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("dtype", [np.float32, np.complex128])
def test_sparse_sums_and_centred_norm_in_blocks_of_entries(monkeypatch, fmt, axis, dtype):
    """Blocks of 7 stored entries, cut inside rows, columns and runs of COO."""
    from randla.operators import adapters

    monkeypatch.setattr(adapters, "_SUM_BLOCK", 7)
    S = sparse_random(M, N, 300, rng=0) + (1j * sparse_random(M, N, 300, rng=1) if dtype == np.complex128 else 0)
    S = sp.csr_array(S).astype(dtype).asformat(fmt)
    S.sum_duplicates()
    A = S.toarray().astype(np.complex128)
    op = randla.Centered(S, axis=axis)
    rtol = 1e-6 if dtype == np.float32 else 1e-12  # the mean comes back in the data's precision
    np.testing.assert_allclose(to_np(op.mean).ravel(), A.mean(axis=axis), rtol=rtol)
    assert op.squared_norm() == pytest.approx(np.linalg.norm(A - A.mean(axis=axis, keepdims=True)) ** 2, rel=1e-12)


def test_integers_mapped_from_a_file_are_converted_a_block_at_a_time(tmp_path):
    X = np.random.default_rng(0).integers(0, 256, size=(40_000, 500), dtype=np.uint8)
    np.save(tmp_path / "X.npy", X)
    mapped = np.load(tmp_path / "X.npy", mmap_mode="r")
    op = randla.as_operator(mapped)
    assert op.dtype == np.float64
    V = np.random.default_rng(1).standard_normal((500, 4))
    np.testing.assert_allclose(op.matmat(V), X @ V, rtol=1e-12)
    np.testing.assert_allclose(op.rmatmat(op.matmat(V)), X.T @ (X @ V), rtol=1e-12)
    assert op.norm() == pytest.approx(np.linalg.norm(X.astype(np.float64)), rel=1e-13)
    centered = randla.Centered(mapped)
    assert centered.norm() == pytest.approx(np.linalg.norm(X - X.mean(axis=0)), rel=1e-12)
    tracemalloc.start()
    randla.svd(mapped, 5, power_iters=1, rng=0)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 3 * X.nbytes  # measured 2.3 (blocks of 2^22 entries); a float64 copy is 8 times the file


def test_sparse_centred_norm_copies_no_nonzeros():
    S = sparse_random(4000, 4000, 4_000_000, rng=0)
    size = S.data.nbytes + S.indices.nbytes + S.indptr.nbytes
    tracemalloc.start()
    randla.Centered(S, axis=0).norm()
    randla.Centered(S, axis=1).norm()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 0.5 * size  # measured 0.3; copies of the entries took 3 times the matrix


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("container", ["numpy", "csr", "torch", "torch_coo", "linear_operator", "dask"])
def test_centered(axis, dtype, container):
    S = sparse_random(M, N, 300, rng=0)
    if dtype == np.complex128:
        S = S + 1j * sparse_random(M, N, 300, rng=1)
    A = S.toarray()
    original = in_container(S, container)
    op = randla.Centered(original, axis=axis)
    explicit = A - A.mean(axis=axis, keepdims=True)
    check_products(op, explicit, 1e-13)
    if container == "linear_operator":
        assert op.squared_norm() is None
    else:
        assert op.squared_norm() == pytest.approx(np.linalg.norm(explicit) ** 2, rel=1e-12)
    np.testing.assert_allclose(to_np(op.mean).ravel(), A.mean(axis=axis), atol=1e-15)
    assert np.array_equal(dense(original), A)  # never modified


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("container", ["numpy", "csr", "torch", "torch_csr", "dask"])
def test_centered_norm_of_single_precision_data_far_from_zero(axis, container):
    """||A||^2 - m ||mu||^2 cancels all but 1e-8 of itself at means 10^4 times
    the spread: the means are summed in double, so the norm stays right (a
    float32 product's rounding, about 1e-7 |mu|, would have left nothing)."""
    rng = np.random.default_rng(0)
    spread = rng.standard_normal((M, N)) * (rng.random(N) + 0.5)
    S = sp.csr_array((spread + 1e4).astype(np.float32))
    A = S.toarray().astype(np.float64)
    op = randla.Centered(in_container(S, container), axis=axis)
    explicit = A - A.mean(axis=axis, keepdims=True)
    assert op.norm() == pytest.approx(np.linalg.norm(explicit), rel=1e-5)
    np.testing.assert_allclose(to_np(op.mean).ravel(), A.mean(axis=axis), rtol=1e-7)
    assert to_np(op.mean).dtype == np.float32


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("container", ["numpy", "torch", "csr", "torch_coo", "torch_csr"])
def test_centered_norm_of_data_far_from_zero(axis, container):
    """Means 10^8 times the spread in float64: ||A||^2 - m ||mu||^2 cancels
    to rounding even with exact means, so the entries of A are centred
    before they are squared (sparse containers hold every entry here: an
    implicit zero would itself be a spread as large as the means)."""
    rng = np.random.default_rng(0)
    spread = rng.standard_normal((M, N))
    A = spread + 1e8 * (1 + rng.random(N if axis == 0 else M)).reshape((1, -1) if axis == 0 else (-1, 1))
    op = randla.Centered(in_container(sp.csr_array(A), container), axis=axis)
    assert op.norm() == pytest.approx(np.linalg.norm(A - A.mean(axis=axis, keepdims=True)), rel=1e-12)


@pytest.mark.parametrize("axis", [0, 1])
def test_centered_norm_of_sparse_data_with_duplicates_and_explicit_zeros(axis):
    """Duplicated entries are one entry, centred once; stored zeros are zeros;
    the user's COO matrix keeps its duplicates."""
    rows, cols = np.array([0, 0, 1, 2, 2, 3]), np.array([1, 1, 0, 2, 2, 3])
    data = np.array([1e8, 2.0, 0.0, 3e8, -1e8, 7.0])
    S = sp.coo_array((data, (rows, cols)), shape=(4, 5))
    A = S.toarray()
    op = randla.Centered(S, axis=axis)
    assert op.norm() == pytest.approx(np.linalg.norm(A - A.mean(axis=axis, keepdims=True)), rel=1e-14)
    assert S.nnz == 6 and np.array_equal(S.data, data)


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_centered_norm_of_dask_data_far_from_zero(axis, dtype):
    """Means 10^8 times the spread, in chunks: each chunk's deviations from
    its own mean are merged between chunks (Chan, Golub & LeVeque), in the
    pass that takes the sums, where the difference of squares keeps nothing."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((M, N)).astype(dtype)
    if dtype == np.complex128:
        A += 1j * rng.standard_normal((M, N))
    A += 1e8 * (1 + rng.random(N if axis == 0 else M)).reshape((1, -1) if axis == 0 else (-1, 1))
    op = randla.Centered(dask_array(A), axis=axis)
    assert op.norm() == pytest.approx(np.linalg.norm(A - A.mean(axis=axis, keepdims=True)), rel=1e-8)


def test_sums_are_accumulated_in_double():
    A = np.full((3000, 4), 0.1, dtype=np.float32)
    for container in ["numpy", "csr", "torch", "torch_coo", "dask"]:
        op = randla.as_operator(in_container(sp.csr_array(A), container))
        for axis, count in [(0, 3000), (1, 4)]:
            sums = to_np(op.sums(axis))
            assert sums.dtype == np.float64
            np.testing.assert_allclose(sums, count * np.float64(np.float32(0.1)), rtol=1e-14)
    assert randla.as_operator(aslinearoperator(A)).sums(0) is None


@pytest.mark.parametrize("library", ["numpy", "float32", "dask"])
def test_opposite_infinities_in_a_column_give_the_value_error(library):
    """+Inf and -Inf summed in one block (column 5) or across Dask chunks
    (column 2) give NaN quietly, not a RuntimeWarning; the products then
    refuse A with the ValueError."""
    A = np.ones((M, N))
    A[3, 2], A[30, 2], A[4, 5], A[5, 5] = np.inf, -np.inf, np.inf, -np.inf
    X = {"numpy": A, "float32": A.astype(np.float32), "dask": dask_array(A)}[library]
    sums = to_np(randla.as_operator(X).sums(0))
    assert np.isnan(sums[[2, 5]]).all() and np.isfinite(np.delete(sums, [2, 5])).all()
    with pytest.raises(ValueError, match="NaN or Inf"):
        randla.pca(X, 2, rng=0)


def test_centered_pca_matches_dense():
    """PCA of sparse data without densifying: the SVD of the centred operator."""
    S = sparse_random(200, 60, 2000, rng=0)
    A = S.toarray()
    explicit = A - A.mean(axis=0)
    r = randla.svd(randla.Centered(S, axis=0), 5, rng=0)
    np.testing.assert_allclose(r.S, np.linalg.svd(explicit, compute_uv=False)[:5], rtol=1e-4)
    # The same draws on the explicitly centred matrix: the same answer.
    np.testing.assert_allclose(r.S, randla.svd(explicit, 5, rng=0).S, rtol=1e-10)


def test_centered_bad_axis():
    with pytest.raises(ValueError, match="axis.*2"):
        randla.Centered(planted(M, N, rng=0).A, axis=2)


@pytest.mark.parametrize("shift", [2.5, -1.0, 1 + 2j, np.complex128(1 - 1j)])
@pytest.mark.parametrize("container", ["numpy", "torch", "csr", "dask"])
def test_shifted(shift, container):
    complex_ = isinstance(shift, complex)
    A = planted(N, N, dtype=np.complex128 if complex_ else np.float64, rng=0).A
    wrap = {"numpy": lambda a: a, "torch": torch.as_tensor, "csr": sp.csr_array, "dask": dask_array}[container]
    op = randla.Shifted(wrap(A), shift)
    check_products(op, A + shift * np.eye(N), 1e-13)


@pytest.mark.parametrize("shift", [np.complex64(1j), np.complex128(2 - 1j), 1j])
def test_shifted_complex_shift_of_any_type(shift):
    """NumPy complex scalars are complex shifts too (np.complex64 is no
    subclass of complex): conjugated in the adjoint, and the trace complex."""
    A = planted(N, N, dtype=np.complex128, rng=0).A.astype(np.complex64)
    op = randla.Shifted(A, shift)
    check_products(op, A + shift * np.eye(N), 1e-5)
    assert op.trace() == pytest.approx(np.trace(A.astype(np.complex128)) + complex(shift) * N, rel=1e-6)


@pytest.mark.parametrize("shift", [1j, np.complex64(1 + 1j)])
def test_shifted_real_matrix_complex_shift_transposes(shift):
    """A real A plus a complex shift is a complex operator: its transpose
    keeps the shift, its adjoint conjugates it."""
    A = planted(N, N, rng=0).A
    explicit = A + shift * np.eye(N)
    op = randla.Shifted(A, shift)
    check_products(op.T, explicit.T, 1e-13)
    check_products(op.H, explicit.conj().T, 1e-13)
    check_products(op.T.T, explicit, 1e-13)
    check_products(randla.Centered(op).T, (explicit - explicit.mean(axis=0)).T, 1e-13)
    assert op.trace() == pytest.approx(np.trace(explicit), rel=1e-13)


def test_shifted_needs_square():
    with pytest.raises(ValueError, match=r"square.*\(40, 30\)"):
        randla.Shifted(planted(M, N, rng=0).A, 1.0)


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
@pytest.mark.parametrize("container", ["numpy", "csr", "torch", "linear_operator", "dask"])
@pytest.mark.parametrize("kind", ["plus", "residual"])
def test_plus_low_rank_and_residual(dtype, container, kind):
    A = sparse_random(M, N, 300, rng=0).toarray().astype(dtype)
    if dtype == np.complex128:
        A = A + 1j * sparse_random(M, N, 300, rng=1).toarray()
    L = planted(M, 3, dtype=dtype, rng=1).A
    R = planted(3, N, dtype=dtype, rng=2).A
    wrap = {"numpy": lambda a: a, "csr": sp.csr_array, "torch": torch.as_tensor, "linear_operator": aslinearoperator,
            "dask": dask_array}[container]
    Lw, Rw = (torch.as_tensor(L), torch.as_tensor(R)) if container == "torch" else (L, R)
    if kind == "plus":
        op, explicit = randla.PlusLowRank(wrap(A), Lw, Rw), A + L @ R
    else:
        op, explicit = randla.residual(wrap(A), Lw, Rw), A - L @ R
    check_products(op, explicit, 1e-13)
    if container == "linear_operator":
        assert op.squared_norm() is None
    else:
        assert op.squared_norm() == pytest.approx(np.linalg.norm(explicit) ** 2, rel=1e-12)


@pytest.mark.parametrize("scale", [1e-300, 1e-170, 1e-160, 1e160, 1e170, 1e300])
@pytest.mark.parametrize("container", ["numpy", "csr", "torch"])
def test_plus_low_rank_norm_at_any_scale(container, scale):
    """||A + L R||_F is right where its square leaves the float64 range; the
    squares of A, L R and their cross term used to overflow to NaN or
    underflow to 0 (or lose digits in subnormals)."""
    A = sparse_random(M, N, 300, rng=0).toarray()
    L, R = planted(M, 3, rng=1).A, planted(3, N, rng=2).A
    wrap = {"numpy": lambda a: a, "csr": sp.csr_array, "torch": torch.as_tensor}[container]
    Lw = torch.as_tensor(L * scale) if container == "torch" else L * scale
    Rw = torch.as_tensor(R) if container == "torch" else R
    exact = float(np.linalg.norm(A + L @ R))
    # abs=0: pytest.approx would otherwise take anything below 1e-12 as equal.
    assert randla.PlusLowRank(wrap(A * scale), Lw, Rw).norm() == pytest.approx(exact * scale, rel=1e-12, abs=0)
    exact = float(np.linalg.norm(A - L @ R))
    assert randla.residual(wrap(A * scale), Lw, Rw).norm() == pytest.approx(exact * scale, rel=1e-12, abs=0)


def test_plus_low_rank_norm_of_zero_parts():
    A = planted(M, N, rng=0).A
    L, R = planted(M, 3, rng=1).A, planted(3, N, rng=2).A
    assert randla.PlusLowRank(A, 0 * L, R).norm() == pytest.approx(np.linalg.norm(A), rel=1e-14)
    assert randla.PlusLowRank(0 * A, L, R).norm() == pytest.approx(np.linalg.norm(L @ R), rel=1e-13)
    assert randla.PlusLowRank(0 * A, L, 0 * R).norm() == 0.0
    empty = randla.residual(A, L[:, :0], R[:0])  # rank 0
    assert empty.norm() == pytest.approx(np.linalg.norm(A), rel=1e-14)


def test_residual_of_exact_factorisation_is_zero():
    A = randla.testing.low_rank(50, 40, 5, rng=0)
    r = randla.svd(A, 5, rng=0)
    op = randla.residual(A, *r.factors())
    # Only rounding is left, far below what ||A||^2 + 2 Re tr(R A^H L) + ||LR||^2 resolves: no value.
    assert op.squared_norm() is None
    assert np.linalg.norm(op.matmat(np.eye(40))) <= 1e-13 * np.linalg.norm(A)


def test_plus_low_rank_shape_errors():
    A = planted(M, N, rng=0).A
    with pytest.raises(ValueError, match=r"\(40, k\).*\(k, 30\)"):
        randla.PlusLowRank(A, planted(M + 1, 3, rng=0).A, planted(3, N, rng=0).A)
    with pytest.raises(ValueError, match="PlusLowRank"):
        randla.PlusLowRank(A, planted(M, 3, rng=0).A, planted(2, N, rng=0).A)


def test_composites_nest():
    S = sparse_random(M, N, 300, rng=0)
    A = S.toarray()
    L, R = planted(M, 2, rng=1).A, planted(2, N, rng=2).A
    op = randla.Transposed(randla.residual(randla.Centered(S, axis=0), L, R))
    explicit = (A - A.mean(axis=0) - L @ R).T
    check_products(op, explicit, 1e-13)
    assert op.squared_norm() == pytest.approx(np.linalg.norm(explicit) ** 2, rel=1e-12)


def test_user_operator_subclass():
    """A user's own Operator (products only) works with every decomposition."""
    A = randla.testing.psd(50, decay="exponential", rng=0)

    class Implicit(Operator):
        def __init__(self):
            import array_api_compat.numpy as xp

            self.shape, self.dtype, self.input_dtype, self.xp = (50, 50), xp.float64, xp.float64, xp

        def matmat(self, X):
            return A @ X

        def rmatmat(self, Y):
            return A.T @ Y

    op = Implicit()
    np.testing.assert_allclose(randla.svd(op, 3, rng=0).S, np.linalg.svd(A, compute_uv=False)[:3], rtol=1e-10)
    np.testing.assert_allclose(randla.eigh(op, 3, rng=0).w, np.linalg.eigvalsh(A)[::-1][:3], rtol=1e-10)
    r = randla.qb(op, tol=0.1, rng=0)
    assert r.error_estimate == pytest.approx(np.linalg.norm(A - r.reconstruct()) / np.linalg.norm(A), rel=0.2)


def test_base_operator_is_abstract():
    with pytest.raises(TypeError, match="matmat, rmatmat"):
        Operator()

    class Minimal(Operator):
        shape = (2, 2)

        def matmat(self, X):
            return X

        def rmatmat(self, Y):
            return Y

    assert Minimal().squared_norm() is None


# -- bad input --------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, match",
    [
        ([[1.0, 2.0], [3.0, 4.0]], "got list"),
        ("abc", "got str"),
        (None, "got NoneType"),
        (3.0, "got float"),
        ({"a": 1}, "got dict"),
        (np.array([[object(), 1]], dtype=object), "dtype object"),
        (np.array([["a", "b"]]), "dtype <U1"),
    ],
    ids=["list", "str", "None", "float", "dict", "object_array", "str_array"],
)
def test_non_matrix_type_error(bad, match):
    with pytest.raises(TypeError, match=match):
        randla.as_operator(bad)


def test_torch_bool_is_promoted_as_numpy_bool():
    """Binary matrices are numbers in every library: float64, as NumPy's bool and integers."""
    B = planted(M, N, rng=0).A > 0
    s = np.linalg.svd(B.astype(np.float64), compute_uv=False)
    centred = np.linalg.svd(B - B.mean(axis=0), compute_uv=False)
    for run, exact in ((randla.svd, s), (randla.pca, centred)):
        ours, numpy_bool = run(torch.as_tensor(B), 5, power_iters=6, rng=0), run(B, 5, power_iters=6, rng=0)
        assert ours.S.dtype == torch.float64 and ours.Vh.dtype == torch.float64
        np.testing.assert_allclose(ours.S.numpy(), exact[:5], rtol=1e-4)
        np.testing.assert_allclose(ours.S.numpy(), numpy_bool.S, rtol=1e-12)
    assert randla.as_operator(torch.as_tensor(B)).dtype == torch.float64


def _hybrid(A, rows):
    """A's given rows, stored dense under a sparse row index (sparse_dim 1, dense_dim 1),
    as the gradient of ``nn.Embedding(sparse=True)``; uncoalesced, the first row split in two."""
    rows = torch.as_tensor(rows)
    values = torch.as_tensor(A)[rows]
    index = torch.cat([rows[:1], rows])[None, :]
    values = torch.cat([values[:1] / 2, torch.cat([values[:1] / 2, values[1:]])])
    return torch.sparse_coo_tensor(index, values, A.shape, check_invariants=True)


@pytest.mark.parametrize("coalesced", [False, True])
def test_hybrid_torch_sparse_coo_is_decomposed_as_its_dense_matrix(coalesced):
    """torch's products refuse a hybrid COO tensor; its stored entries are indexed one by one
    instead, never the whole matrix densified, and the input left as it was."""
    A = planted(M, N, "exponential", rate=0.8, rng=0).A
    G = _hybrid(A, np.arange(0, M, 2))
    G = G.coalesce() if coalesced else G
    assert G.dense_dim() == 1 and G.is_coalesced() == coalesced
    indices, values = G._indices().clone(), G._values().clone()
    dense = G.to_dense().numpy()
    s = np.linalg.svd(dense, compute_uv=False)
    r = randla.svd(G, 5, rng=0)
    np.testing.assert_allclose(r.S.numpy(), s[:5], rtol=1e-10)
    assert np.linalg.norm(dense - r.reconstruct().numpy(), 2) <= 1.01 * s[5]
    p = randla.pca(G, 5, rng=0)
    centred = np.linalg.svd(dense - dense.mean(axis=0), compute_uv=False)
    np.testing.assert_allclose(p.S.numpy(), centred[:5], rtol=1e-10)
    np.testing.assert_allclose(p.mean.numpy(), dense.mean(axis=0), rtol=1e-13)
    assert p.centered_norm == pytest.approx(np.sqrt(np.sum(centred**2)), rel=1e-13)
    assert torch.equal(G._indices(), indices) and torch.equal(G._values(), values)
    op = randla.as_operator(G)
    assert op._A.dense_dim() == 0 and op._A._nnz() == values.numel()  # the stored entries, not m x n


def test_hybrid_torch_sparse_without_sparse_dimensions_and_sparse_embedding_gradients():
    """The other hybrids of a matrix: all dimensions dense (sparse_dim 0), and a real
    sparse embedding's gradient, at full rank, where the randomized SVD is exact."""
    A = planted(20, 12, rng=0).A
    whole = torch.sparse_coo_tensor(torch.zeros((0, 2), dtype=torch.int64), torch.as_tensor(np.stack([A, A])),
                                    A.shape, check_invariants=True)  # two parts, summed: 2 A
    assert whole.sparse_dim() == 0 and whole.dense_dim() == 2
    np.testing.assert_allclose(randla.svd(whole, 12, rng=0).S.numpy(), np.linalg.svd(2 * A, compute_uv=False),
                               rtol=1e-12)
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(100, 16, sparse=True)
    embedding(torch.randint(0, 100, (8, 5))).pow(2).sum().backward()
    G = embedding.weight.grad
    dense = G.to_dense().double().numpy()
    np.testing.assert_allclose(randla.svd(G, 16, rng=0).S.double().numpy(),
                               np.linalg.svd(dense, compute_uv=False), rtol=1e-4, atol=1e-5 * np.abs(dense).max())
    np.testing.assert_allclose(randla.pca(G, 16, rng=0).S.double().numpy(),
                               np.linalg.svd(dense - dense.mean(axis=0), compute_uv=False), rtol=1e-4,
                               atol=1e-5 * np.abs(dense).max())


@pytest.mark.filterwarnings("ignore:Sparse BSR tensor support is in beta")
@pytest.mark.parametrize("layout", ["bsr", "bsc"])
def test_torch_blocked_sparse_on_cpu_gets_a_clear_error(layout):
    """torch has no CPU products with BSR/BSC tensors; its own error came from deep inside."""
    A = torch.as_tensor(planted(M, N, rng=0).A)
    blocked = A.to_sparse_bsr((2, 2)) if layout == "bsr" else A.to_sparse_bsc((2, 2))
    with pytest.raises(TypeError, match="to_sparse_csr"):
        randla.svd(blocked, 3, rng=0)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros(5), r"2-D.*1 dimensions.*\(5,\)"),
        (np.zeros((2, 3, 4)), r"2-D.*3 dimensions"),
        (np.float64(3.0).reshape(()), r"2-D.*0 dimensions"),
        (torch.zeros(5), r"2-D.*1 dimensions"),
        (torch.zeros((2, 2, 2)), r"2-D.*3 dimensions"),
        (sp.coo_array(np.ones(5)), r"2-D.*1 dimensions"),
    ],
    ids=["numpy_1d", "numpy_3d", "numpy_0d", "torch_1d", "torch_3d", "sparse_1d"],
)
def test_wrong_dimensions_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        randla.as_operator(bad)


@pytest.mark.parametrize(
    "empty",
    [np.zeros((0, 3)), np.zeros((3, 0)), np.zeros((0, 0)), sp.csr_array((0, 4)), torch.zeros((4, 0)),
     aslinearoperator(np.zeros((0, 2)))],
    ids=["rows", "cols", "both", "sparse", "torch", "linear_operator"],
)
def test_empty_matrix(empty):
    with pytest.raises(ValueError, match="at least one row and one column"):
        randla.as_operator(empty)


# -- properties -------------------------------------------------------------------


@given(
    st.integers(1, 30),
    st.integers(1, 30),
    st.sampled_from([np.float32, np.float64, np.complex128]),
    st.sampled_from(["numpy", "csr", "torch", "linear_operator", "centered", "transposed"]),
    st.integers(0, 2**32 - 1),
)
def test_products_hypothesis(m, n, dtype, container, seed):
    A = matrix((m, n), dtype, rng=seed)
    make = {
        "numpy": lambda: A,
        "csr": lambda: sp.csr_array(A),
        "torch": lambda: torch.as_tensor(A),
        "linear_operator": lambda: aslinearoperator(A),
        "centered": lambda: randla.Centered(A, axis=seed % 2),
        "transposed": lambda: randla.Transposed(A, conjugate=bool(seed % 2)),
    }
    op = randla.as_operator(make[container]())
    if container == "centered":
        reference = A - A.mean(axis=seed % 2, keepdims=True)
    elif container == "transposed":
        reference = A.conj().T if seed % 2 else A.T
    else:
        reference = A
    eps = np.finfo(dtype).eps
    X = planted(op.shape[1], 3, dtype=np.complex128 if dtype == np.complex128 else np.float64, rng=seed).A.astype(dtype)
    Y = planted(op.shape[0], 3, dtype=np.complex128 if dtype == np.complex128 else np.float64, rng=seed + 1).A.astype(dtype)
    if container == "torch":
        X, Y = torch.as_tensor(X), torch.as_tensor(Y)
    scale = np.linalg.norm(reference, 2) + 1e-300
    np.testing.assert_allclose(to_np(op.matmat(X)), reference @ to_np(X), atol=100 * eps * scale)
    np.testing.assert_allclose(to_np(op.rmatmat(Y)), reference.conj().T @ to_np(Y), atol=100 * eps * scale)


@pytest.mark.parametrize(("dtype", "work"), [(">f4", np.float32), (">f8", np.float64), (">c8", np.complex64),
                                             (">c16", np.complex128), (np.longdouble, np.float64),
                                             (np.clongdouble, np.complex128)])
def test_non_native_dtypes_keep_their_precision(dtype, work):
    # Byte-swapped arrays (np.load of a big-endian file) are not np.float64 & co.;
    # long doubles, which LAPACK cannot take, are computed in double.
    A = matrix((M, N), np.complex128 if np.dtype(dtype).kind == "c" else np.float64).astype(dtype)
    op = randla.as_operator(A)
    assert op.dtype == work
    X = np.ones((A.shape[1], 2), dtype=work)
    np.testing.assert_allclose(op.matmat(X), A.astype(work) @ X, rtol=10 * np.finfo(work).eps * A.shape[1])


def test_masked_array_refused():
    # Its mask would be dropped silently: the masked entries would count as data.
    A = np.ma.masked_array(np.ones((5, 4)), mask=np.eye(5, 4, dtype=bool))
    with pytest.raises(TypeError, match="masked array"):
        randla.as_operator(A)
    with pytest.raises(TypeError, match="masked array"):
        randla.svd(A, 2)


# -- Dask ------------------------------------------------------------------------


def counting_dask_array(A, chunks):
    """A Dask array over A that counts how often each chunk is read."""
    reads = collections.Counter()
    lock = threading.Lock()

    def load(block, block_info=None):
        with lock:
            reads[tuple(block_info[0]["chunk-location"])] += 1
        return block

    return da.from_array(A, chunks=chunks).map_blocks(load, dtype=A.dtype), reads


@pytest.mark.parametrize("power_iters", [0, 1, 3])
def test_dask_each_product_is_one_pass(power_iters):
    """svd with q power iterations reads every chunk 2q + 2 times: once per
    product, and never all of A at once into one array."""
    A = planted(200, 150, "polynomial", rate=0.5, rng=0).A
    D, reads = counting_dask_array(A, (50, 60))
    r = randla.svd(D, 10, power_iters=power_iters, rng=0)
    assert len(reads) == 4 * 3 and set(reads.values()) == {2 * power_iters + 2}
    bound = 1.1 if power_iters else 2.0
    assert spectral_error_ratio(A, r, 10) <= bound


def test_dask_norm_is_one_pass():
    A = planted(200, 150, rng=0).A
    D, reads = counting_dask_array(A, (50, 60))
    assert randla.as_operator(D).norm() == pytest.approx(np.linalg.norm(A), rel=1e-13)
    assert set(reads.values()) == {1}


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_dask_factors_are_dask_arrays_chunked_like_a(dtype):
    A = planted(200, 150, "polynomial", rate=0.5, dtype=dtype, rng=0).A
    D = da.from_array(A, chunks=(70, 40))
    r = randla.svd(D, 10, rng=0)
    assert all(isinstance(x, da.Array) for x in r)
    assert r.U.dtype == r.Vh.dtype == dtype and r.S.dtype == np.finfo(dtype).dtype
    assert r.U.chunks == (D.chunks[0], (10,)) and r.Vh.chunks == ((10,), D.chunks[1])
    assert spectral_error_ratio(A, r, 10) <= 1.1
    # The same draws as for the NumPy array itself.
    np.testing.assert_allclose(to_np(r.S), randla.svd(A, 10, rng=0).S, rtol=100 * np.finfo(dtype).eps)


def test_dask_error_estimates_take_dask_factors():
    A = planted(200, 150, "polynomial", rate=0.5, rng=0).A
    D = dask_array(A)
    r = randla.svd(D, 10, rng=0)
    true = np.linalg.norm(A - to_np(r.reconstruct()), 2)
    assert 0.97 * true <= randla.estimate_error(D, r, rng=0) <= true * (1 + 1e-12)
    Q = randla.qb(D, 10, rng=0).Q
    assert randla.posterior_error_bound(D, Q, rng=0) >= np.linalg.norm(A - to_np(Q) @ (to_np(Q).T @ A), 2)


def test_dask_other_schedulers():
    """The products run wherever Dask runs them; the synchronous scheduler
    gives the same answer as the threaded one."""
    A = planted(120, 90, "polynomial", rate=0.5, rng=0).A
    D = dask_array(A)
    threaded = randla.svd(D, 5, rng=0)
    with dask.config.set(scheduler="synchronous"):
        synchronous = randla.svd(D, 5, rng=0)
    np.testing.assert_allclose(to_np(synchronous.S), to_np(threaded.S), rtol=1e-13)


def test_dask_bad_input_gets_clear_errors():
    A = planted(60, 40, rng=0).A
    D = dask_array(A)
    with pytest.raises(ValueError, match="compute_chunk_sizes"):
        randla.svd(D[D[:, 0] > 0], 5, rng=0)  # boolean indexing leaves the row count unknown
    with pytest.raises(TypeError, match="NumPy chunks"):
        randla.svd(D.map_blocks(sp.csr_matrix), 5, rng=0)
    with pytest.raises(ValueError, match="NaN or Inf"):
        randla.svd(dask_array(np.where(A == A.max(), np.nan, A)), 5, rng=0)
    with pytest.raises(ValueError, match="2-D"):
        randla.svd(da.ones((3, 4, 5)), 2)


def test_dask_products_with_complex_blocks_stay_complex():
    """A real Dask A meets complex blocks under a complex shift: its products
    are complex, as NumPy's are, not cast to A's real dtype."""
    S = planted(40, 40, "polynomial", rate=0.5, rng=0).A
    S = S @ S.T
    X = planted(40, 3, dtype=np.complex128, rng=1).A
    op = randla.as_operator(dask_array(S))
    np.testing.assert_allclose(op.matmat(X), S @ X, rtol=1e-13)
    np.testing.assert_allclose(op.rmatmat(X), S.T @ X, rtol=1e-13)
    shifted = randla.svd(randla.Shifted(dask_array(S), 5j), 4, rng=0)
    np.testing.assert_allclose(to_np(shifted.S), randla.svd(randla.Shifted(S, 5j), 4, rng=0).S, rtol=1e-12)


def test_dask_masked_and_matrix_chunks_are_refused():
    """np.ma and np.matrix chunks pass for NumPy chunks by isinstance, then
    fail inside Dask's products; both get a TypeError that names the fix."""
    A = planted(30, 20, rng=0).A
    D = dask_array(A)
    with pytest.raises(TypeError, match=r"masked chunks.*ma\.filled"):
        randla.svd(da.ma.masked_array(D, mask=D > 1), 2, rng=0)
    with pytest.warns(PendingDeprecationWarning):  # numpy's, on building the matrix
        chunks_of_matrices = da.from_array(np.asmatrix(A), chunks=(10, 10))
    with pytest.raises(TypeError, match=r"matrix chunks.*map_blocks\(numpy.asarray\)"):
        randla.svd(chunks_of_matrices, 2, rng=0)
    r = randla.svd(chunks_of_matrices.map_blocks(np.asarray), 2, rng=0)
    np.testing.assert_allclose(to_np(r.S), randla.svd(A, 2, rng=0).S, rtol=1e-13)


def test_dask_factors_enter_residuals_and_checks():
    """The factors of a Dask result are Dask arrays: the residual operator
    and the a posteriori checks take them, with A as Dask or in memory."""
    A = planted(60, 40, "polynomial", rate=0.5, rng=0).A
    D = dask_array(A)
    r, expected = randla.svd(D, 5, rng=0), randla.svd(A, 5, rng=0)
    L, R = to_np(r.factors()[0]), to_np(r.Vh)
    for base in (D, A):
        res = randla.residual(base, *r.factors())
        np.testing.assert_allclose(res.matmat(np.eye(40)), A - L @ R, atol=1e-12)
        assert res.norm() == pytest.approx(np.linalg.norm(A - L @ R), rel=1e-10)
        assert randla.estimate_error(base, r, rng=0) == pytest.approx(randla.estimate_error(A, expected, rng=0), rel=1e-10)
    Q = randla.qb(D, 5, rng=0).Q
    bound = randla.posterior_error_bound(A, to_np(Q), rng=0)
    assert randla.posterior_error_bound(A, Q, rng=0) == pytest.approx(bound, rel=1e-12)


def test_dask_norm_tasks_do_not_carry_a():
    """The per-chunk tasks of norm() hold one chunk, not the operator: the
    processes and distributed schedulers pickle every task, and a closure
    over the operator carried all of A (from_array) with each."""
    A = planted(400, 300, rng=0).A
    D = da.from_array(A, chunks=(100, 100))
    sizes = []

    def measuring_get(graph, keys, **kwargs):
        tasks = graph.__dask_graph__() if hasattr(graph, "__dask_graph__") else graph
        sizes.extend(len(cloudpickle.dumps(task)) for task in tasks.values())
        return dask.get(graph, keys, **kwargs)

    with dask.config.set(scheduler=measuring_get):
        assert randla.as_operator(D).norm() == pytest.approx(np.linalg.norm(A), rel=1e-13)
    # At most one task as large as A: the source of from_array, where Dask keeps it whole.
    assert sum(size >= A.nbytes for size in sizes) <= 1


def test_linear_operator_products_with_complex_blocks_stay_complex():
    """A complex shift of a real LinearOperator has complex products; they
    were cast to the operator's real dtype, and sigma_1 came out wrong."""
    A = planted(N, N, rng=0).A
    explicit = A + 5j * np.eye(N)
    op = randla.Shifted(aslinearoperator(A), 5j)
    check_products(op, explicit, 1e-13)
    # The same draws as for the NumPy array: the same answer.
    np.testing.assert_allclose(randla.svd(op, 3, rng=0).S, randla.svd(randla.Shifted(A, 5j), 3, rng=0).S, rtol=1e-12)


@pytest.mark.parametrize("container", ["numpy", "torch"])
def test_plus_low_rank_refuses_complex_factors_on_a_real_matrix(container):
    """A + L R was computed in A's real dtype, dropping L R's imaginary part."""
    A = planted(M, N, rng=0).A
    L = planted(M, 2, dtype=np.complex128, rng=1).A
    R = planted(2, N, dtype=np.complex128, rng=2).A
    if container == "torch":
        A, L, R = torch.as_tensor(A), torch.as_tensor(L), torch.as_tensor(R)
    with pytest.raises(TypeError, match="imaginary parts"):
        randla.PlusLowRank(A, L, R)
    with pytest.raises(TypeError, match="imaginary parts"):
        randla.residual(A, L, R)


def test_linear_operator_without_adjoint_gets_a_clear_error():
    """LinearOperator(shape, matvec) and a subclass with _matvec alone have no
    A^H; the products with it say so, not SciPy's 'NoneType' is not callable.
    eigh and nystrom need none but the check, and take A as Hermitian, as eigsh does."""
    A = planted(80, 50, rng=0).A
    S = A.T @ A

    class MatvecOnly(LinearOperator):
        def __init__(self, M):
            super().__init__(M.dtype, M.shape)
            self.M = M

        def _matvec(self, x):
            return self.M @ x

    for L in (LinearOperator(A.shape, matvec=lambda x: A @ x, dtype=A.dtype), MatvecOnly(A)):
        with pytest.raises(TypeError, match="without products with its adjoint.*rmatvec="):
            randla.svd(L, 3, rng=0)
    for L in (LinearOperator(S.shape, matvec=lambda x: S @ x, dtype=S.dtype), MatvecOnly(S)):
        w, _ = randla.eigh(L, 3, rng=0)
        np.testing.assert_allclose(w, np.linalg.eigvalsh(S)[::-1][:3], rtol=1e-8)
        assert randla.nystrom(L, 3, rng=0).S.shape == (3,)


def test_composite_arguments_get_clear_errors():
    A = planted(60, 40, rng=0).A
    L, R = randla.svd(A, 5, rng=0).factors()
    with pytest.raises(TypeError, match="L must be an array of A's library \\(numpy\\); got torch.Tensor"):
        randla.residual(A, torch.as_tensor(L), torch.as_tensor(R))
    with pytest.raises(TypeError, match="L must be an array of A's library \\(torch\\)"):
        randla.residual(torch.as_tensor(A), L, R)
    with pytest.raises(TypeError, match="got builtins.list"):
        randla.PlusLowRank(A, L.tolist(), R)
    with pytest.raises(ValueError, match="L must be 2-D; got shape \\(60,\\)"):
        randla.PlusLowRank(A, np.ones(60), np.ones(40))
    with pytest.raises(TypeError, match="shift must be a real or complex number; got 'abc'"):
        randla.Shifted(A[:40], "abc")
    with pytest.raises(ValueError, match="shift must be finite"):
        randla.Shifted(A[:40], np.nan)
    before = L.copy()
    op = randla.residual(A, L, R)
    np.testing.assert_allclose(op.matmat(np.eye(40)), A - L @ R, atol=1e-12)
    assert np.array_equal(L, before)  # never modified


def test_error_helpers_check_their_arguments():
    A = planted(60, 40, rng=0).A
    r = randla.svd(A, 5, rng=0)
    with pytest.raises(TypeError, match="approx must be a randla result.*got ndarray.*randla.spectral_norm"):
        randla.estimate_error(A, r.reconstruct())
    # The route it names, for a general B: exact to rounding.
    from scipy.sparse.linalg import aslinearoperator

    B = r.reconstruct()
    norm = randla.spectral_norm(aslinearoperator(A) - aslinearoperator(B), rng=0)
    assert norm.estimate == pytest.approx(np.linalg.norm(A - B, 2), rel=1e-8)
    q = randla.qb(A, 5, rng=0)
    assert randla.posterior_error_bound(A, q, rng=0) == randla.posterior_error_bound(A, q.Q, rng=0)
    with pytest.raises(ValueError, match="Q must have A's 60 rows"):
        randla.posterior_error_bound(A, q.Q.T)
    with pytest.raises(TypeError, match="Q must be an array of A's library"):
        randla.posterior_error_bound(A, q.Q.tolist())


def test_half_precision_is_converted_a_block_at_a_time():
    """Products of a float16 A convert a block of rows at a time: no float32
    copy of the whole A (twice its size) per product."""
    A = np.random.default_rng(0).standard_normal((6000, 3000), dtype=np.float32).astype(np.float16)
    op = randla.as_operator(A)
    X, Y = np.ones((3000, 8), np.float32), np.ones((6000, 8), np.float32)
    tracemalloc.start()
    AX, AtY, norm = op.matmat(X), op.rmatmat(Y), op.norm()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < A.nbytes  # the whole float32 copy would be 2 A.nbytes
    A32 = A.astype(np.float32)
    np.testing.assert_allclose(AX, A32 @ X, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(AtY, A32.T @ Y, rtol=1e-5, atol=1e-3)
    assert norm == pytest.approx(np.linalg.norm(A.astype(np.float64)), rel=1e-12)


def _rank_10_plus_noise(noise, dtype, seed=0):
    """A rank-10 matrix plus noise, its rank-10 truncation from LAPACK, and ||A - L R||_F in double."""
    rng = np.random.default_rng(seed)
    A = (rng.standard_normal((300, 10)) @ rng.standard_normal((10, 200)) + noise * rng.standard_normal((300, 200)))
    A = A.astype(dtype)
    U, s, Vh = np.linalg.svd(A.astype(np.float64), full_matrices=False)
    L, R = (U[:, :10] * s[:10]).astype(dtype), Vh[:10].astype(dtype)
    return A, L, R, float(np.linalg.norm(A.astype(np.float64) - L.astype(np.float64) @ R.astype(np.float64)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_residual_norm_is_accurate_or_none(dtype):
    """||A||^2 + 2 Re tr(R A^H L) + ||LR||^2 cancels for a small residual: its value was 24% too
    large in float32 (residual 3e-4 ||A||_F) and 0.0 in float64 (3e-9 ||A||_F). A value returned
    is within sqrt(eps) of the exact norm; None where cancellation would spoil it."""
    eps = float(np.finfo(dtype).eps)
    for noise in (3.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-5, 1e-8, 1e-10):
        A, L, R, exact = _rank_10_plus_noise(noise, dtype)
        got = randla.residual(A, L, R).norm()
        assert got is None or abs(got - exact) <= math.sqrt(eps) * exact, (noise, got, exact)
        if noise <= (1e-3 if dtype == np.float32 else 1e-8):  # the finding's cases
            assert got is None
    # Where the terms do not cancel, the value is kept: a residual of a third of ||A||_F in
    # float64, and A + L R with independent L and R in float32.
    A, L, R, exact = _rank_10_plus_noise(1.0, np.float64)
    assert randla.residual(A, L, R).norm() == pytest.approx(exact, rel=1e-12)
    A, L, R = (planted(*shape, dtype=dtype, rng=seed).A for shape, seed in (((300, 200), 0), ((300, 10), 1),
                                                                           ((10, 200), 2)))
    exact = np.linalg.norm(A.astype(np.float64) + L.astype(np.float64) @ R.astype(np.float64))
    assert randla.PlusLowRank(A, L, R).norm() == pytest.approx(exact, rel=10 * eps)


@pytest.mark.parametrize("container", ["numpy", "csr", "torch"])
def test_centered_transpose_takes_the_exact_means_and_norm(container):
    """Transposed forwards sums and centered_norm: Centered(op.T) took the difference of
    squares, 23% off for float32 data with an offset of 1e4, and svd(tol=0.3) returned all
    100 columns with converged=False where rank 5 meets it."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 5)) @ rng.standard_normal((5, 100)) + 0.1 * rng.standard_normal((500, 100))
    A = (X + 1e4).astype(np.float32)
    E = A.astype(np.float64) - A.astype(np.float64).mean(axis=0)
    wrap = {"numpy": lambda a: a, "csr": sp.csr_array, "torch": torch.as_tensor}[container]
    op = randla.Centered(randla.as_operator(wrap(A.T)).T, axis=0)
    assert op.norm() == pytest.approx(np.linalg.norm(E), rel=1e-12)
    r = randla.svd(op, tol=0.3, rng=0)
    true = np.linalg.norm(E - to_np(r.reconstruct()).astype(np.float64)) / np.linalg.norm(E)
    assert r.rank == 5 and r.converged
    assert true <= 0.3 and r.error_estimate == pytest.approx(true, rel=1e-2)


@pytest.mark.parametrize("conjugate", [True, False])
@pytest.mark.parametrize("container", ["numpy", "csr", "torch"])
def test_transposed_sums_and_centered_norm_of_complex_input(container, conjugate):
    rng = np.random.default_rng(1)
    B = rng.standard_normal((40, 30)) + 1j * rng.standard_normal((40, 30)) + (3 - 2j)
    explicit = B.conj().T if conjugate else B.T
    wrap = {"numpy": lambda a: a, "csr": sp.csr_array, "torch": torch.as_tensor}[container]
    op = randla.Transposed(wrap(B), conjugate=conjugate)
    for axis in (0, 1):
        np.testing.assert_allclose(to_np(op.sums(axis)), explicit.sum(axis=axis), rtol=1e-13)
        mean = explicit.mean(axis=axis)
        centred = explicit - (mean[None, :] if axis == 0 else mean[:, None])
        as_mean = torch.as_tensor(mean) if container == "torch" else mean
        assert op.centered_norm(as_mean, axis) == pytest.approx(np.linalg.norm(centred), rel=1e-13)
        c = randla.Centered(op, axis=axis)
        assert c.norm() == pytest.approx(np.linalg.norm(centred), rel=1e-13)
        np.testing.assert_allclose(dense(c), centred, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["dense", "coo", "csr"])
def test_real_torch_matrix_takes_complex_blocks(layout, dtype):
    """A real torch matrix times a complex block (a complex shift makes them) as NumPy's
    product; torch refused the mixed dtypes."""
    S = sparse_random(40, 40, 600, rng=0)
    A = {"dense": lambda: torch.as_tensor(S.toarray()), "coo": lambda: torch_sparse(S, "coo"),
         "csr": lambda: torch_sparse(S, "csr")}[layout]().to(dtype)
    complex_ = torch.complex128 if dtype == torch.float64 else torch.complex64
    X = torch.as_tensor(planted(40, 3, dtype=np.complex128, rng=1).A).to(complex_)
    op, explicit = randla.as_operator(A), S.toarray()
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    AX, AhX = op.matmat(X), op.rmatmat(X)
    assert AX.dtype == AhX.dtype == complex_
    np.testing.assert_allclose(to_np(AX), explicit @ to_np(X), rtol=tol, atol=tol)
    np.testing.assert_allclose(to_np(AhX), explicit.T @ to_np(X), rtol=tol, atol=tol)
    shifted = randla.Shifted(A, 1j)
    np.testing.assert_allclose(to_np(shifted.rmatmat(X)), (explicit.T - 1j * np.eye(40)) @ to_np(X), rtol=tol, atol=tol)
    # A sketch of all 40 columns: the exact singular values of S + iI.
    s = np.linalg.svd(explicit + 1j * np.eye(40), compute_uv=False)
    np.testing.assert_allclose(to_np(randla.svd(shifted, 30, rng=0).S), s[:30], rtol=100 * tol)


@pytest.mark.parametrize("layout", ["coo", "coo_uncoalesced", "csr", "csc"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.complex128])
def test_torch_sparse_trace_is_read_from_the_diagonal(layout, dtype):
    """The sum of the stored diagonal entries, duplicates summed, in double: as
    cheap as SciPy's, where it was None (a Girard-Hutchinson estimate in nystrom)."""
    S = sparse_random(M, M, 300, rng=0).toarray() + np.diag(np.arange(1.0, M + 1))
    if dtype == torch.complex128:
        S = S + 1j * sparse_random(M, M, 300, rng=1).toarray()
    # Entries whose sum overflows the half and single precisions.
    S[0, 0] = S[1, 1] = 6e4 if dtype == torch.float16 else (3e38 if dtype == torch.float32 else 1.0)

    def sparse(D):
        D = torch.as_tensor(D).to(dtype)
        if layout == "coo_uncoalesced":  # (2, 2) split in two parts, stored apart
            coo = D.to_sparse_coo()
            indices = torch.cat([coo.indices(), torch.tensor([[2], [2]])], dim=1)
            values = torch.cat([coo.values(), torch.tensor([1.5]).to(dtype)])
            A = torch.sparse_coo_tensor(indices, values, D.shape, check_invariants=True)
            assert not A.is_coalesced()
            return A
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            return {"coo": D.to_sparse_coo, "csr": D.to_sparse_csr, "csc": D.to_sparse_csc}[layout]()

    A = sparse(S)
    entries = to_np(torch.as_tensor(S).to(dtype)).astype(np.complex128)
    exact = complex(np.trace(entries)) + (1.5 if layout == "coo_uncoalesced" else 0.0)
    assert randla.as_operator(A).trace() == pytest.approx(exact, rel=1e-15)
    assert randla.as_operator(sparse(S[:, 1:])).trace() is None


# -- a real matrix plus a complex shift; complex traces; meta tensors (fix brief 3) --------------------


def _shifted_low_rank(shift, library="numpy", n=60):
    """Shifted(A, shift) of a rank-8 real A, and the explicit complex matrix A + shift I."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((n, 8)) @ rng.standard_normal((8, n))
    base = torch.from_numpy(A) if library == "torch" else A
    return randla.Shifted(base, shift), A + complex(shift) * np.eye(n)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shifted_numpy_complex_shift_of_a_real_tensor_keeps_its_imaginary_part(dtype):
    """torch takes np.complex64(1j) * real tensor as a real tensor: the shift
    is kept as a Python complex, so the products and the SVD are those of A + iI."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((40, 40))
    op = randla.Shifted(torch.from_numpy(A).to(dtype), np.complex64(1j))
    explicit = to_np(torch.from_numpy(A).to(dtype)).astype(np.complex128) + 1j * np.eye(40)
    tol = 1e-5 if dtype == torch.float32 else 1e-13
    check_products(op, explicit, tol)
    r = randla.svd(op, 30, rng=0)  # a sketch of all 40 columns: the exact singular values of A + iI
    assert r.U.dtype == (torch.complex64 if dtype == torch.float32 else torch.complex128)
    exact = np.linalg.svd(explicit, compute_uv=False)[:30]
    np.testing.assert_allclose(to_np(r.S), exact, rtol=100 * tol)


@pytest.mark.parametrize("library", ["numpy", "torch"])
def test_residual_of_a_complex_shift_keeps_complex_factors(library):
    """L and R of a real A plus a complex shift are complex: PlusLowRank keeps
    them complex (they were cast to A's real dtype), so the residual's products
    are exact and estimate_error a lower bound converging to ||E - L R||_2."""
    op, E = _shifted_low_rank(10j, library)
    r = randla.svd(op, 8, rng=0)
    L, R = r.factors()
    exact = E - to_np(L) @ to_np(R)
    res = randla.residual(op, L, R)
    check_products(res, exact, 1e-13)
    true_error = np.linalg.norm(exact, 2)
    estimate = randla.estimate_error(op, r, rng=0)
    assert 0.9 * true_error <= estimate <= true_error * (1 + 1e-10)


@pytest.mark.parametrize("make", [
    lambda A: A, sp.csr_array, torch.from_numpy, lambda A: torch.from_numpy(A).to_sparse(),
    lambda A: torch.from_numpy(A).to_sparse_csr(), dask_array,
], ids=["numpy", "csr", "torch", "torch_coo", "torch_csr", "dask"])
def test_trace_of_a_complex_matrix_is_complex(make):
    """tr(A) of a complex non-Hermitian A keeps its imaginary part, as numpy.trace; a real A's is a float."""
    rng = np.random.default_rng(0)
    A = rng.standard_normal((5, 5)) + 1j * rng.standard_normal((5, 5))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        trace = randla.as_operator(make(A)).trace()
        real = randla.as_operator(make(A.real.copy())).trace()
    assert isinstance(trace, complex) and abs(np.trace(A).imag) > 1
    assert trace == pytest.approx(complex(np.trace(A)), rel=1e-14)
    assert isinstance(real, float) and real == pytest.approx(np.trace(A.real), rel=1e-14)
    assert randla.Shifted(make(A), 2.0).trace() == pytest.approx(complex(np.trace(A)) + 10, rel=1e-14)
    assert randla.Shifted(make(A.real.copy()), 2j).trace() == pytest.approx(np.trace(A.real) + 10j, rel=1e-14)


@pytest.mark.parametrize("axis", [0, 1])
def test_centered_complex_shift_of_a_real_tensor(axis):
    """Centered(A + 2iI) of a real torch A: complex means meet real blocks,
    which torch refused to multiply; products and pca match NumPy's exact values."""
    op, E = _shifted_low_rank(2j, "torch")
    centred = E - E.mean(axis=axis, keepdims=True)
    check_products(randla.Centered(op, axis=axis), centred, 1e-13)
    if axis == 0:
        r = randla.pca(op, 6, rng=0)
        exact = np.linalg.svd(centred, compute_uv=False)[:6]
        np.testing.assert_allclose(to_np(r.S), exact, rtol=1e-10)


@pytest.mark.parametrize("axis", [0, 1])
def test_centered_products_of_sparse_a_never_form_a_dense_matrix(axis):
    """Centered(A, axis=1).rmatmat formed the n x m matrix 1 nu^H (here 32 MB)
    on every call; each product of either axis now takes O(nnz + (m + n) k) memory."""
    X = sparse_random(4000, 1000, 20_000, rng=0)
    C = randla.Centered(X, axis=axis)
    rng = np.random.default_rng(1)
    Y, Z = rng.standard_normal((4000, 5)), rng.standard_normal((1000, 5))
    dense = X.toarray()
    centred = dense - dense.mean(axis=axis, keepdims=True)
    tracemalloc.start()
    try:
        CY, CZ = C.rmatmat(Y), C.matmat(Z)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2**20  # dense A is 32 MB; the blocks 160 kB
    np.testing.assert_allclose(CY, centred.T @ Y, atol=1e-12 * np.abs(centred.T @ Y).max())
    np.testing.assert_allclose(CZ, centred @ Z, atol=1e-12 * np.abs(centred @ Z).max())


def test_meta_tensors_are_refused_at_the_boundary():
    """A torch tensor on the 'meta' device has no values: a clear TypeError,
    not torch's internal errors from deep inside an algorithm."""
    M = torch.empty(30, 20, device="meta")
    for f in (randla.as_operator, lambda A: randla.svd(A, 3, rng=0), lambda A: randla.spectral_norm(A, rng=0)):
        with pytest.raises(TypeError, match=r"A is a torch tensor on the 'meta' device.*materialise"):
            f(M)
    with pytest.raises(TypeError, match="K is a torch tensor on the 'meta' device"):
        randla.rpcholesky(torch.empty(20, 20, device="meta"), 3, rng=0)


class _NormOnly(Operator):
    """An explicit matrix seen through products and its exact norm only (no sums, no centred norm)."""

    def __init__(self, A):
        self.A, self.shape, self.xp = A, A.shape, randla.as_operator(A).xp
        self.dtype = self.input_dtype = A.dtype

    def matmat(self, X):
        return self.A @ X

    def rmatmat(self, Y):
        return self.A.conj().T @ Y

    def norm(self):
        return float(np.linalg.norm(self.A))


def test_norm_error_bounds_the_norms_of_differences_and_is_zero_for_explicit_matrices():
    # A + L R and a centred A take ||.||_F as a difference of larger terms; norm_error says how far off it may be.
    from test_qb import _residual_problem

    res, D = _residual_problem()
    exact = np.linalg.norm(D)
    assert abs(res.norm() / exact - 1) <= res.norm_error() < 1e-7
    assert res.H.norm() == res.norm() and res.H.norm_error() == res.norm_error()  # passed on by A^H
    op = randla.as_operator(D)
    assert op.norm() == pytest.approx(exact, rel=1e-14) and op.norm_error() == 0.0
    # Column means 300x the spread, seen through products only: the difference of squares cancels.
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((200, 100)))
    V, _ = np.linalg.qr(rng.standard_normal((200, 100)))
    X = (U * 0.7 ** np.arange(100)) @ V.T
    B = np.vstack([X, X]) + 300.0 * (1 + rng.random(200))
    centred = randla.Centered(_NormOnly(B))
    exact = np.linalg.norm(B - B.mean(axis=0))
    assert abs(centred.norm() / exact - 1) <= centred.norm_error() < 1e-4
    dense = randla.Centered(B)
    assert dense.norm() == pytest.approx(exact, rel=1e-12) and dense.norm_error() == 0.0  # means subtracted entrywise


@pytest.mark.parametrize("make", [
    lambda A: A.astype(np.float16), lambda A: A.astype(np.longdouble), lambda A: torch.from_numpy(A).half(),
    lambda A: torch.from_numpy(A).bfloat16(),
], ids=["float16", "longdouble", "torch_half", "torch_bfloat16"])
def test_complex_shift_of_a_half_or_extended_input_keeps_complex_factors(make):
    """The factors of A + 0.5i I are complex: cast back to a real half or extended input dtype they lost their
    imaginary parts (a full-rank SVD was 23% off), and a torch ID's real half P met a complex skeleton."""
    rng = np.random.default_rng(0)
    B = make(rng.standard_normal((30, 30)))
    exact = np.asarray(B.float() if isinstance(B, torch.Tensor) else B, dtype=np.float64) + 0.5j * np.eye(30)
    op = randla.Shifted(B, 0.5j)
    # S goes back to the input's real precision: bf16 rounds it to 4e-3, float16 to 5e-4.
    bound = 1e-10 if B.dtype == np.longdouble else 1e-2
    for result in (randla.svd(op, 30, rng=0), randla.interpolative(op, 30, rng=0), randla.cur(op, 30, rng=0)):
        rec = np.asarray(to_np(result.reconstruct()), dtype=np.complex128)
        assert np.linalg.norm(rec - exact) / np.linalg.norm(exact) < bound


@pytest.mark.parametrize("shift", [Fraction(1, 2), Decimal("0.5")], ids=["Fraction", "Decimal"])
def test_shift_of_any_real_number_type(shift):
    A = np.random.default_rng(0).standard_normal((5, 5))
    X = np.eye(5)
    np.testing.assert_allclose(randla.Shifted(A, shift).matmat(X), A + 0.5 * np.eye(5), rtol=1e-15)
    with pytest.raises(ValueError, match="finite"):
        randla.Shifted(A, Decimal("Infinity"))
