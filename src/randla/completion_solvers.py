"""The solvers of nuclear-norm regularised completion, (1) of :mod:`randla.completion`.

Each takes a start (factors L, R and biases) and returns the finished model,
whether it converged and the number of iterations; ``monitor`` records the
RMSE and objective of the model after every iteration (the last record is
that of the model returned), and ``monitor.converged(old, new, tol)``
applies the stopping rule (:func:`within_tol`) and records the relative
change it read. The references are those of :mod:`randla.completion`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._entries import Entries
from .backend import frobenius_norm, qr
from .operators import PlusLowRank


@dataclass
class Model:
    """Z = L R^T + mean + b_i + c_j during a fit."""

    L: np.ndarray
    R: np.ndarray
    mean: float = 0.0
    row_bias: np.ndarray | None = None
    col_bias: np.ndarray | None = None

    def values(self, entries: Entries) -> np.ndarray:
        out = entries.model_values(self.L, self.R, self.row_bias, self.col_bias)
        return out + self.mean if self.mean else out

    def factors(self):
        """L', R' with L' R'^T = L R^T + b 1^T + 1 c^T (the part that is fitted)."""
        if self.row_bias is None:
            return self.L, self.R
        ones_m, ones_n = np.ones((self.L.shape[0], 1), self.L.dtype), np.ones((self.R.shape[0], 1), self.R.dtype)
        return (np.hstack([self.L, self.row_bias[:, None], ones_m]),
                np.hstack([self.R, ones_n, self.col_bias[:, None]]))


def scaled_qr(X):
    """X = Q T for a tall X whose columns differ greatly in size; Q orthonormal or zero per column.

    The factors here are scaled by singular values, so their condition is
    that of the model's spectrum. Cholesky-QR of the columns scaled to unit
    norm depends only on the angles between them: it stays valid where
    Cholesky-QR of X would fall back to Householder QR (0.7 s instead of
    0.1 s at 10^6 x 20 in float32). Zero columns (components thresholded away) give
    zero columns of Q and zero rows of T.
    """
    norms = np.linalg.norm(X, axis=0)
    live = norms > 0
    if live.all():
        Q, T = qr(np, X / norms)
        return Q, T * norms
    Q, T = np.zeros_like(X), np.zeros((X.shape[1], X.shape[1]), X.dtype)
    if live.any():
        Q[:, live], T[np.ix_(live, live)] = qr(np, X[:, live] / norms[live])
        T[np.ix_(live, live)] *= norms[live]
    return Q, T


def thin_svd(X):
    """SVD of a tall, thin X through its QR: Q u, s, vh."""
    Q, T = scaled_qr(X)
    u, s, vh = np.linalg.svd(T)
    return Q @ u, s, vh


def svd_form(model: Model, drop_zero: bool = True):
    """U, s, Vh with U diag(s) Vh = L R^T; zero singular values dropped (all
    of them for a model shrunk to zero: rank 0)."""
    QL, TL = scaled_qr(model.L)
    QR, TR = scaled_qr(model.R)
    u, s, vh = np.linalg.svd(TL @ TR.T)
    keep = s.size
    if drop_zero:
        keep = int(np.count_nonzero(s > s[0] * np.finfo(s.dtype).eps * max(TL.shape))) if s[0] > 0 else 0
    return QL @ u[:, :keep], s[:keep], vh[:keep] @ QR.T


def centred(entries: Entries, mean: float) -> np.ndarray:
    """The entries minus the fitted mean, once per fit rather than per step."""
    return entries.values - entries.dtype.type(mean) if mean else entries.values


def squared_change(old: Model, new: Model) -> tuple[float, float]:
    """||Z_new - Z_old||_F^2 and max(||Z_old||_F^2, ||Z_new||_F^2), from k x k Gram matrices."""
    def inner(a, b):
        return float(np.sum((a[0].T @ b[0]) * (a[1].T @ b[1])))

    # In double: the change is a difference of nearly equal sums, and float32
    # Grams over 20000 rows misread changes below ~1e-3 ||Z||_F (1.1e-4 as 0).
    a, b = ([np.asarray(x, dtype=np.float64) for x in model.factors()] for model in (old, new))
    before, after = inner(a, a), inner(b, b)
    return max(before + after - 2 * inner(a, b), 0.0), max(before, after)


def within_tol(change: float, size: float, tol: float, scale: float) -> bool:
    """The stopping rule on :func:`squared_change`'s output: ||Z_new - Z_old||_F <= tol max(||Z_old||_F,
    ||Z_new||_F, tol scale).

    ``scale`` is ||P_Omega(X)||_F: a Z that shrinks towards zero stops once it
    is negligible beside the data, and a Z that stays zero has converged.
    """
    return change <= tol**2 * max(size, (tol * scale) ** 2)


def softimpute(entries, model, reg, rank, *, max_iter, tol, oversample, monitor, rng):
    """[MHT2010, Alg. 1] with a rank cap; Z = L R^T with L = U diag(s), R = V.

    Each step computes the SVD of Y = P_Omega(X - Z) + Z on the basis
    Q = orth([U, Y [V, G]]), G Gaussian: two passes over the observed
    entries. Because range(Q) contains range(Z), the soft-thresholded SVD of
    Q Q^T Y minimises the majorizer of (1) over a set holding Z, so the
    objective never increases (the argument of [MHT2010, Lemma 2]).
    """
    U, s, Vh = svd_form(model)
    V, mean = Vh.T, model.mean
    target = centred(entries, mean)
    residual = target - entries.model_values(U * s, V)
    converged, it = False, 0
    for it in range(1, max_iter + 1):
        current = Model(U * s, V, mean)
        Y = PlusLowRank(entries.sparse(residual), U * s, V.T)
        G = rng.standard_normal((V.shape[0], oversample)).astype(entries.dtype, copy=False)
        Q, _ = qr(np, np.hstack([U, Y.matmat(np.hstack([V, G]))]))
        W = Y.rmatmat(Q)
        QW, T = qr(np, W)
        u, sigma, vh = np.linalg.svd(T.T)
        sigma = np.maximum(sigma[:rank] - reg, 0.0)
        keep = max(int(np.count_nonzero(sigma)), 1)
        U, s, V = Q @ u[:, :keep], sigma[:keep], QW @ vh[:keep].T
        new = Model(U * s, V, mean)
        residual = target - entries.model_values(U * s, V)  # the record's, and the next step's
        monitor.record(new, residual, reg * float(np.sum(s)))
        if monitor.converged(current, new, tol):
            converged = True
            break
    return Model(U * s, V, mean), converged, it


def _warm(model: Model, rank: int, reg: float, rng):
    """A start U, s, V for the alternating methods from any model, every component alive.

    Under alternating updates a component of size s grows or shrinks by about
    sigma / reg per step, so one shrunk to (near) zero by a larger ``reg``
    earlier on a path would take many steps to come back, and a zero one
    never does. Components below reg / 100 are revived at size ``reg`` (a
    zero one in a random direction); the first step then sizes them.
    """
    U, s, Vh = svd_form(model, drop_zero=False)
    U, s, V = U[:, :rank], s[:rank], Vh[:rank].T
    floor = reg if reg > 0 else (s[0] if s.size and s[0] > 0 else 1.0) * 1e-3
    dead = s <= (s[0] if s.size else 0.0) * np.finfo(s.dtype).eps * 10
    s = np.where(s < floor / 100, floor, s)
    fresh = rank - int(np.count_nonzero(~dead))
    if fresh:
        live = ~dead
        G = rng.standard_normal((U.shape[0], fresh)).astype(U.dtype, copy=False)
        G -= U[:, live] @ (U[:, live].T @ G)
        H = rng.standard_normal((V.shape[0], fresh)).astype(V.dtype, copy=False)
        H -= V[:, live] @ (V[:, live].T @ H)
        U = np.hstack([U[:, live], qr(np, G)[0]])
        V = np.hstack([V[:, live], qr(np, H)[0]])
        s = s[live]
    s = np.concatenate([s, np.full(fresh, floor, s.dtype)]).astype(U.dtype)
    return U, s, V


def softimpute_als(entries, model, reg, rank, *, max_iter, tol, monitor, rng):
    """[HMLZ2015, Alg. 3.1]: A = U D, B = V D, each half-step a ridge update of one factor.

    With X* = P_Omega(X - A B^T) + A B^T, the B-step is
    B^T = (D^2 + reg I)^-1 D U^T X*, followed by the SVD of B D to keep U, V
    orthonormal; the A-step mirrors it. The objective (1) in factored form
    decreases monotonically [HMLZ2015, Thm. 1]. A final step on X* V
    soft-thresholds the singular values [HMLZ2015, Alg. 3.1, step 4].
    """
    U, s, V = _warm(model, rank, reg, rng)
    d, mean = np.sqrt(s), model.mean
    target = centred(entries, mean)
    residual = target - entries.model_values(U * d**2, V)
    converged, it = False, 0

    def ridge(d):
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(d > 0, d / (d**2 + reg), 0.0)

    for it in range(1, max_iter + 1):
        current = Model(U * d**2, V, mean)
        B = (entries.sparse(residual).T @ U + V * d**2) * ridge(d)
        V, d2, rot = thin_svd(B * d)
        U, d = U @ rot.T, np.sqrt(d2)
        residual = target - entries.model_values(U * d**2, V)
        A = (entries.sparse(residual) @ V + U * d**2) * ridge(d)
        U, d2, rot = thin_svd(A * d)
        V, d = V @ rot.T, np.sqrt(d2)
        residual = target - entries.model_values(U * d**2, V)  # the record's, and the next step's
        if monitor.converged(current, Model(U * d**2, V, mean), tol):
            converged = True
            break
        if it < max_iter:  # the last step's record is that of the thresholded model returned
            monitor.record(Model(U * d**2, V, mean), residual, reg * float(np.sum(d**2)))
    U, sigma, rot = thin_svd(entries.sparse(residual) @ V + U * d**2)
    V = V @ rot.T
    sigma = np.maximum(sigma - reg, 0.0)
    final = Model(U * sigma, V, mean)
    monitor.record(final, target - entries.model_values(U * sigma, V), reg * float(np.sum(sigma)))
    return final, converged, it


def _cg_rows(entries, target, X, fixed, reg, steps, transpose):
    """A few CG steps on every row's ridge problem at once, warm-started at X.

    Row i of X solves (F_i^T F_i + reg I) x_i = F_i^T t_i, where F_i holds the
    rows of ``fixed`` at row i's observed entries (columns when
    ``transpose``). The m problems are independent, so each gets its own
    step lengths; one step is one pass over the entries.

    A row stops at breakdown, when p^T H_i p is at the rounding level of
    H_i (eps ||p||^2 tr H_i): with reg = 0 and fewer entries than the rank,
    H_i is singular, and a step along its rounded null space would be
    arbitrarily long.
    """
    # In units of the data: p^T H p is of the fourth power of their scale, which
    # leaves the float range for entries far from 1 (1e-80, 1e80).
    unit_fixed = frobenius_norm(np, fixed) / math.sqrt(fixed.size) or 1.0
    # A reg that dwarfs the fixed factor (shrinking the model to 0) sets the unit instead: reg / unit_fixed^2
    # would overflow, and a ridge term 1/eps times the rest leaves H_i = reg I to rounding anyway.
    unit_fixed = max(unit_fixed, math.sqrt(reg * np.finfo(fixed.dtype).eps))
    unit_target = frobenius_norm(np, target) / math.sqrt(target.size) or 1.0
    fixed, target, reg = fixed / unit_fixed, target / unit_target, reg / unit_fixed**2
    X = X * (unit_fixed / unit_target)

    def model(P):
        return entries.model_values(fixed, P) if transpose else entries.model_values(P, fixed)

    def adjoint(values, block=fixed):
        S = entries.sparse(values)
        return S.T @ block if transpose else S @ block

    k = fixed.shape[1]
    # tr H_i: the squared lengths of the rows of ``fixed`` at row i's entries, plus k reg.
    trace = adjoint(np.ones(entries.size, entries.dtype), np.einsum("ij,ij->i", fixed, fixed)) + reg * k
    floor = 10 * k * np.finfo(X.dtype).eps * trace
    live = np.ones(X.shape[0], dtype=bool)
    res = adjoint(target - model(X)) - reg * X
    P, rr = res.copy(), np.einsum("ij,ij->i", res, res)
    for _ in range(steps):
        HP = adjoint(model(P)) + reg * P
        pHp = np.einsum("ij,ij->i", P, HP)
        live &= pHp > floor * np.einsum("ij,ij->i", P, P)
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = np.where(live, rr / pHp, 0.0)
        X = X + alpha[:, None] * P
        res = res - alpha[:, None] * HP
        rr_new = np.einsum("ij,ij->i", res, res)
        with np.errstate(divide="ignore", invalid="ignore"):
            beta = np.where(rr > 0, rr_new / rr, 0.0)
        P, rr = res + beta[:, None] * P, rr_new
    return X * (unit_target / unit_fixed)


def _drop_negligible(model: Model, tol: float, scale: float):
    """L, R of ``model`` with the trailing components of L R^T zeroed that together change Z by at most ``tol``.

    Alternating ridge shrinks a component that the optimum does not use by
    a constant factor per step but never to exactly 0, so without this the
    rank reported would always be the cap. Dropping the smallest singular
    values s_k, s_k+1, ... of L R^T changes Z by ||(s_k, s_k+1, ...)||_2,
    and they are dropped only where that is at most tol max(||Z||_F, tol
    ``scale``), ``scale`` = ||P_Omega(X)||_F: a change no larger than the
    step that :func:`within_tol` accepts as converged, so the returned model
    is as settled, by the stopping rule's own measure, as the last iterate,
    and stopping at ``tol`` still bounds what it bounded. A model shrunk to
    nothing beside the data (a reg above sigma_1) thus comes out as zero,
    rank 0, as the soft-thresholding solvers return it. The zeroed columns
    keep the shapes of L and R (a warm start revives them).
    """
    U, s, Vh = svd_form(Model(model.L, model.R), drop_zero=False)
    _, size = squared_change(model, model)  # ||Z||_F^2, biases included
    tail = np.sqrt(np.cumsum((s.astype(np.float64) ** 2)[::-1])[::-1])  # tail[k] = ||s_k..||_2
    allowed = tol * math.sqrt(max(size, (tol * scale) ** 2))
    keep = int(np.count_nonzero(tail > allowed))  # tail decreases: components 0..keep-1 stay
    if keep == np.count_nonzero(s):
        return model.L, model.R
    root = np.sqrt(np.where(np.arange(s.size) < keep, s, 0.0)).astype(model.L.dtype)
    return U * root, Vh.T * root


def altmin(entries, model, reg, rank, *, max_iter, tol, cg_steps, biases, monitor, rng):
    """Alternating ridge regression on the observed entries [JNS2013, Alg. 1; GSYZ2023].

    Row step: for fixed R (and column biases), each row's factor (and bias)
    solves a ridge problem on that row's entries; the column step mirrors it.
    Biases ride along as a column of ones in the fixed factor.
    """
    m, n = entries.shape
    U, s, V = _warm(model, rank, reg, rng)
    L, R = U * np.sqrt(s), V * np.sqrt(s)
    b = np.zeros(m, dtype=entries.dtype) if biases else None
    c = np.zeros(n, dtype=entries.dtype) if biases else None
    mean = model.mean
    if biases and model.row_bias is not None:
        b, c = model.row_bias.copy(), model.col_bias.copy()
    ones_m, ones_n = np.ones((m, 1), entries.dtype), np.ones((n, 1), entries.dtype)
    target = centred(entries, mean)
    converged, it = False, 0

    def penalty(L, R):
        total = np.sum(L**2) + np.sum(R**2) + (np.sum(b**2) + np.sum(c**2) if biases else 0.0)
        return 0.5 * reg * float(total)

    for it in range(1, max_iter + 1):
        current = Model(L, R, mean, b, c)
        if biases:
            X = _cg_rows(entries, target - c.take(entries.cols), np.hstack([L, b[:, None]]),
                         np.hstack([R, ones_n]), reg, cg_steps, transpose=False)
            L, b = X[:, :-1], X[:, -1].copy()
            X = _cg_rows(entries, target - b.take(entries.rows), np.hstack([R, c[:, None]]),
                         np.hstack([L, ones_m]), reg, cg_steps, transpose=True)
            R, c = X[:, :-1], X[:, -1].copy()
        else:
            L = _cg_rows(entries, target, L, R, reg, cg_steps, transpose=False)
            R = _cg_rows(entries, target, R, L, reg, cg_steps, transpose=True)
        if monitor.converged(current, Model(L, R, mean, b, c), tol):
            converged = True
            break
        if it < max_iter:  # the last step's record is that of the truncated model returned
            new = Model(L, R, mean, b, c)
            monitor.record(new, entries.values - new.values(entries), penalty(L, R))
    L, R = _drop_negligible(Model(L, R, mean, b, c), tol, float(np.linalg.norm(entries.values)))
    final = Model(L, R, mean, b, c)
    monitor.record(final, entries.values - final.values(entries), penalty(L, R))
    return final, converged, it
