"""Random test matrices: the sketches every decomposition starts from.

A sketch here is a random n x l matrix Omega applied on the right, Y = A Omega,
so that range(Y) captures the dominant range of A [HMT2011, Sec. 4.1]. Each is
an :class:`~randla.operators.Operator` drawn from the caller's generator:
Gaussian and Rademacher on the input's device; the sparse sketches and
SRHT's signs and columns on the host (NumPy, SciPy), then moved there.

==============  ==========================================  ======================
``sketch``      Omega                                       cost of A @ Omega
==============  ==========================================  ======================
"gaussian"      i.i.d. N(0, 1)                              one product
"rademacher"    i.i.d. +-1                                  one product
"sparse_sign"   ``nnz_per_row`` entries +-1/sqrt(zeta)      O(nnz(A) zeta) sparse
"countsketch"   one entry +-1 per row (zeta = 1)            O(nnz(A)) sparse
"srht"          sqrt(n/l) D F R: signs, DCT, l columns      one product
==============  ==========================================  ======================

In a complex dtype only "gaussian" is complex: its entries are CN(0, 1) =
(N(0, 1) + i N(0, 1)) / sqrt(2), with E|omega|^2 = 1, which the bounds of
:mod:`randla.spectral` for complex A rely on. The other kinds stay real (+-1,
+-1/sqrt(zeta), or signs times the DCT), only stored in the complex dtype.

For SciPy sparse A the two sparse sketches run in input-sparsity time (Clarkson &
Woodruff 2017; Tropp et al. 2019, Sec. 3.3). The subsampled randomized
trigonometric transform ("srht", with the orthonormal DCT-II in place of the
Walsh-Hadamard matrix so any n works) is formed column by column from its
closed form, O(nl), and applied as a product: for the products with a dense A
that follow in a power iteration a fast transform brings no saving.

Examples
--------
>>> import numpy as np
>>> from randla.sketch import draw_sketch
>>> omega = draw_sketch("sparse_sign", 1000, 20, rng=np.random.default_rng(0))
>>> omega.shape, omega.nnz_per_row
((1000, 20), 8)
"""

from __future__ import annotations

import abc
import math

import numpy as np
import scipy.sparse as sp
from array_api_compat import is_torch_array

from ._validate import check_choice, check_int, check_rng
from .backend import conj_transpose, random_signs, standard_normal, to_numpy
from .operators import Operator, as_operator

__all__ = ["SKETCHES", "Sketch", "draw_sketch", "identity_sketch"]

SKETCHES = ("gaussian", "rademacher", "sparse_sign", "countsketch", "srht")


class Sketch(Operator):
    """An n x l random test matrix. ``apply(A)`` and ``A @ sketch`` return A @ Omega;
    ``sketch.H @ A`` is Omega^H A (for the sparse kinds in O(nnz) too)."""

    kind: str

    # NumPy would take a sketch for a 0-d object array in A @ sketch; None
    # makes it defer to __rmatmul__, as SciPy and torch already do.
    __array_ufunc__ = None

    @abc.abstractmethod
    def dense(self):
        """Omega as a dense array in the sketch's namespace and dtype."""

    def apply(self, op):
        """A @ Omega for a matrix A of shape (m, n).

        Parameters
        ----------
        op : array_like or Operator
            Anything :func:`randla.as_operator` takes: NumPy array, SciPy
            sparse matrix, LinearOperator, torch tensor, Dask array, Operator.

        Returns
        -------
        array of shape (m, l)
            In A's library, on its device and in the dtype of its products
            (float32 for float32 A, whatever the sketch's precision), complex
            where A or Omega is.
        """
        op = self._operand(op)
        omega = op.xp.asarray(self.dense(), dtype=self._product_dtype(op), device=op.device)
        return op.matmat(omega)

    def __rmatmul__(self, A):
        return self.apply(A)

    def _operand(self, A) -> Operator:
        op = as_operator(A)
        if op.shape[1] != self.shape[0]:
            raise ValueError(
                f"A @ Omega needs A with {self.shape[0]} columns, the rows of this "
                f"{self.shape[0]} x {self.shape[1]} sketch; got A of shape {op.shape}."
            )
        return op

    def _product_dtype(self, op: Operator):
        """The dtype Omega meets A in: A's product dtype, complex if Omega is."""
        xp = op.xp
        if xp.isdtype(op.dtype, "complex floating") or not self.xp.isdtype(self.dtype, "complex floating"):
            return op.dtype
        return xp.complex64 if op.dtype == xp.float32 else xp.complex128

    def matmat(self, X):
        return self.dense() @ X

    def rmatmat(self, Y):
        return conj_transpose(self.xp, self.dense()) @ Y


class _DenseSketch(Sketch):
    def __init__(self, kind, omega, xp, device):
        self.kind, self._omega, self.xp, self.device = kind, omega, xp, device
        self.shape = tuple(int(s) for s in omega.shape)
        self.dtype = self.input_dtype = omega.dtype

    def dense(self):
        return self._omega


class _SparseSketch(Sketch):
    """Sparse sign / CountSketch, held as a SciPy CSR matrix until applied.

    Its entries are real whatever ``dtype`` says (Omega^H = Omega^T), and
    held in float64 at the values of ``dtype`` (see :func:`draw_sketch`).
    """

    def __init__(self, kind, omega: sp.csr_array, xp, dtype, device, nnz_per_row):
        self.kind, self._omega, self.xp, self.device = kind, omega, xp, device
        self.shape = tuple(int(s) for s in omega.shape)
        self.dtype = self.input_dtype = dtype
        self.nnz_per_row = nnz_per_row

    def dense(self):
        xp = self.xp
        return xp.asarray(self._omega.toarray(), dtype=self.dtype, device=self.device)

    def apply(self, op):
        op = self._operand(op)
        Y = op.matmat_sparse(self._omega)
        xp, dtype = op.xp, self._product_dtype(op)
        # Omega is real: a complex sketch of a real A has a real product, returned as complex.
        if xp.isdtype(dtype, "complex floating") and not xp.isdtype(Y.dtype, "complex floating"):
            Y = xp.astype(Y, dtype)
        return Y

    # Products with the stored sparse Omega cost O(nnz): the sketch-and-solve
    # product Omega^H A (``sketch.H @ A``) must not form the dense n x l Omega.
    def matmat(self, X):
        out = self._sparse_product(self._omega, X)
        return super().matmat(X) if out is None else out

    def rmatmat(self, Y):
        out = self._sparse_product(self._omega.T, Y)
        return super().rmatmat(Y) if out is None else out

    def _sparse_product(self, omega, X):
        """omega @ X in the library and dtype of ``self.dense() @ X``; None for
        blocks other than NumPy, SciPy sparse, and dense torch of a torch sketch."""
        if self.xp.__name__.endswith("numpy") and (isinstance(X, np.ndarray) or sp.issparse(X)):
            dtype = np.result_type(self.dtype, X.dtype)
            # SciPy's sparse products take no half precision: computed in float32.
            out = omega.astype(np.float32 if dtype == np.float16 else dtype, copy=False) @ X
            return np.asarray(out.toarray() if sp.issparse(out) else out, dtype=dtype)
        if not (self.xp.__name__.endswith("torch") and is_torch_array(X)):
            return None
        import torch

        if X.layout != torch.strided:
            return None
        dtype = torch.promote_types(self.dtype, X.dtype)
        csr = sp.csr_array(omega)  # omega.T is CSC: its rows as CSR, O(nnz)
        rows = np.repeat(np.arange(csr.shape[0]), np.diff(csr.indptr))
        indices = torch.as_tensor(np.vstack([rows, csr.indices]), device=X.device)
        values = torch.as_tensor(csr.data, dtype=dtype, device=X.device)
        # COO, not CSR: torch's CSR products take no half precision. From a
        # canonical CSR the indices are sorted and unique: no check needed.
        S = torch.sparse_coo_tensor(
            indices, values, csr.shape, is_coalesced=csr.has_canonical_format, check_invariants=False
        )
        return S @ X.to(dtype)


def identity_sketch(n: int, *, xp, dtype, device) -> Sketch:
    """The n x n identity as a sketch, for a "sketch" as wide as A itself."""
    return _SparseSketch("identity", sp.eye_array(n, format="csr"), xp, dtype, device, 1)


def _sparse_sign(n, l, zeta, rng, scale) -> sp.csr_array:
    """n x l with zeta nonzeros +-scale (1/sqrt(zeta)) per row, at distinct columns.

    The columns of each row are a uniformly random zeta-subset of the l,
    drawn in O(n zeta^2) time and O(n zeta) memory: never n x l.
    """
    if zeta == 1:
        # CountSketch hashes the n rows into l buckets. Hashed independently,
        # e^(-n/l) of the buckets stay empty, and an empty column of Omega is
        # a lost direction of A Omega; a random balanced assignment (n >= l)
        # or one bucket per row (n < l) keeps Omega of full rank.
        cols = (rng.permutation(max(n, l))[:n] % l)[:, None]
    else:
        cols = _distinct_columns(n, l, zeta, rng)
    signs = 2.0 * rng.integers(0, 2, size=(n, zeta)) - 1.0
    indptr = np.arange(0, n * zeta + 1, zeta)
    return sp.csr_array(((scale * signs).ravel(), cols.ravel(), indptr), shape=(n, l))


def _distinct_columns(n, l, zeta, rng) -> np.ndarray:
    """n rows of zeta distinct columns in [0, l), each row a uniform subset, sorted.

    Floyd's algorithm, vectorised over the rows: step j draws t uniform in
    [0, j] and takes t, or j where the row holds t already. Each step keeps
    the chosen set a uniform subset of [0, j], without rejection loops.
    """
    cols = np.empty((n, zeta), dtype=np.intp)
    for k, j in enumerate(range(l - zeta, l)):
        t = rng.integers(0, j + 1, size=n)
        taken = (cols[:, :k] == t[:, None]).any(axis=1)
        cols[:, k] = np.where(taken, j, t)
    cols.sort(axis=1)  # canonical CSR: sorted column indices, none repeated
    return cols


def _srht(n, l, rng) -> np.ndarray:
    """sqrt(n/l) D C^T R with C the orthonormal DCT-II, from its closed form."""
    freqs = np.sort(rng.choice(n, size=l, replace=False))
    signs = 2.0 * rng.integers(0, 2, size=n) - 1.0
    j = np.arange(n)[:, None]
    basis = np.cos(np.pi * (2 * j + 1) * freqs[None, :] / (2 * n)) * math.sqrt(2.0 / n)
    basis[:, freqs == 0] /= math.sqrt(2.0)
    return math.sqrt(n / l) * signs[:, None] * basis


def draw_sketch(
    kind: str,
    n: int,
    l: int,
    *,
    xp=None,
    dtype=None,
    device="cpu",
    rng=None,
    nnz_per_row: int = 8,
) -> Sketch:
    """Draw an n x l test matrix Omega of the given kind.

    Parameters
    ----------
    kind : {"gaussian", "rademacher", "sparse_sign", "countsketch", "srht"}
    n, l : int
        Shape of Omega: n matches the columns of A, l is the sketch size.
    xp, dtype, device
        Array namespace, dtype and device to draw on (default NumPy float64).
        For a complex dtype, "gaussian" draws complex CN(0, 1) entries,
        (N(0, 1) + i N(0, 1)) / sqrt(2) (E|omega|^2 = 1); the other kinds
        draw their real values and store them in the complex dtype.
    rng : numpy.random.Generator, optional
    nnz_per_row : int, default 8
        Nonzeros per row for ``"sparse_sign"`` (capped at l); the default is
        the value Tropp et al. (2019) recommend.

    Returns
    -------
    Sketch
        An operator of shape (n, l); ``sketch.apply(A)`` is A @ Omega.
    """
    import array_api_compat.numpy as np_xp

    check_choice("sketch", kind, SKETCHES)
    n = check_int("n", n, 1)
    l = check_int("l", l, 1)
    xp = np_xp if xp is None else xp
    dtype = xp.float64 if dtype is None else dtype
    rng = check_rng(rng)
    if kind == "gaussian":
        return _DenseSketch(kind, standard_normal(xp, (n, l), dtype, device, rng), xp, device)
    if kind == "rademacher":
        return _DenseSketch(kind, random_signs(xp, (n, l), dtype, device, rng), xp, device)
    if kind == "srht":
        if l > n:
            raise ValueError(f"an SRHT sketch keeps l <= n columns; got l={l}, n={n}.")
        omega = xp.asarray(_srht(n, l, rng), dtype=dtype, device=device)
        return _DenseSketch(kind, omega, xp, device)
    zeta = 1 if kind == "countsketch" else min(check_int("nnz_per_row", nnz_per_row, 1), l)
    # 1/sqrt(zeta) rounded to dtype, as dense() holds it: every product sees the same Omega.
    scale = float(np.real(to_numpy(xp.asarray(1 / math.sqrt(zeta), dtype=dtype))))
    return _SparseSketch(kind, _sparse_sign(n, l, zeta, rng, scale), xp, dtype, device, zeta)
