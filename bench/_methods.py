"""The methods compared, each as a call plus a way to read its answer.

Every method is called with the same rank k and sketch width l = k + 10, and
seeded, so repeated calls compute the same thing. ``library`` says whose bare
products a method's time is divided by (NumPy/SciPy products for the NumPy
methods, torch products for the torch ones): a method is judged against the
products it could not avoid in its own library.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch
from sklearn.utils.extmath import randomized_svd

import randla

try:
    import fbpca
except Exception as exc:  # reported as the method's failure
    fbpca = None
    FBPCA_IMPORT_ERROR = f"{type(exc).__name__}: {exc}"
else:
    FBPCA_IMPORT_ERROR = None

# torch marks sparse CSR support as beta; the warning is noise in the log.
warnings.filterwarnings("ignore", message=".*[Ss]parse CSR tensor support is in beta.*")


FROM_RESULT = "from result"  # randla reports its number of power iterations itself


@dataclass
class Method:
    """One contender on one matrix.

    ``power_iters`` is the number of passes of A A^H it makes (None when
    the method is not a power iteration: exact SVD, ARPACK); randla reports
    its own count, read from the result. ``run_seed(s)`` computes the answer
    from seed s (timed with s = 0); ``factors`` turns the raw result into
    NumPy (U, S, Vh) of rank k. ``randomized``: the answer depends on the seed.
    """

    name: str
    library: str
    power_iters: int | str | None
    run_seed: Callable[[int], object]
    factors: Callable[[object], tuple]
    repeats: int | None = None  # None: the suite's --repeats
    warmup: bool = True
    randomized: bool = True
    failure: str | None = None  # known before running (an import error)

    def run(self):
        return self.run_seed(0)


def _cut(U, S, Vh, k):
    return np.asarray(U[:, :k]), np.asarray(S[:k]), np.asarray(Vh[:k, :])


def _torch_cut(U, S, Vh, k):
    return _cut(U.numpy(), S.numpy(), Vh.numpy(), k)


def sklearn_auto_iters(k: int, shape) -> int:
    """scikit-learn's documented rule for ``n_iter="auto"``."""
    return 7 if k < 0.1 * min(shape) else 4


def torch_tensor(A):
    """The same matrix as a torch tensor: a view for dense, COO for sparse.

    COO is the layout torch.svd_lowrank treats as sparse (its CSR support
    goes through the generic matmul path).
    """
    if sp.issparse(A):
        coo = A.tocoo()
        idx = torch.from_numpy(np.vstack([coo.row, coo.col]).astype(np.int64))
        return torch.sparse_coo_tensor(idx, torch.from_numpy(coo.data), size=coo.shape,
                                       check_invariants=True).coalesce()
    return torch.from_numpy(A)


def randla_method(name, A, k, *, library="numpy", **options) -> Method:
    def run(seed):
        return randla.svd(A, k, rng=seed, **options)

    def factors(r):
        U, S, Vh = r
        if library == "torch":
            return _torch_cut(U, S, Vh, k)
        return _cut(U, S, Vh, k)

    return Method(name, library, FROM_RESULT, run, factors)


def sklearn_method(name, A, k, l, n_iter) -> Method:
    iters = sklearn_auto_iters(k, A.shape) if n_iter == "auto" else n_iter

    def run(seed):
        return randomized_svd(A, k, n_oversamples=l - k, n_iter=n_iter, random_state=seed)

    return Method(name, "numpy", iters, run, lambda r: _cut(*r, k))


def torch_lowrank_method(name, At, k, l, niter) -> Method:
    def run(seed):
        torch.manual_seed(seed)  # svd_lowrank draws from torch's global generator only
        return torch.svd_lowrank(At, q=l, niter=niter)

    return Method(name, "torch", niter, run, lambda r: _torch_cut(r[0], r[1], r[2].mT, k))


def fbpca_method(name, A, k, l, n_iter) -> Method:
    def run(seed):
        np.random.seed(seed)  # fbpca draws from NumPy's global generator only
        return fbpca.pca(A, k, raw=True, n_iter=n_iter, l=l)

    m = Method(name, "numpy", n_iter, run, lambda r: _cut(*r, k))
    if fbpca is None:
        m.failure = f"not importable: {FBPCA_IMPORT_ERROR}"
    return m


def svds_method(name, A, k, repeats=2) -> Method:
    def run(seed):
        return sla.svds(A, k, random_state=seed)

    def factors(r):
        U, S, Vh = r
        order = np.argsort(S)[::-1]  # ARPACK returns ascending
        return _cut(U[:, order], S[order], Vh[order, :], k)

    # ARPACK's start vector changes the iterations, not the converged answer.
    return Method(name, "numpy", None, run, factors, repeats=repeats, warmup=False, randomized=False)


def exact_method(name, A, k) -> Method:
    def run(seed):
        return np.linalg.svd(A, full_matrices=False)

    return Method(name, "numpy", None, run, lambda r: _cut(*r, k), repeats=1, warmup=False, randomized=False)


# -- bare products ----------------------------------------------------------


def bare_products(A, At, l, rng) -> dict[str, Callable[[], object]]:
    """The two products a power iteration must make, per library.

    A @ X with X (n, l) and A^T @ Y with Y (m, l), random, in A's dtype:
    NumPy/SciPy on A itself, torch on the same memory (or its COO copy),
    written the way torch.svd_lowrank writes them.
    """
    m, n = A.shape
    dtype = A.dtype
    X = rng.standard_normal((n, l)).astype(dtype)
    Y = rng.standard_normal((m, l)).astype(dtype)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    if At.layout == torch.sparse_coo:
        torch_ax = lambda: torch.sparse.mm(At, Xt)  # noqa: E731
        torch_aty = lambda: torch.sparse.mm(At.mH, Yt)  # noqa: E731
    else:
        torch_ax = lambda: At @ Xt  # noqa: E731
        torch_aty = lambda: At.mH @ Yt  # noqa: E731
    return {
        "numpy A@X": lambda: A @ X,
        "numpy A^T@Y": lambda: A.T @ Y,
        "torch A@X": torch_ax,
        "torch A^T@Y": torch_aty,
    }


def bare(tx: float | None, tty: float | None, power_iters: int | None) -> float | None:
    """(q + 1) (t[A X] + t[A^T Y]): the products a q-pass randomized SVD must make."""
    if power_iters is None or tx is None or tty is None:
        return None
    return (power_iters + 1) * (tx + tty)
