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

from ._validate import check_choice, check_int, check_rng
from .backend import conj_transpose, random_signs, standard_normal
from .operators import Operator

__all__ = ["SKETCHES", "Sketch", "draw_sketch", "identity_sketch"]

SKETCHES = ("gaussian", "rademacher", "sparse_sign", "countsketch", "srht")


class Sketch(Operator):
    """An n x l random test matrix. ``apply(A)`` returns A @ Omega."""

    kind: str

    @abc.abstractmethod
    def dense(self):
        """Omega as a dense array in the sketch's namespace and dtype."""

    def apply(self, op: Operator):
        """A @ Omega for an operator A of shape (m, n)."""
        return op.matmat(self.dense())

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
    """Sparse sign / CountSketch, held as a SciPy CSR matrix until applied."""

    def __init__(self, kind, omega: sp.csr_array, xp, dtype, device, nnz_per_row):
        self.kind, self._omega, self.xp, self.device = kind, omega, xp, device
        self.shape = tuple(int(s) for s in omega.shape)
        self.dtype = self.input_dtype = dtype
        self.nnz_per_row = nnz_per_row

    def dense(self):
        xp = self.xp
        return xp.asarray(self._omega.toarray(), dtype=self.dtype, device=self.device)

    def apply(self, op: Operator):
        return op.matmat_sparse(self._omega)


def identity_sketch(n: int, *, xp, dtype, device) -> Sketch:
    """The n x n identity as a sketch, for a "sketch" as wide as A itself."""
    return _SparseSketch("identity", sp.eye_array(n, format="csr"), xp, dtype, device, 1)


def _sparse_sign(n, l, zeta, rng) -> sp.csr_array:
    """n x l with zeta nonzeros +-1/sqrt(zeta) per row, at distinct columns."""
    # argpartition of uniform keys gives zeta distinct columns per row at once.
    if zeta == 1:
        # CountSketch hashes the n rows into l buckets. Hashed independently,
        # e^(-n/l) of the buckets stay empty, and an empty column of Omega is
        # a lost direction of A Omega; a random balanced assignment (n >= l)
        # or one bucket per row (n < l) keeps Omega of full rank.
        cols = (rng.permutation(max(n, l))[:n] % l)[:, None]
    else:
        cols = np.argpartition(rng.random((n, l)), zeta - 1, axis=1)[:, :zeta]
    signs = 2.0 * rng.integers(0, 2, size=(n, zeta)) - 1.0
    indptr = np.arange(0, n * zeta + 1, zeta)
    return sp.csr_array((signs.ravel() / math.sqrt(zeta), cols.ravel(), indptr), shape=(n, l))


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
    return _SparseSketch(kind, _sparse_sign(n, l, zeta, rng), xp, dtype, device, zeta)
