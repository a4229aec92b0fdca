"""Kernel functions k(x, y), evaluated on blocks of points.

Each kernel maps two blocks of points, A (p, d) and B (q, d), to the block
k(A, B) of shape (p, q), in A's array library and on its device, and knows
its diagonal k(x, x) without pairwise work. Parameters follow scikit-learn's
``pairwise_kernels`` and ``gaussian_process.kernels.Matern``:

=============  ==============================================  ==============
kernel         k(x, y)                                         parameters
=============  ==============================================  ==============
``rbf``        exp(-gamma ||x - y||_2^2)                        gamma
``laplacian``  exp(-gamma ||x - y||_1)                          gamma
``matern``     Matern with smoothness nu in {0.5, 1.5, 2.5}     length_scale,
                                                                nu
``polynomial`` (gamma <x, y> + coef0)^degree                    gamma, degree,
                                                                coef0
``linear``     <x, y>                                           (none)
``cosine``     <x, y> / (||x||_2 ||y||_2), 0 if x or y is 0     (none)
``chi2``       exp(-gamma sum_k (x_k - y_k)^2 / (x_k + y_k))    gamma
               for non-negative x, y (0 / 0 read as 0)
=============  ==============================================  ==============

``gaussian`` is another name for ``rbf``, ``poly`` for ``polynomial`` (as in
scikit-learn). scikit-learn's ``sigmoid`` and ``additive_chi2`` are not
positive semidefinite, which Nystrom methods and kernel ridge need, and are
refused.

Points may be SciPy sparse matrices (TF-IDF rows, counts) for the kernels
computed from inner products, ``linear``, ``polynomial``, ``cosine`` and
``rbf``: blocks then cost the sparse products of the rows, and rbf
distances come from ||x||^2 + ||y||^2 - 2 <x, y> about the origin.

A callable kernel takes two blocks of points and returns their (p, q)
block; one written as scikit-learn's callables are, for two single points
x and y returning the number k(x, y), is evaluated one pair at a time (a
Python call per entry: slow; see :func:`randla.kernel_operator`).

``gamma`` defaults to 1 / d (d the number of features), and to 1 for
``chi2``, as in scikit-learn. ``bandwidth`` sigma may be given instead:
gamma = 1 / (2 sigma^2) for ``rbf``, 1 / sigma for ``laplacian`` and
length_scale = sigma for ``matern``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["Kernel", "make_kernel", "KERNELS"]

KERNELS = ("rbf", "gaussian", "laplacian", "matern", "polynomial", "poly", "linear", "cosine", "chi2")
_ALIASES = {"gaussian": "rbf", "poly": "polynomial"}
_NOT_PSD = ("sigmoid", "additive_chi2")
_CHI2_BLOCK = 1 << 15  # entries of a block of chi2 distances: 256 KiB in float64
# Kernels of inner products, which sparse points keep cheap.
SPARSE_KERNELS = ("linear", "polynomial", "cosine", "rbf", "callable")


def is_sparse(A) -> bool:
    import scipy.sparse as sp

    return sp.issparse(A)


@dataclass(frozen=True)
class Prepared:
    """Points B made ready for many blocks k(A, B): what depends on B alone, done once.

    ``right`` is what a block's product A @ right reads (B's transpose, of
    its unit rows for cosine, centred for dense rbf; a CSR matrix for sparse
    B, in float64 for rbf), ``norms`` the squared norms of those rows (rbf),
    ``centre`` the shift of dense rbf blocks (B's mean).
    """

    points: object
    right: object = None
    norms: object = None
    centre: object = None


@dataclass(frozen=True)
class Kernel:
    """A kernel and its parameters; ``kernel(xp, A, B)`` is the block k(A, B).

    B may be given as :meth:`prepare` returns it, which saves the work that
    depends on B alone when many blocks share it.
    """

    name: str
    params: dict = field(default_factory=dict)
    function: Callable | None = None  # the user's callable, for name == "callable"
    sparse_points: bool = False  # blocks then pass through a sparse product
    pairwise: bool = False  # the callable takes two points, not two blocks (scikit-learn's form)

    @property
    def unit_diagonal(self) -> bool:
        """k(x, x) = 1 for every x, and k(x, y) >= 0."""
        return self.name in ("rbf", "laplacian", "matern", "chi2")

    @property
    def temporaries(self) -> int:
        """Blocks of the kernel block's size alive at once while it is evaluated
        (distances, kernel values, a product; Matern's polynomial factor and
        chi2's per-feature terms add more; so does the sparse product of
        sparse points, up to 1.5 blocks of data and indices)."""
        if self.name == "matern":
            return 4 if self.params["nu"] == 0.5 else 5
        if self.sparse_points:
            return 5
        return 5 if self.name == "chi2" else 3

    def check_points(self, xp, X, name: str = "X"):
        """Refuse points outside the kernel's domain (chi2: negative entries), and
        sparse points for kernels not computed from inner products."""
        if is_sparse(X):
            if self.name not in SPARSE_KERNELS:
                allowed = ", ".join(repr(k) for k in SPARSE_KERNELS[:-1])
                raise ValueError(
                    f"the {self.name!r} kernel does not take sparse points; kernels of sparse points: "
                    f"{allowed} or a callable. Pass {name}.toarray() if it fits in memory."
                )
            return
        if self.name == "chi2" and bool(xp.any(X < 0)):
            raise ValueError(
                f"Negative values in data: the 'chi2' kernel takes non-negative features (histograms, counts); {name} has "
                f"negative entries, the smallest {float(xp.min(X))!r}."
            )

    def prepare(self, xp, B) -> Prepared:
        """B ready for blocks k(A, B): one copy of B at most (cosine, rbf, sparse), made once."""
        if isinstance(B, Prepared):
            return B
        if self.name not in ("linear", "polynomial", "cosine", "rbf"):
            return Prepared(B)
        if is_sparse(B):
            if self.name == "rbf":  # the Gram expansion in float64: float32 loses the distances
                B = B.astype(np.float64, copy=False)
                return Prepared(B, B.T.tocsr(), squared_norms(xp, B))
            return Prepared(B, (_unit_rows(xp, B) if self.name == "cosine" else B).T.tocsr())
        if self.name == "cosine":
            return Prepared(B, _unit_rows(xp, B).mT)
        if self.name == "rbf" and B.shape[0]:  # the mean of no points is NaN
            centre = xp.mean(B, axis=0)
            shifted = B - centre
            return Prepared(B, shifted.mT, xp.linalg.vecdot(shifted, shifted, axis=1), centre)
        return Prepared(B, B.mT)

    def __call__(self, xp, A, B):
        B = self.prepare(xp, B)
        if self.name == "callable":
            if self.pairwise:
                return _pairwise_block(xp, self.function, A, B.points, self.params)
            block = self.function(A, B.points, **self.params)
            return block.toarray() if is_sparse(block) else block
        if is_sparse(A) or is_sparse(B.points):
            return self._of_inner_products(xp, A, B)
        if self.name == "linear":
            return A @ B.right
        if self.name == "cosine":
            return _unit_rows(xp, A) @ B.right
        if self.name == "chi2":
            return xp.exp(-self.params["gamma"] * chi2_distances(xp, A, B.points))
        if self.name == "polynomial":
            p = self.params
            return (p["gamma"] * (A @ B.right) + p["coef0"]) ** p["degree"]
        if self.name == "rbf":
            return xp.exp(-self.params["gamma"] * squared_distances(xp, A, B))
        if self.name == "laplacian":
            return xp.exp(-self.params["gamma"] * l1_distances(xp, A, B.points))
        r = euclidean_distances(xp, A, B.points) / self.params["length_scale"]
        return _matern(xp, r, self.params["nu"])

    def _of_inner_products(self, xp, A, B: Prepared):
        """The block from the product of A with B's prepared transpose, one of them sparse."""
        dtype = A.dtype
        if self.name == "rbf":  # in float64, about the origin (centring would densify)
            A = A.astype(np.float64, copy=False) if is_sparse(A) else np.asarray(A, dtype=np.float64)
            right, b = B.right, B.norms
            if not is_sparse(B.points):  # dense B against sparse A: B was prepared centred
                points = np.asarray(B.points, dtype=np.float64)
                right, b = points.T, squared_norms(xp, points)
            G = _dense(A @ right)
            distances = np.clip(squared_norms(xp, A)[:, None] + b[None, :] - 2 * G, 0, None)
            return np.exp(-self.params["gamma"] * distances).astype(dtype, copy=False)
        G = _dense(_unit_rows(xp, A) @ B.right if self.name == "cosine" else A @ B.right).astype(dtype, copy=False)
        if self.name == "polynomial":
            p = self.params
            return (p["gamma"] * G + p["coef0"]) ** p["degree"]
        return G

    def diagonal(self, xp, A):
        """k(a, a) for every row a of A."""
        if self.unit_diagonal:
            return xp.ones(A.shape[0], dtype=A.dtype, device=_device(A))
        if self.name == "callable":
            if self.pairwise:  # one call per point, not a block of calls per point
                return _pairwise_diagonal(xp, self.function, A, self.params)
            return _callable_diagonal(self, xp, A)
        if self.name == "cosine":
            if is_sparse(A):
                A = A.tocsr()
                nonzero = _row_reduce(np.maximum, np.abs(A.data), A.indptr) > 0
            else:
                nonzero = xp.any(A != 0, axis=1)
            return xp.astype(xp.asarray(nonzero), A.dtype)
        sq = squared_norms(xp, A)
        if self.name == "linear":
            return sq
        p = self.params
        return (p["gamma"] * sq + p["coef0"]) ** p["degree"]


def _device(A):
    from ..backend import device_of

    return device_of(A)


def _dense(G):
    """A product with a sparse operand, as a dense NumPy array."""
    return np.asarray(G.toarray() if is_sparse(G) else G)


def squared_norms(xp, A):
    """||a_i||^2 of every row, of a dense or a SciPy sparse A."""
    if is_sparse(A):
        A = A.tocsr()
        return _row_reduce(np.add, A.data * A.data, A.indptr)
    return xp.sum(A * A, axis=1)


def _row_reduce(ufunc, values, indptr):
    """``ufunc`` reduced over each CSR row's stored values; 0 for a row with none."""
    counts = np.diff(indptr)
    out = np.zeros(len(counts), dtype=values.dtype)
    if values.size:
        starts = np.minimum(indptr[:-1], values.size - 1)  # reduceat needs starts inside the array
        out = np.where(counts > 0, ufunc.reduceat(values, starts), 0).astype(values.dtype, copy=False)
    return out


def squared_distances(xp, A, B: Prepared):
    """||a_i - b_j||_2^2 by the Gram expansion, clipped at 0 against rounding.

    Both blocks are shifted by B's mean (``B.centre``), which leaves the
    distances unchanged: the expansion's rounding is of order eps ||a||^2,
    which for points far from the origin (float32 data around 1000) swamps
    them.
    """
    if B.centre is not None:
        A = A - B.centre
    a = xp.sum(A * A, axis=1)[:, None]
    b = xp.zeros(0, dtype=A.dtype, device=_device(A)) if B.norms is None else B.norms
    return xp.clip(a + b[None, :] - 2 * (A @ B.right), min=0)


def euclidean_distances(xp, A, B):
    """||a_i - b_j||_2 from differences: the Gram expansion's rounding, of order
    sqrt(eps) ||a||, would show through the square root near the diagonal."""
    return _pairwise(xp, A, B, p=2)


def l1_distances(xp, A, B):
    """||a_i - b_j||_1."""
    return _pairwise(xp, A, B, p=1)


def chi2_distances(xp, A, B):
    """sum_k (a_ik - b_jk)^2 / (a_ik + b_jk) of non-negative points, a feature at
    a time: no (p, q, d) temporary, and terms with a_ik = b_jk = 0 are 0.

    Rows of A go a cache-sized block at a time, so that the per-feature
    passes stay in cache (2x faster at 1000 x 200 x 256). The denominators
    are shifted by the smallest normal number: a 0/0 term becomes 0/tiny = 0
    with no mask, and any other term changes by a relative tiny / (a + b).
    """
    shifted = B + xp.finfo(B.dtype).smallest_normal
    rows = max(1, _CHI2_BLOCK // max(B.shape[0], 1))
    blocks = []
    for lo in range(0, A.shape[0], rows):
        part = A[lo : lo + rows]
        total = xp.zeros((part.shape[0], B.shape[0]), dtype=A.dtype, device=_device(A))
        for k in range(A.shape[1]):
            a = part[:, k, None]
            term = a - B[None, :, k]
            if _needs_grad(term):  # autograd keeps term for the backward pass: no writing over it
                total = total + term * term / (a + shifted[None, :, k])
                continue
            term *= term
            term /= a + shifted[None, :, k]
            total += term
        blocks.append(total)
    return blocks[0] if len(blocks) == 1 else xp.concat(blocks, axis=0)


def _unit_rows(xp, A):
    """Rows scaled to unit length; zero rows stay zero, as scikit-learn's ``normalize``.

    Each row is divided by its largest entry first, so that squaring neither
    overflows nor underflows (rows of 1e200 or 1e-200, 1e20 in float32).
    """
    if is_sparse(A):
        U = A.tocsr(copy=True)
        rows = np.repeat(np.arange(U.shape[0]), np.diff(U.indptr))
        largest = _row_reduce(np.maximum, np.abs(U.data), U.indptr)
        U.data /= np.where(largest > 0, largest, 1)[rows]
        norms = np.sqrt(_row_reduce(np.add, U.data * U.data, U.indptr))
        U.data /= np.where(norms > 0, norms, 1)[rows]
        return U
    if A.shape[1]:  # the largest |a_ij| of each row, without a copy of A's size for |A|
        largest = xp.maximum(xp.max(A, axis=1, keepdims=True), -xp.min(A, axis=1, keepdims=True))
    else:
        largest = xp.ones((A.shape[0], 1), dtype=A.dtype, device=_device(A))
    U = A / xp.where(largest > 0, largest, 1)
    squares = xp.linalg.vecdot(U, U, axis=1)[:, None]  # entries at most 1: no overflow, no temporary
    # The square root of 1 at zero rows, not of 0: its gradient there would be inf, and NaN once masked.
    norms = xp.sqrt(xp.where(squares > 0, squares, 1))
    if _needs_grad(U):  # vecdot kept U for the backward pass: no writing over it
        return U / norms
    U /= norms
    return U


def _needs_grad(T) -> bool:
    """Whether autograd records operations on T (a torch tensor that requires grad)."""
    return bool(getattr(T, "requires_grad", False))


def _pairwise(xp, A, B, p: int):
    if xp.__name__.endswith("torch"):
        import torch

        return torch.cdist(A, B, p=p, compute_mode="donot_use_mm_for_euclid_dist")
    if xp.__name__.endswith("numpy"):
        from scipy.spatial.distance import cdist

        metric = "cityblock" if p == 1 else "euclidean"
        return cdist(A, B, metric=metric).astype(A.dtype, copy=False)
    diff = xp.abs(A[:, None, :] - B[None, :, :])
    return xp.sum(diff, axis=2) if p == 1 else xp.sqrt(xp.sum(diff * diff, axis=2))


def _matern(xp, r, nu: float):
    if nu == 0.5:
        return xp.exp(-r)
    if nu == 1.5:
        s = math.sqrt(3.0) * r
        return (1 + s) * xp.exp(-s)
    s = math.sqrt(5.0) * r
    e = xp.exp(-s)
    # (1 + s + s^2 / 3) e^-s without s^2, which overflows (inf * 0 = NaN) far out.
    return e + (s * e) * (1 + s / 3)


def _callable_diagonal(kernel: Kernel, xp, A, block: int = 256):
    # Blocks of k(A_b, A_b): O(n * block * d) work instead of n separate calls. A block callable
    # gives no single entries, so this costs block * n kernel entries (rpcholesky's Notes say so).
    parts = []
    for start in range(0, A.shape[0], block):
        Ab = A[start : start + block]
        parts.append(xp.linalg.diagonal(kernel(xp, Ab, Ab)))
    return xp.concat(parts)


def point(P, i: int):
    """Point i of P as scikit-learn hands it to a callable of two points: a 1-D
    row, or a (1, d) matrix for SciPy sparse P."""
    return P[[i]] if is_sparse(P) else P[i]


def _pairwise_block(xp, function, A, B, params: dict):
    """k(A, B) from a callable of two points, one Python call per entry."""
    block = np.empty((A.shape[0], B.shape[0]))
    for i in range(A.shape[0]):
        a = point(A, i)
        for j in range(B.shape[0]):
            block[i, j] = float(function(a, point(B, j), **params))
    return _as_points_array(xp, block, A)


def _pairwise_diagonal(xp, function, A, params: dict):
    values = np.array([float(function(point(A, i), point(A, i), **params)) for i in range(A.shape[0])])
    return _as_points_array(xp, values, A)


def _as_points_array(xp, values: np.ndarray, A):
    """Host float64 values in the library, dtype and device of the points A."""
    if is_sparse(A):
        return values.astype(A.dtype, copy=False)
    return xp.asarray(values, dtype=A.dtype, device=_device(A))


def _positive(name: str, value, kernel: str) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if ok and math.isfinite(value) and value > 0:
        return float(value)
    raise ValueError(f"`{name}` of the {kernel!r} kernel must be a positive finite number; got {value!r}.")


def make_kernel(kernel, n_features: int, params: dict) -> Kernel:
    """Validate ``kernel`` and its parameters; defaults as in scikit-learn.

    Raises ``ValueError`` for an unknown name, an unknown or non-positive
    parameter, and ``TypeError`` for something neither a name nor a callable.
    """
    params = dict(params)
    if callable(kernel):
        return Kernel("callable", params, kernel)
    if isinstance(kernel, str) and kernel in _NOT_PSD:
        raise ValueError(
            f"the {kernel!r} kernel is not positive semidefinite, which Nystrom approximations and "
            "kernel ridge regression need; use one of " + ", ".join(repr(k) for k in KERNELS) + "."
        )
    if not isinstance(kernel, str) or kernel not in KERNELS:
        allowed = ", ".join(repr(k) for k in KERNELS)
        if isinstance(kernel, str):
            raise ValueError(f"`kernel` must be one of {allowed} or a callable k(A, B); got {kernel!r}.")
        raise TypeError(f"`kernel` must be one of {allowed} or a callable k(A, B); got {type(kernel).__name__}.")
    name = _ALIASES.get(kernel, kernel)
    allowed = {
        "rbf": {"gamma", "bandwidth"},
        "laplacian": {"gamma", "bandwidth"},
        "matern": {"length_scale", "nu", "bandwidth"},
        "polynomial": {"gamma", "degree", "coef0"},
        "linear": set(),
        "cosine": set(),
        "chi2": {"gamma"},
    }[name]
    unknown = set(params) - allowed
    if unknown:
        names = ", ".join(sorted(allowed)) or "none"
        raise ValueError(
            f"unknown parameter(s) {sorted(unknown)} for the {kernel!r} kernel; it takes: {names}."
        )
    bandwidth = params.pop("bandwidth", None)
    if bandwidth is not None:
        sigma = _positive("bandwidth", bandwidth, kernel)
        key = "length_scale" if name == "matern" else "gamma"
        if params.get(key) is not None:
            raise ValueError(f"give either `bandwidth` or `{key}` for the {kernel!r} kernel, not both.")
        params[key] = {"rbf": 1 / (2 * sigma**2), "laplacian": 1 / sigma, "matern": sigma}[name]
    if name in ("rbf", "laplacian", "polynomial", "chi2"):
        gamma = params.get("gamma")
        default = 1.0 if name == "chi2" else 1.0 / n_features
        params["gamma"] = default if gamma is None else _positive("gamma", gamma, kernel)
    if name == "matern":
        params["length_scale"] = _positive("length_scale", params.get("length_scale", 1.0), kernel)
        nu = params.get("nu", 1.5)
        if nu not in (0.5, 1.5, 2.5):
            raise ValueError(
                f"`nu` of the 'matern' kernel must be 0.5, 1.5 or 2.5 (closed forms); got {nu!r}."
            )
        params["nu"] = float(nu)
    if name == "polynomial":
        degree = params.get("degree", 3)
        if not (isinstance(degree, numbers.Integral) and not isinstance(degree, bool) and degree >= 1):
            raise ValueError(f"`degree` of the 'polynomial' kernel must be an int >= 1; got {degree!r}.")
        coef0 = params.get("coef0", 1.0)
        if not (isinstance(coef0, numbers.Real) and math.isfinite(coef0) and coef0 >= 0):
            raise ValueError(
                f"`coef0` of the 'polynomial' kernel must be a finite number >= 0 (keeps it PSD); got {coef0!r}."
            )
        params["degree"], params["coef0"] = int(degree), float(coef0)
    return Kernel(name, params)
