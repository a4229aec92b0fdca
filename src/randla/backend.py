"""The few array operations the array API standard lacks, per library.

Everything else in randla is written against the array API namespace of the
input (``array_api_compat``). This module is the only place that knows which
library it is running on: random draws on a device from a seed, Cholesky,
triangular inverse, LU, and the cheap orthonormalisers built from them.

Keeping every BLAS/LAPACK call of a hot loop in the input's own library matters
on CPU: NumPy's and SciPy's wheels each ship an OpenBLAS with its own thread
pool, and alternating between them makes their idle workers fight for cores.
So the range finders' NumPy path uses ``numpy.linalg`` only; SciPy serves the
LU normaliser and the triangular solves of the kernel solvers, which NumPy
lacks.
"""

from __future__ import annotations

import math

import numpy as np
from array_api_compat import array_namespace, is_numpy_array, is_torch_array

__all__ = [
    "namespace",
    "device_of",
    "standard_normal",
    "probe_generator",
    "random_signs",
    "householder_qr",
    "solve_triangular",
    "triangular_inverse",
    "orthonormalize",
    "qr",
    "conj_transpose",
    "normalize",
    "small_svd",
    "small_eigh",
    "to_numpy",
    "finfo_eps",
    "frobenius_norm",
    "real_dtype",
    "NORMALIZERS",
]

NORMALIZERS = ("auto", "qr", "lu", "cholqr", "none")


def namespace(x):
    """Array API namespace of a dense array."""
    return array_namespace(x)


def device_of(x):
    if is_numpy_array(x):
        return "cpu"
    return getattr(x, "device", "cpu")


def finfo_eps(xp, dtype) -> float:
    return float(xp.finfo(dtype).eps)


# Entries per block of the rescaled pass of frobenius_norm: bounds its
# temporaries without a copy of the whole array.
_NORM_BLOCK = 1 << 20


def frobenius_norm(xp, x) -> float:
    """||x||_F of a dense array as a Python float, accurate at any scale.

    NumPy's and torch's norms add up squares unscaled, which overflow above
    ~1e154 (float64) or ~1e19 (float32) and underflow below the reciprocals.
    The one-pass sum is kept whenever it stays in the normal range; otherwise
    the entries are divided by the largest one first (as LAPACK's nrm2 does),
    block by block so that no copy of x is made.

    Single and half precisions are summed in float64 instead, where their
    squares are exact and cannot overflow: BLAS sums a million float32
    squares with a relative error near 1e-5, which the adaptive
    rangefinder's indicator ||A||_F^2 - ||Q^H A||_F^2 would read as error.
    """
    if math.prod(x.shape) and xp.finfo(x.dtype).bits < 64:
        return _norm_in_double(xp, x)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        # numpy.linalg.norm ravels in memory order (no copy); torch has no scaling either.
        fast = float(np.linalg.norm(x) if is_numpy_array(x) else xp.linalg.vector_norm(x))
        info = xp.finfo(x.dtype)
        if math.sqrt(float(info.smallest_normal) / float(info.eps)) <= fast < math.inf:
            return fast
        if math.prod(x.shape) == 0:  # no entries, as in a factor of rank 0
            return 0.0
        rows = max(1, _NORM_BLOCK // math.prod(x.shape[1:]))
        blocks = [x[i : i + rows] for i in range(0, x.shape[0], rows)]
        largest = max((float(xp.max(xp.abs(b))) for b in blocks), default=0.0)
        if not 0.0 < largest < math.inf:  # zero or empty, or Inf/NaN present
            return largest
        # |b| before the division: complex division by a subnormal largest
        # overflows (it forms 1 / largest), real division does not.
        return largest * math.sqrt(sum(float(xp.sum((xp.abs(b) / largest) ** 2)) for b in blocks))


def _norm_in_double(xp, x) -> float:
    rows = max(1, _NORM_BLOCK // math.prod(x.shape[1:]))
    complex_ = xp.isdtype(x.dtype, "complex floating")
    total = 0.0
    for i in range(0, x.shape[0], rows):
        block = x[i : i + rows]
        for part in (xp.real(block), xp.imag(block)) if complex_ else (block,):
            part = xp.astype(part, xp.float64)
            total += float(xp.sum(part * part))
    return math.sqrt(total)


def real_dtype(xp, dtype):
    """The real dtype of the same precision (float32 for complex64, ...)."""
    if xp.isdtype(dtype, "complex floating"):
        return xp.float32 if dtype == xp.complex64 else xp.float64
    return dtype


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63 - 1))


# The spawn key of the streams that a posteriori checks draw their probes from. Sketches are
# drawn from the user's Generator itself or from default_rng(seed): from no tagged SeedSequence.
_PROBE_STREAM = 0x70726F62  # "prob" in ASCII


def probe_generator(rng: np.random.Generator) -> np.random.Generator:
    """A stream for the probes of an a posteriori check, apart from every sketch of the same seed.

    A check given the seed that built the approximation would otherwise draw the very sketch
    Omega that Q came from, and (I - Q Q^H) A Omega = 0 whatever the true error. The child is
    seeded by ``SeedSequence(seed, spawn_key=(tag,))`` with a seed drawn from ``rng``: the same
    rng still gives the same probes, and NumPy, torch and CuPy draws (which take their own seeds
    from the child) all differ from the sketches' draws. ``Generator.spawn`` would not do: it
    needs a SeedSequence, which a legacy-seeded bit generator lacks, and its children are the
    ones a user spawns too.
    """
    return np.random.default_rng(np.random.SeedSequence(_seed(rng), spawn_key=(_PROBE_STREAM,)))


def _torch_generator(rng, device):
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(_seed(rng))
    return gen


# Double-precision torch dtypes, whose CPU test matrices NumPy draws: twice as
# fast as torch.randn there (in single precision torch.randn is 3x faster), and
# the same rng then gives the same test matrix for NumPy and torch.
_TORCH_TO_NUMPY = {"torch.float64": np.float64, "torch.complex128": np.complex128}


def _drawn_dtype(rdtype):
    """The dtype NumPy's (CuPy's) generator draws a real dtype in: float32 or float64."""
    # By size, not identity: a byte-swapped float64 (">f8") is no np.float64 either.
    return np.float64 if np.finfo(rdtype).bits >= 64 else np.float32


def standard_normal(xp, shape, dtype, device, rng: np.random.Generator):
    """Standard normal array drawn on ``device``; complex dtypes get CN(0, 1).

    NumPy's and CuPy's generators draw only float32 and float64: half
    precision is drawn in float32 and long double in float64, then cast.
    """
    complex_ = xp.isdtype(dtype, "complex floating")
    rdtype = real_dtype(xp, dtype)
    if xp.__name__.endswith("numpy"):
        out = rng.standard_normal(shape, dtype=_drawn_dtype(rdtype))
        if complex_:
            out = (out + 1j * rng.standard_normal(shape, dtype=out.dtype)) / np.sqrt(2)
        return out.astype(dtype, copy=False)
    if xp.__name__.endswith("torch"):
        import torch

        host_dtype = _TORCH_TO_NUMPY.get(str(dtype))
        if torch.device(device).type == "cpu" and host_dtype is not None:
            import array_api_compat.numpy as np_xp

            return torch.from_numpy(standard_normal(np_xp, shape, host_dtype, "cpu", rng))
        gen = _torch_generator(rng, device)
        return torch.randn(shape, generator=gen, dtype=dtype, device=device)
    if xp.__name__.endswith("cupy"):
        import cupy

        crng = cupy.random.default_rng(_seed(rng))
        out = crng.standard_normal(shape, dtype=_drawn_dtype(rdtype))
        if complex_:
            out = (out + 1j * crng.standard_normal(shape, dtype=out.dtype)) / np.sqrt(2)
        return out.astype(dtype)
    host = standard_normal(np, shape, np.float64, "cpu", rng)
    return xp.asarray(host, dtype=dtype, device=device)


def random_signs(xp, shape, dtype, device, rng: np.random.Generator):
    """Rademacher (+1/-1) array on ``device``."""
    if xp.__name__.endswith("torch"):
        import torch

        gen = _torch_generator(rng, device)
        bits = torch.randint(0, 2, shape, generator=gen, device=device)
        return (2 * bits - 1).to(dtype)
    host = (2 * rng.integers(0, 2, size=shape, dtype=np.int8) - 1).astype(np.float64)
    if xp.__name__.endswith("numpy"):
        return host.astype(dtype, copy=False)
    return xp.asarray(host, dtype=dtype, device=device)


def to_numpy(x) -> np.ndarray:
    """Host copy of a small array (for reporting and tests, never the big matrix)."""
    if is_numpy_array(x):
        return x
    if is_torch_array(x):
        x = x.detach().cpu()
        # NumPy has no bfloat16 (nor float8): those come back in float32, which holds them exactly.
        if x.is_floating_point() and x.element_size() <= 2 and str(x.dtype) != "torch.float16":
            x = x.float()
        return x.numpy()
    if hasattr(x, "get"):
        return x.get()
    return np.asarray(x)


def _conj_t(xp, x):
    # Dask arrays have no .mT; every array here is 2-D, where .T is the same.
    t = x.mT if hasattr(x, "mT") else x.T
    return xp.conj(t) if xp.isdtype(x.dtype, "complex floating") else t


# -- orthonormalisation -----------------------------------------------------


def householder_qr(xp, Y):
    """Thin Householder QR; Q only. Stable for any input, rank-deficient included."""
    return xp.linalg.qr(Y, mode="reduced")[0]


def _cholesky_upper(xp, G):
    """Upper Cholesky factor of a Hermitian matrix, or None if it is not PD."""
    if xp.__name__.endswith("torch"):
        import torch

        L, info = torch.linalg.cholesky_ex(G)
        return None if int(info) != 0 else _conj_t(xp, L)
    try:
        L = xp.linalg.cholesky(G)
    except np.linalg.LinAlgError:
        return None
    if not bool(xp.all(xp.isfinite(L))):
        return None
    return _conj_t(xp, L)


def solve_triangular(xp, R, B, *, transpose: bool = False):
    """R^{-1} B (or R^{-T} B) for an upper triangular R, in R's own library."""
    if xp.__name__.endswith("torch"):
        import torch

        if transpose:
            return torch.linalg.solve_triangular(R.mT, B, upper=False)
        return torch.linalg.solve_triangular(R, B, upper=True)
    if xp.__name__.endswith("numpy"):
        from scipy.linalg import solve_triangular as solve

        return solve(R, B, trans="T" if transpose else "N", lower=False, check_finite=False)
    return xp.linalg.solve(R.mT if transpose else R, B)


def triangular_inverse(xp, R):
    """R^{-1} of a small upper-triangular R.

    A triangular solve needs a sixth of the flops of a general inverse, which
    matters once the block is a few hundred columns wide (the rank of a
    weight matrix): 20% off randomized SVD at rank 192 of a 384 x 384 torch
    matrix. NumPy keeps its general inverse: SciPy's triangular solve would
    run on the other OpenBLAS inside the hot loop (see the module notes).
    """
    if xp.__name__.endswith("numpy"):
        return xp.linalg.inv(R)
    return solve_triangular(xp, R, xp.eye(R.shape[0], dtype=R.dtype, device=device_of(R)))


def _cholqr_pass(xp, Y, min_diag_ratio: float):
    """One Cholesky-QR pass, Y = Q R; None when Y is too ill-conditioned for it.

    Y R^{-1} is formed as a product with the inverse of the small triangle,
    which keeps the work in one fast GEMM and in the input's own library.
    """
    # Y^H Y overflows for entries beyond ~1e154: the Gram matrix is then not
    # finite, Cholesky is refused and the caller falls back to Householder QR,
    # so NumPy's overflow warning would only be noise.
    with np.errstate(over="ignore", invalid="ignore"):
        R = _cholesky_upper(xp, _conj_t(xp, Y) @ Y)
    if R is None:
        return None
    d = xp.abs(xp.linalg.diagonal(R))
    if not float(xp.min(d)) > min_diag_ratio * float(xp.max(d)):
        return None
    return Y @ triangular_inverse(xp, R), R


def qr(xp, Y):
    """Thin QR of a tall block, Y = Q R with Q orthonormal to working precision.

    Cholesky-QR twice (CholQR2, Fukaya et al. 2014) when Y is well enough
    conditioned for it, several times faster than Householder on tall-skinny
    blocks; Householder QR otherwise (rank-deficient or ill-conditioned Y).
    """
    eps = finfo_eps(xp, Y.dtype)
    # CholQR2 is orthogonal to O(eps) while cond(Y) stays well below eps^-1/2;
    # the ratio of R's diagonal is a cheap lower bound on that condition.
    first = _cholqr_pass(xp, Y, min_diag_ratio=100 * eps**0.5)
    second = first and _cholqr_pass(xp, first[0], min_diag_ratio=0.5)
    if second:
        return second[0], second[1] @ first[1]
    return xp.linalg.qr(Y, mode="reduced")


def orthonormalize(xp, Y):
    """Orthonormal basis of range(Y), to working precision (see :func:`qr`)."""
    return qr(xp, Y)[0]


def _lu_lower(xp, Y):
    """P L from Y = P L U; spans range(Y) and is well conditioned."""
    if xp.__name__.endswith("torch"):
        import torch

        # torch.linalg.lu returns P as a dense m x m matrix; apply the row
        # swaps of the LAPACK pivots to the rows of L instead.
        LU, pivots, _ = torch.linalg.lu_factor_ex(Y)  # a singular U is fine here
        m, k = Y.shape[0], min(Y.shape)
        L = torch.tril(LU[:, :k], -1) + torch.eye(m, k, dtype=Y.dtype, device=Y.device)
        order = np.arange(m)
        for i, p in enumerate(pivots.cpu().numpy() - 1):
            order[i], order[p] = order[p], order[i]
        PL = torch.empty_like(L)
        PL[torch.as_tensor(order, device=Y.device)] = L
        return PL
    if xp.__name__.endswith("numpy"):
        from scipy.linalg import lu

        return lu(Y, permute_l=True, check_finite=False)[0]
    return householder_qr(xp, Y)


def normalize(xp, Y, normalizer: str):
    """Cheap normaliser between power iterations: keeps range(Y), fixes scaling.

    ``"cholqr"`` and ``"auto"`` use one Cholesky-QR pass and fall back to
    Householder QR when Y is too ill-conditioned; ``"lu"`` keeps P L of a
    partially pivoted LU; ``"qr"`` is Householder; ``"none"`` only rescales
    (the unnormalised power method of [HMT2011, Alg. 4.3]).
    """
    if normalizer == "qr":
        return householder_qr(xp, Y)
    if normalizer == "lu":
        return _lu_lower(xp, Y)
    if normalizer == "none":
        scale = xp.max(xp.abs(Y))
        return Y / scale if float(scale) > 0 else Y
    once = _cholqr_pass(xp, Y, min_diag_ratio=finfo_eps(xp, Y.dtype) ** 0.5)
    return householder_qr(xp, Y) if once is None else once[0]


def small_svd(xp, B):
    """Thin SVD of a small (or tall-skinny) dense matrix."""
    return xp.linalg.svd(B, full_matrices=False)


def small_eigh(xp, T):
    """Eigendecomposition of a small Hermitian matrix (ascending)."""
    return xp.linalg.eigh((T + _conj_t(xp, T)) / 2)


def conj_transpose(xp, x):
    """x^H of a small array (no copy for real input)."""
    return _conj_t(xp, x)
