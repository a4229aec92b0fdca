"""Planted problems with known answers, for tests, benchmarks and examples.

Every generator takes ``rng`` (SPEC 7) and is reproducible from it.

- :func:`spectrum` - singular values with exponential, polynomial, S-shaped
  (sigmoid) or no decay;
- :func:`planted` - a dense matrix U diag(s) V^H with Haar-random U, V and a
  chosen spectrum, returned with the spectrum it was built from;
- :func:`low_rank` - exactly rank-r, optionally plus Gaussian noise;
- :func:`psd` - a Hermitian positive semidefinite matrix;
- :func:`sparse_random` - a sparse matrix with power-law row and column
  weights, so its spectrum decays as in real interaction data.

Examples
--------
>>> import randla
>>> p = randla.testing.planted(200, 100, decay="polynomial", rate=0.5, rng=0)
>>> p.A.shape, round(float(p.S[3]), 3)   # sigma_4 = 4^-1/2
((200, 100), 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["spectrum", "planted", "Planted", "low_rank", "psd", "sparse_random", "DECAYS"]

DECAYS = ("exponential", "polynomial", "sigmoid", "flat")


def spectrum(k: int, decay: str = "polynomial", *, rate: float | None = None) -> np.ndarray:
    """k singular values, sigma_1 = 1, descending.

    ``"exponential"``: sigma_i = rate^(i-1) (default rate 0.8);
    ``"polynomial"``: sigma_i = i^-rate (default 1; 0.5 is the slow decay
    of pretrained weights); ``"sigmoid"``: an S-shaped drop of width ``rate``
    (default k/20) around i = k/4 to a plateau of 1e-3; ``"flat"``: all 1.
    """
    if decay not in DECAYS:
        raise ValueError(f"`decay` must be one of {DECAYS}; got {decay!r}.")
    i = np.arange(1, k + 1, dtype=np.float64)
    if decay == "exponential":
        return (0.8 if rate is None else rate) ** (i - 1)
    if decay == "polynomial":
        return i ** -(1.0 if rate is None else rate)
    if decay == "sigmoid":
        width = max(k / 20, 1.0) if rate is None else rate
        s = 1.0 / (1.0 + np.exp((i - k / 4) / width)) + 1e-3
        return s / s[0]
    return np.ones(k)


def _haar(rng, n, k, dtype):
    """n x k with orthonormal columns, uniformly distributed."""
    G = rng.standard_normal((n, k))
    if np.dtype(dtype).kind == "c":
        G = G + 1j * rng.standard_normal((n, k))
    Q, R = np.linalg.qr(G)
    return Q * np.sign(np.diagonal(R).real)[None, :]


@dataclass(frozen=True)
class Planted:
    """A planted matrix ``A`` and the singular values ``S`` it was built from.

    With ``noise > 0``, ``S`` is the spectrum of the noiseless part.
    """

    A: np.ndarray
    S: np.ndarray


def planted(
    m: int,
    n: int,
    decay: str = "polynomial",
    *,
    rate: float | None = None,
    rank: int | None = None,
    noise: float = 0.0,
    scale: float = 1.0,
    dtype=np.float64,
    rng=None,
) -> Planted:
    """A = scale U diag(s) V^H (+ noise) with a known spectrum s.

    Parameters
    ----------
    m, n : int
    decay, rate
        The spectrum, see :func:`spectrum`.
    rank : int, optional
        Keep only the first ``rank`` singular values (the rest are 0).
    noise : float, default 0
        Add noise * G / sqrt(max(m, n)), G standard Gaussian: its singular
        values are at most about 2 * noise.
    scale : float, default 1
        Multiply the whole matrix (to test tiny and huge magnitudes).
    dtype : float32, float64, complex64 or complex128
    rng : None, int, Generator, ...
    """
    rng = np.random.default_rng(rng)
    k = min(m, n)
    s = spectrum(k, decay, rate=rate)
    if rank is not None:
        s[rank:] = 0.0
    r = k if rank is None else rank
    U, V = _haar(rng, m, r, dtype), _haar(rng, n, r, dtype)
    A = (U * s[:r]) @ V.conj().T
    if noise:
        A = A + noise / np.sqrt(max(m, n)) * rng.standard_normal((m, n))
    return Planted((scale * A).astype(dtype), scale * s)


def low_rank(m: int, n: int, rank: int, *, noise: float = 0.0, dtype=np.float64, rng=None) -> np.ndarray:
    """A dense matrix of exact rank ``rank`` (singular values 1..1/rank), plus noise."""
    return planted(m, n, "polynomial", rank=rank, noise=noise, dtype=dtype, rng=rng).A


def psd(n: int, rank: int | None = None, *, decay: str = "exponential", rate: float | None = None,
        dtype=np.float64, rng=None) -> np.ndarray:
    """A Hermitian positive semidefinite n x n matrix V diag(s) V^H."""
    rng = np.random.default_rng(rng)
    s = spectrum(n, decay, rate=rate)
    if rank is not None:
        s[rank:] = 0.0
    V = _haar(rng, n, n, dtype)
    A = (V * s) @ V.conj().T
    return ((A + A.conj().T) / 2).astype(dtype)


def sparse_random(
    m: int,
    n: int,
    nnz: int,
    *,
    exponent: float = 1.0,
    dtype=np.float64,
    format: str = "csr",
    rng=None,
):
    """A sparse m x n matrix with about ``nnz`` nonzeros.

    Positions are uniform; each entry is g * (r_i c_j) with g standard
    Gaussian and row/column weights r_i = i^-exponent/2, c_j likewise (in
    random order), so a few rows and columns dominate and the spectrum
    decays as in real interaction data. ``exponent=0`` gives i.i.d. entries.
    """
    rng = np.random.default_rng(rng)
    rows = rng.integers(0, m, size=nnz)
    cols = rng.integers(0, n, size=nnz)
    row_w = rng.permutation(np.arange(1, m + 1) ** (-exponent / 2))
    col_w = rng.permutation(np.arange(1, n + 1) ** (-exponent / 2))
    vals = rng.standard_normal(nnz) * row_w[rows] * col_w[cols]
    A = sp.coo_array((vals.astype(dtype), (rows, cols)), shape=(m, n))
    return A.asformat(format)
