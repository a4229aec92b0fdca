"""Variational Bayesian matrix factorisation: completion with nothing to tune.

The observed entries are modelled as X_ij = u_i^T v_j + e_ij with noise
e_ij ~ N(0, noise_var) and Gaussian priors u_i ~ N(0, diag(row_var)),
v_j ~ N(0, diag(col_var)). The posterior is approximated by independent
Gaussians q(u_i) = N(mu_i, S_i), q(v_j) = N(nu_j, T_j) with full k x k
covariances, and the noise and prior variances are fitted to the data by
maximising the evidence lower bound (Lim & Teh 2007; Nakajima & Sugiyama
2011, who analyse the automatic pruning of unneeded components).

Why it predicts better than problem (1) on recommendation data: a row with
few entries gets its factor shrunk by its own posterior, with a separate
prior scale per component, where the nuclear norm shrinks every singular
value by one ``reg`` that must serve rows with 2 entries and rows with 2000.
The fit is a coordinate ascent on the bound, so it needs no path over ``reg``.

Each half-step needs, per row, the k x k sum of E[v_j v_j^T] over its
entries: one product of the sparse pattern with the other side's packed
second moments, k (k + 1) / 2 columns wide. An iteration thus costs
O(|Omega| k^2 + (m + n) k^3), k times an alternating least-squares step, and
the moments take (m + n) k (k + 1) / 2 float32 numbers (0.9 GB at
m + n = 1.1 * 10^6, k = 20): the method is meant for the ranks of
recommendation models, tens rather than hundreds. Rows are processed in
chunks, so no m x k x k array is ever formed.

References: Y. J. Lim, Y. W. Teh, "Variational Bayesian approach to movie
rating prediction", KDD Cup and Workshop (2007); S. Nakajima, M. Sugiyama,
"Theoretical analysis of Bayesian matrix factorization", JMLR 12 (2011).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .backend import frobenius_norm

__all__ = ["VariationalFit", "variational_factorization"]

# Elements of the k x k blocks handled per chunk: 8 MiB of float64 per array,
# below the size at which every allocation is a fresh mapping of the memory.
_CHUNK_ELEMENTS = 1 << 20
_WORKERS = min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8)
# Prior variances are kept above this fraction of the largest.
_VAR_FLOOR = 1e-12


@dataclass
class VariationalFit:
    """Posterior means L (m, k), R (n, k) with Z = L R^T, and the fitted variances."""

    L: np.ndarray
    R: np.ndarray
    noise_var: float
    row_var: np.ndarray
    col_var: np.ndarray
    converged: bool
    n_iter: int


class _Packing:
    """Symmetric k x k blocks stored as their k (k + 1) / 2 upper-triangle entries."""

    def __init__(self, k: int):
        self.k = k
        self.i, self.j = np.triu_indices(k)

    def outer(self, means):
        """Packed mean mean^T of each row of ``means``."""
        return means[:, self.i] * means[:, self.j]

    def pack(self, blocks):
        return blocks[:, self.i, self.j]

    def unpack(self, packed):
        out = np.empty((packed.shape[0], self.k, self.k))
        out[:, self.i, self.j] = packed
        out[:, self.j, self.i] = packed
        return out


def _posteriors(pattern, data, other_means, other_moments, prior_var, noise_var, packing):
    """One side's Gaussian posteriors given the other side's; the statistics the rest needs.

    Row i (of ``pattern``, the 0/1 matrix of observed positions, and
    ``data``, the observed values) has precision diag(1 / prior_var) +
    sum_j E[v_j v_j^T] / noise_var over its entries: ``pattern @
    other_moments``, the other side's packed second moments. Returns the
    means, the packed second moments E[u_i u_i^T] (float32: they only enter
    sums), the per-component sums of E[u_ik^2], and the sum over entries of
    E[(X_ij - u_i^T v_j)^2] minus sum X_ij^2.
    """
    rows, k = pattern.shape[0], packing.k
    means = np.empty((rows, k))
    moments = np.empty((rows, packing.i.size), dtype=np.float32)

    def chunk(start, stop):  # writes its own rows of means and moments
        gram = packing.unpack(pattern[start:stop] @ other_moments)
        precision = gram / noise_var
        precision[:, np.arange(k), np.arange(k)] += 1.0 / prior_var
        cov = np.linalg.inv(precision)
        rhs = np.asarray(data[start:stop] @ other_means)
        mean = np.einsum("ijk,ik->ij", cov, rhs) / noise_var
        cov += mean[:, :, None] * mean[:, None, :]  # now E[u u^T]
        means[start:stop] = mean
        moments[start:stop] = packing.pack(cov)
        return np.einsum("ijj->j", cov), float(np.sum(cov * gram)) - 2.0 * float(np.sum(mean * rhs))

    step = max(1, _CHUNK_ELEMENTS // (k * k))
    bounds = [(start, min(start + step, rows)) for start in range(0, rows, step)]
    # SciPy's sparse products and NumPy's batched inverses release the GIL.
    with ThreadPoolExecutor(_WORKERS) as pool:
        parts = list(pool.map(lambda b: chunk(*b), bounds))
    second = np.sum([p[0] for p in parts], axis=0) if parts else np.zeros(k)
    return means, moments, second, sum(p[1] for p in parts)


def _floored(var):
    """Prior variances kept positive: a pruned component stays a finite, negligible one."""
    top = float(var.max(initial=0.0))
    return np.maximum(var, _VAR_FLOOR * top if top > 0 else 1.0)


def _balance(row_var, col_var):
    """Per-component c with (u_k, v_k) -> (c u_k, v_k / c) equalising the two prior variances.

    The model is unchanged by this rescaling (the priors scale with it); it
    only keeps the two factors of similar size.
    """
    return (col_var / row_var) ** 0.25


def _scaled_start(entries, L, R):
    """L, R rescaled to fit the entries best (one factor) and balanced per component.

    The start's scale decides how much its first row step trusts the data
    over the prior; a start from the SVD of the zero-filled matrix is too
    small by about the sampling rate, and the result must not depend on the
    units of the entries.
    """
    z = entries.model_values(L, R).astype(np.float64)
    zz = float(z @ z)
    scale = float(entries.values @ z) / zz if zz > 0 else 0.0
    mean_sq_l, mean_sq_r = np.mean(L**2, axis=0), np.mean(R**2, axis=0)
    live = (mean_sq_l > 0) & (mean_sq_r > 0)
    d = np.where(live, _balance(np.where(live, mean_sq_l, 1.0), np.where(live, mean_sq_r, 1.0)), 1.0)
    root = np.sqrt(scale) if scale > 0 else 1.0
    return L * (root * d), R * (root / d)


def variational_factorization(entries, L, R, *, max_iter, converged_test, record) -> VariationalFit:
    """Coordinate ascent on the evidence lower bound from the means L, R (any scale).

    ``entries`` are the observed values (already centred), ``converged_test(
    (L, R), (L_new, R_new))`` decides when to stop and ``record(L, R)`` is
    called with the means after each iteration (last with those returned).
    """
    m, n = entries.shape
    k = L.shape[1]
    packing = _Packing(k)
    values = entries.values.astype(np.float64)
    # In units of the entries' root mean square: the float32 moments then
    # neither overflow nor underflow, whatever the units of the data.
    unit = frobenius_norm(np, values) / np.sqrt(entries.size) or 1.0
    root = np.sqrt(unit)
    values = values / unit
    # float32 like the moments it multiplies: SciPy would otherwise upcast a copy of them per product.
    pattern = entries.sparse(np.ones(entries.size, dtype=np.float32))
    data = entries.sparse(values)
    pattern_t, data_t = pattern.T.tocsr(), data.T.tocsr()
    total_sq = float(values @ values)

    mu, nu = (x / root for x in _scaled_start(entries, L.astype(np.float64), R.astype(np.float64)))
    # The residual is found to the rounding of the float32 moments, eps32 times
    # the mean square: a smaller noise variance is not resolved, and on exact
    # entries it would fall towards 0 until gram / noise_var overflows.
    noise_floor = max(float(np.finfo(np.float32).eps) * total_sq / entries.size, np.finfo(np.float64).tiny)
    noise_var = max(total_sq / entries.size, noise_floor)
    # Broad priors to start (each component alone could explain all the
    # variance): starting narrow prunes components before the data are heard.
    row_var = col_var = np.full(k, np.sqrt(noise_var))
    col_moments = packing.outer(nu).astype(np.float32)  # a point estimate to start: T_j = 0
    converged, it = False, 0
    for it in range(1, max_iter + 1):
        before = (mu, nu)
        mu, row_moments, row_second, residual = _posteriors(
            pattern, data, nu, col_moments, row_var, noise_var, packing)
        row_var = _floored(row_second / m)
        noise_var = max((total_sq + residual) / entries.size, noise_floor)
        nu, col_moments, col_second, _ = _posteriors(
            pattern_t, data_t, mu, row_moments, col_var, noise_var, packing)
        col_var = _floored(col_second / n)
        c = _balance(row_var, col_var)
        mu, nu = mu * c, nu / c
        row_var, col_var = row_var * c**2, col_var / c**2
        col_moments /= packing.outer(c[None, :])
        record(mu * root, nu * root)
        if converged_test(tuple(x * root for x in before), (mu * root, nu * root)):
            converged = True
            break
    dtype = entries.dtype
    return VariationalFit((mu * root).astype(dtype), (nu * root).astype(dtype), float(noise_var) * unit**2,
                          row_var * unit, col_var * unit, converged, it)
