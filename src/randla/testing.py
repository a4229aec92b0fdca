"""Planted problems with known answers, for tests, benchmarks and examples.

Every random generator takes ``rng`` (SPEC 7) and is reproducible from it;
:func:`spectrum` and :func:`docstring_sentences` are deterministic.

- :func:`spectrum` - singular values with exponential, polynomial, S-shaped
  (sigmoid) or no decay;
- :func:`planted` - a dense matrix U diag(s) V^H with Haar-random U, V and a
  chosen spectrum, returned with the spectrum it was built from;
- :func:`low_rank` - exactly rank-r, optionally plus Gaussian noise;
- :func:`psd` - a Hermitian positive semidefinite matrix;
- :func:`sparse_random` - a sparse matrix with power-law row and column
  weights, so its spectrum decays as in real interaction data;
- :func:`kernel_regression` - points and noisy targets of a smooth function,
  for kernel ridge regression;
- :func:`clustered` - points in clusters of very unequal sizes;
- :func:`ratings` - observed entries of a noisy low-rank matrix with
  power-law user and item activity, for matrix completion;
- :func:`docstring_sentences` - real sentences, offline, for calibrating
  and evaluating language models.

Examples
--------
>>> import randla
>>> p = randla.testing.planted(200, 100, decay="polynomial", rate=0.5, rng=0)
>>> p.A.shape, round(float(p.S[3]), 3)   # sigma_4 = 4^-1/2
((200, 100), 0.5)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ._validate import check_int

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


def _check_dtype(dtype):
    """A floating or complex dtype: an integer one would round A off its planted spectrum."""
    if np.dtype(dtype).kind not in "fc":
        raise ValueError(
            f"`dtype` must be a floating or complex dtype (float32, float64, complex64, "
            f"complex128); got {np.dtype(dtype)}. Cast the matrix afterwards if needed."
        )
    return dtype


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
    dtype = _check_dtype(dtype)
    if rank is not None:
        rank = check_int("rank", rank, 0, k)
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
    dtype = _check_dtype(dtype)
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


@dataclass(frozen=True)
class Regression:
    """A planted regression problem y = f(X) + noise * e; unpacks as ``X, y``.

    ``f`` holds the noiseless targets f(X) and ``noise`` the standard
    deviation of the Gaussian noise e, so the best possible root-mean-square
    prediction error on fresh samples is ``noise``. ``target(X_new)``
    evaluates f anywhere.
    """

    X: np.ndarray
    y: np.ndarray
    f: np.ndarray
    noise: float
    directions: np.ndarray
    phases: np.ndarray
    weights: np.ndarray

    def __iter__(self):
        return iter((self.X, self.y))

    def target(self, X) -> np.ndarray:
        """f(X) = sum_j weights[j] sin(X @ directions[:, j] + phases[j])."""
        return _sines(np.asarray(X), self.directions, self.phases, self.weights)


def _sines(X, U, b, w):
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    return np.sin(X @ U.astype(dtype) + b.astype(dtype)) @ w.astype(dtype)


def kernel_regression(n: int, d: int = 10, *, noise: float = 0.1, n_terms: int = 5,
                      dtype=np.float64, rng=None) -> Regression:
    """n points X ~ N(0, I_d) with targets y = f(X) + noise * N(0, 1).

    The target f(x) = sum_{j <= n_terms} w_j sin(u_j^T x + b_j) is smooth
    (analytic, with frequencies u_j ~ N(0, I_d / d), so u_j^T x has unit
    variance) with weights w_j = +-2 / sqrt(n_terms), has variance of order 1
    (about 1 on average over draws) and is learnt well by Gaussian-kernel
    ridge regression with gamma of order 1 / d. Memory is O(n d): X, y, f
    and an (n, n_terms) block, in ``dtype``.

    Examples
    --------
    >>> from randla.testing import kernel_regression
    >>> X, y = kernel_regression(1000, d=4, noise=0.1, rng=0)
    >>> X.shape, y.shape
    ((1000, 4), (1000,))
    """
    rng = np.random.default_rng(rng)
    U = rng.standard_normal((d, n_terms)) / np.sqrt(d)
    b = rng.uniform(0.0, 2 * np.pi, size=n_terms)
    w = rng.choice([-1.0, 1.0], size=n_terms) * 2.0 / np.sqrt(n_terms)
    X = rng.standard_normal((n, d), dtype=np.float32 if np.dtype(dtype) == np.float32 else np.float64)
    X = X.astype(dtype, copy=False)
    f = _sines(X, U, b, w).astype(dtype, copy=False)
    y = (f + noise * rng.standard_normal(n)).astype(dtype, copy=False)
    return Regression(X, y, f, float(noise), U, b, w)


__all__ += ["kernel_regression", "Regression"]


__all__ += ["clustered", "Clustered"]


@dataclass(frozen=True)
class Clustered:
    """Points ``X`` (n, d) and their cluster ``labels`` (n,).

    Cluster 0 is the largest; sizes decrease with the label.
    """

    X: np.ndarray
    labels: np.ndarray

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.labels)


def clustered(
    n: int,
    d: int,
    n_clusters: int,
    *,
    imbalance: float = 1000.0,
    spread: float = 0.3,
    dtype=np.float64,
    rng=None,
) -> Clustered:
    """Points in clusters of very unequal sizes: a few big ones, several tiny, far apart.

    Cluster sizes fall geometrically from the largest to the smallest, by a
    factor ``imbalance`` in all (each has at least one point). Each cluster
    is an isotropic Gaussian of standard deviation ``spread`` around its
    centre; centres are at least 10 spread apart where the space allows. The
    points come in random order.

    With an RBF kernel of bandwidth 1 (about 3 spread) the kernel matrix is
    nearly block diagonal with blocks of low numerical rank: a tiny cluster
    is captured only if a landmark lands in it. Uniform sampling spends its
    landmarks on the big clusters and misses the tiny ones; randomly pivoted
    Cholesky, which samples by residual, does not.

    Examples
    --------
    >>> import randla
    >>> c = randla.testing.clustered(1000, 2, 10, rng=0)
    >>> c.X.shape, c.sizes.tolist()
    ((1000, 2), [535, 247, 115, 54, 25, 12, 6, 3, 2, 1])
    """
    d = check_int("d", d, 1)
    if not (isinstance(n_clusters, (int, np.integer)) and 1 <= n_clusters <= n):
        raise ValueError(f"`n_clusters` must be an int in [1, n={n}]; got {n_clusters!r}.")
    if not imbalance >= 1:
        raise ValueError(f"`imbalance` (largest / smallest cluster size) must be >= 1; got {imbalance!r}.")
    if not spread > 0:
        raise ValueError(f"`spread` must be positive; got {spread!r}.")
    rng = np.random.default_rng(rng)
    weights = imbalance ** -(np.arange(n_clusters) / max(n_clusters - 1, 1))
    sizes = 1 + np.floor((n - n_clusters) * weights / weights.sum()).astype(np.int64)
    sizes[0] += n - sizes.sum()
    gap = 10.0 * spread
    scale = gap * max(1.0, n_clusters ** (1.0 / d))
    centers = np.empty((n_clusters, d))
    for j in range(n_clusters):
        best, best_gap = None, -1.0
        for _ in range(100):
            candidate = scale * rng.standard_normal(d)
            nearest = np.min(np.linalg.norm(centers[:j] - candidate, axis=1)) if j else np.inf
            if nearest > best_gap:
                best, best_gap = candidate, nearest
            if nearest >= gap:
                break
        centers[j] = best
    labels = np.repeat(np.arange(n_clusters), sizes)
    X = centers[labels] + spread * rng.standard_normal((n, d))
    order = rng.permutation(n)
    return Clustered(X[order].astype(dtype), labels[order])


__all__ += ["ratings", "Ratings"]


@dataclass(frozen=True)
class Ratings:
    """Observed entries (``rows``, ``cols``, ``values``) of a noisy low-rank matrix.

    The full matrix is ``row_factors @ col_factors.T`` plus independent
    Gaussian noise of standard deviation ``noise``, of which only the listed
    entries are seen; unpacks as ``rows, cols, values``. ``truth(rows,
    cols)`` gives the noiseless entries anywhere, and ``split`` holds out a
    random part for testing, so the best possible root-mean-square error on
    held-out entries is ``noise``.
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    shape: tuple[int, int]
    row_factors: np.ndarray
    col_factors: np.ndarray
    noise: float

    def __iter__(self):
        return iter((self.rows, self.cols, self.values))

    def __len__(self) -> int:
        return 3

    def truth(self, rows, cols) -> np.ndarray:
        """The noiseless entries at (rows, cols)."""
        rows, cols = np.asarray(rows), np.asarray(cols)
        return np.einsum("ij,ij->i", self.row_factors[rows], self.col_factors[cols])

    def split(self, fraction: float, *, rng=None) -> tuple["Ratings", "Ratings"]:
        """Train and test parts; a random ``fraction`` of the entries is held out."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"`fraction` must be in (0, 1); got {fraction!r}.")
        held = np.random.default_rng(rng).random(self.rows.size) < fraction
        return self._subset(~held), self._subset(held)

    def _subset(self, keep) -> "Ratings":
        return Ratings(self.rows[keep], self.cols[keep], self.values[keep], self.shape,
                       self.row_factors, self.col_factors, self.noise)


def _activity(size: int, exponent: float, rng) -> np.ndarray:
    """Zipf-like sampling weights, w ~ rank^-exponent, in random order."""
    weights = np.arange(1, size + 1, dtype=np.float64) ** -exponent
    return rng.permutation(weights / weights.sum())


def _sample(p, size: int, rng) -> np.ndarray:
    """``size`` indices drawn with probabilities ``p``, in random order."""
    counts = rng.multinomial(size, p)
    return rng.permutation(np.repeat(np.arange(p.size, dtype=np.int64), counts))


def _distinct(keys: np.ndarray) -> np.ndarray:
    keys = np.sort(keys)
    return keys[np.concatenate([[True], keys[1:] != keys[:-1]])]


def ratings(
    m: int,
    n: int,
    n_observed: int,
    rank: int = 10,
    *,
    noise: float = 0.5,
    decay: float = 1.0,
    row_activity: float = 0.7,
    col_activity: float = 0.8,
    dtype=np.float64,
    rng=None,
) -> Ratings:
    """A recommendation-shaped completion problem: power-law activity, low rank plus noise.

    Row i (a user) and column j (an item) are sampled with probabilities
    proportional to their Zipf-like activity weights, rank^-``row_activity``
    and rank^-``col_activity`` (0 gives uniform sampling), as in rating data
    where a few users and items have most of the ratings; each entry is
    observed at most once. The planted matrix is the product of Gaussian
    factors with component standard deviations s_k proportional to
    k^-``decay``, scaled so that its entries have unit variance; the
    observed values add Gaussian noise of standard deviation ``noise``.
    Memory is O(n_observed + (m + n) rank).

    Examples
    --------
    >>> from randla.testing import ratings
    >>> data = ratings(1000, 500, 20000, rank=5, rng=0)
    >>> rows, cols, values = data
    >>> rows.shape, data.shape, data.noise
    ((20000,), (1000, 500), 0.5)
    """
    if not (isinstance(m, (int, np.integer)) and isinstance(n, (int, np.integer)) and m >= 1 and n >= 1):
        raise ValueError(f"`m` and `n` must be positive ints; got {m!r} and {n!r}.")
    # Python ints: m * n of two NumPy int32 sizes would wrap around (65536 * 65536 to 0).
    m, n = int(m), int(n)
    if not (isinstance(n_observed, (int, np.integer)) and 1 <= n_observed <= m * n // 2):
        raise ValueError(f"`n_observed` must be an int in [1, m*n/2 = {m * n // 2}]; got {n_observed!r}.")
    if not (isinstance(rank, (int, np.integer)) and 1 <= rank <= min(m, n)):
        raise ValueError(f"`rank` must be an int in [1, {min(m, n)}]; got {rank!r}.")
    n_observed, rank = int(n_observed), int(rank)
    if not noise >= 0:
        raise ValueError(f"`noise` must be >= 0; got {noise!r}.")
    rng = np.random.default_rng(rng)
    scale = np.arange(1, rank + 1, dtype=np.float64) ** -decay
    scale /= np.sqrt(np.sum(scale**2))
    row_factors = (rng.standard_normal((m, rank)) * np.sqrt(scale)).astype(dtype)
    col_factors = (rng.standard_normal((n, rank)) * np.sqrt(scale)).astype(dtype)
    p_rows, p_cols = _activity(m, row_activity, rng), _activity(n, col_activity, rng)
    # Draw with replacement, keep distinct entries, top up the shortfall.
    keys = np.empty(0, dtype=np.int64)
    for _ in range(100):
        if keys.size >= n_observed:
            break
        short = n_observed - keys.size
        draw = int(short * 1.1) + 16
        new = _sample(p_rows, draw, rng) * n + _sample(p_cols, draw, rng)
        keys = _distinct(np.concatenate([keys, new]))
    else:
        raise ValueError(
            f"cannot place {n_observed} distinct entries with this activity skew; "
            "lower `row_activity` / `col_activity` or `n_observed`."
        )
    keys = rng.permutation(keys)[:n_observed]
    rows, cols = np.divmod(keys, n)
    data = Ratings(rows, cols, None, (int(m), int(n)), row_factors, col_factors, float(noise))
    values = np.empty(n_observed, dtype=dtype)
    for start in range(0, n_observed, 1 << 20):  # bounded temporaries
        part = slice(start, start + (1 << 20))
        values[part] = data.truth(rows[part], cols[part]) + noise * rng.standard_normal(values[part].size)
    return dataclasses.replace(data, values=values)


__all__ += ["docstring_sentences"]


def _stdlib_files():
    import sysconfig
    from pathlib import Path

    root = Path(sysconfig.get_paths()["stdlib"])
    skip = ("site-packages", "test", "tests", "idlelib", "lib2to3", "turtledemo")
    return sorted(p for p in root.rglob("*.py") if not any(part in skip for part in p.relative_to(root).parts))


def _sentences_of(text: str):
    import re

    for paragraph in re.split(r"\n\s*\n", text):
        flat = " ".join(paragraph.split())
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z])", flat):
            yield sentence


def docstring_sentences(count: int, *, held_out: bool = False, min_words: int = 6, max_words: int = 40) -> list:
    """Real English sentences from the docstrings of the Python standard library, offline.

    The standard library's sources are parsed (never imported) and their
    docstrings split into sentences. Files are divided by a hash of their
    path into two disjoint parts, so ``held_out=True`` gives sentences from
    other modules than the default part: calibrate on one, evaluate on the
    other. Sentences of prose only (no doctest, no code-like lines), in a
    fixed order, first ``count`` of them (fewer if the library has fewer).

    Examples
    --------
    >>> from randla.testing import docstring_sentences
    >>> calibration = docstring_sentences(50)
    >>> evaluation = docstring_sentences(50, held_out=True)
    >>> len(calibration), len(evaluation), set(calibration) & set(evaluation)
    (50, 50, set())
    """
    import ast
    import zlib

    count = check_int("count", count, 1)
    found, seen = [], set()
    for path in _stdlib_files():
        if zlib.crc32(path.name.encode()) % 2 != int(held_out):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)))]
        for node in nodes:
            doc = ast.get_docstring(node) or ""
            for sentence in _sentences_of(doc):
                words = sentence.split()
                prose = sentence[-1:] == "." and not any(c in sentence for c in "<>{}[]=_`|\\") and ">>>" not in sentence
                if prose and min_words <= len(words) <= max_words and sentence not in seen:
                    seen.add(sentence)
                    found.append(sentence)
                    if len(found) == count:
                        return found
    return found
