"""Matrix completion: a low-rank matrix from a few of its entries.

Given the entries X_ij observed on a set Omega, find Z of low rank with

    minimise  1/2 sum_{(i,j) in Omega} (X_ij - Z_ij)^2 + reg ||Z||_*      (1)

the nuclear-norm regularised problem of Mazumder, Hastie & Tibshirani (2010),
which recovers a low-rank matrix exactly from O(r (m + n) log(m + n)) entries
when there is no noise (Candes & Recht 2009; Recht 2011). With Z = L R^T,
||Z||_* = min (||L||_F^2 + ||R||_F^2) / 2, so (1) is also the L2-regularised
factorisation of recommender systems. Three solvers of (1)
(:mod:`randla.completion_solvers`):

- ``"softimpute"`` [MHT2010, Alg. 1]: Z <- S_reg(P_Omega(X - Z) + Z), the
  soft-thresholded SVD of a sparse-plus-low-rank operator, by one warm-started
  randomized subspace step per iteration;
- ``"softimpute_als"`` [HMLZ2015, Alg. 3.1]: alternating ridge updates of
  the two factors of the same operator, O(|Omega| k + (m + n) k^2) per step;
- ``"altmin"`` (Jain, Netrapalli & Sanghavi 2013): alternating least squares
  on the observed entries only, each row's ridge problem solved approximately
  by a few conjugate-gradient steps (Gu, Song, Yin & Zhang 2023), with
  optional row and column biases.

and ``"bayes"`` (:mod:`randla.completion_bayes`), variational Bayesian
factorisation, which replaces the one ``reg`` of (1) by a Gaussian prior per
component and a noise variance, all fitted to the data: no path to search,
and the most accurate predictions where many rows have few entries.

By default the mean of the entries is fitted first and (1) is solved for
the centred entries (``center``); ``center=False`` solves (1) as stated.

Nothing m x n is ever formed: memory is O(|Omega| + (m + n) k), and
O(|Omega| + (m + n) k^2) for ``"bayes"``.
"""

from __future__ import annotations

import math
import numbers
import os
import sys
import warnings
from dataclasses import dataclass, replace

import numpy as np

from ._entries import Entries, _as_integers, _in_range, as_entries, as_indices
from ._results import Unpackable
from ._validate import check_choice, check_int, check_rng
from .completion_bayes import variational_factorization
from .completion_solvers import Model, altmin, softimpute, softimpute_als, squared_change, svd_form, within_tol
from .svd import svd as randomized_svd

__all__ = ["complete", "CompletionResult", "FitHistory", "PathPoint", "METHODS"]

METHODS = ("softimpute_als", "softimpute", "altmin", "bayes")

# The variational fit's last iterations mostly shrink components it is
# pruning, slowly and with little effect on the predictions: on 10^6 ratings
# (10^5 x 10^4, rank 20), tol 1e-2 stops after 18 iterations and 1e-3 after
# 56, at held-out RMSE 1.1905 and 1.1893.
_BAYES_TOL = 1e-2


@dataclass(frozen=True)
class FitHistory:
    """Per-iteration record of one fit: training and validation RMSE, objective (1), relative change.

    Entry t describes the model after step t + 1, so the last entry is that
    of the model returned (after the final soft-threshold step of
    ``"softimpute_als"``, and without the negligible components that
    ``"altmin"`` drops at the end). ``validation_rmse`` is NaN where the fit
    had no held-out entries, as in the refit on all entries that ends a
    path. For ``method="bayes"`` the objective is the data term of (1)
    alone, 1/2 sum_Omega (X_ij - Z_ij)^2.
    ``relative_change`` is ||Z_new - Z||_F / max(||Z||_F, ||Z_new||_F) of
    each step, the quantity ``tol`` bounds (0 where Z stays zero).
    """

    train_rmse: np.ndarray
    validation_rmse: np.ndarray
    objective: np.ndarray
    relative_change: np.ndarray


@dataclass(frozen=True)
class PathPoint:
    """One regularisation value of a path, fitted on the training part: the rank and RMSEs of that fit's model."""

    reg: float
    rank: int
    train_rmse: float
    validation_rmse: float
    n_iter: int
    converged: bool


@dataclass(frozen=True, repr=False)
class CompletionResult(Unpackable):
    """Z = U diag(S) Vh (+ mean + row_bias[i] + col_bias[j]); unpacks as ``U, S, Vh``.

    ``history`` is the record of the final fit and ``path`` the validation
    results of every ``reg`` tried (empty for a single ``reg``). ``noise`` is
    the fitted noise standard deviation of ``method="bayes"`` (None
    otherwise), whose ``reg`` is NaN: it has a prior per component instead.
    """

    U: np.ndarray
    S: np.ndarray
    Vh: np.ndarray
    mean: float
    row_bias: np.ndarray | None
    col_bias: np.ndarray | None
    reg: float
    method: str
    converged: bool
    n_iter: int
    history: FitHistory
    path: tuple[PathPoint, ...]
    noise: float | None = None

    _unpack = ("U", "S", "Vh")

    @property
    def rank(self) -> int:
        return int(self.S.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        return self.U.shape[0], self.Vh.shape[1]

    def predict(self, rows, cols) -> np.ndarray:
        """Z at the positions (rows[t], cols[t]); O(len(rows) rank).

        The indices are checked as :func:`complete` checks them.
        """
        rows, cols = as_indices(rows, cols, self.shape)
        out = np.einsum("ij,ij->i", self.U[rows] * self.S, self.Vh.T[cols]) + self.mean
        if self.row_bias is not None:
            out += self.row_bias[rows] + self.col_bias[cols]
        return out

    def scores(self, rows) -> np.ndarray:
        """Z[rows, :], the predicted values of every column for the given rows
        (a single row index gives one row, 1-D). Checked as :meth:`predict` checks them."""
        single = np.ndim(rows) == 0
        rows = _in_range("rows", _as_integers("rows", np.atleast_1d(rows)), self.shape[0])
        out = (self.U[rows] * self.S) @ self.Vh + self.mean
        if self.row_bias is not None:
            out += self.row_bias[rows][:, None] + self.col_bias
        return out[0] if single else out

    def factors(self) -> tuple[np.ndarray, np.ndarray]:
        """(L, R) with Z = L @ R: (U diag(S), Vh), with a column of ones and
        a row of ``mean + col_bias`` added for the offsets, and ``row_bias``
        against a row of ones, where there are any."""
        m, n = self.shape
        L, R = [self.U * self.S], [self.Vh]
        column = np.full(n, self.mean) if self.col_bias is None else self.mean + self.col_bias
        if np.any(column != 0):
            L.append(np.ones((m, 1)))
            R.append(column[None, :])
        if self.row_bias is not None:
            L.append(self.row_bias[:, None])
            R.append(np.ones((1, n)))
        return np.hstack(L), np.vstack(R)

    def reconstruct(self) -> np.ndarray:
        """The dense m x n matrix Z (only for matrices that fit in memory)."""
        return self.scores(np.arange(self.shape[0]))


# ---- the record of a fit


class _Monitor:
    """Records RMSE, objective and relative change each iteration; ``scale`` = ||P_Omega(X)||_F, of the
    stopping rule."""

    def __init__(self, train: Entries, validation: Entries | None):
        self.validation = validation
        self.scale = float(np.linalg.norm(train.values))
        self.train_rmse, self.validation_rmse, self.objective, self.relative_change = [], [], [], []

    def record(self, model: Model, residual: np.ndarray, penalty: float):
        loss = float(residual @ residual)
        self.train_rmse.append(np.sqrt(loss / residual.size))
        self.objective.append(0.5 * loss + penalty)
        if self.validation is not None:
            err = self.validation.values - model.values(self.validation)
            self.validation_rmse.append(float(np.sqrt(err @ err / err.size)))
        else:
            self.validation_rmse.append(np.nan)

    def converged(self, old: Model, new: Model, tol: float) -> bool:
        """Whether the step from ``old`` to ``new`` meets the stopping rule of ``tol``; records its relative
        change."""
        change, size = squared_change(old, new)
        self.relative_change.append(math.sqrt(change / size) if size > 0 else 0.0)
        return within_tol(change, size, tol, self.scale)

    def history(self) -> FitHistory:
        return FitHistory(*(np.asarray(x, dtype=np.float64) for x in (self.train_rmse, self.validation_rmse,
                                                                      self.objective, self.relative_change)))


# ---- starts, paths and the public function


def _spectral_start(entries: Entries, rank: int, mean: float, rng) -> tuple[Model, float]:
    """The rank-``rank`` SVD of P_Omega(X - mean), the first soft-impute step from Z = 0.

    Unlike the mn/|Omega| scaling of [JNS2013, Alg. 1], it stays sensible when
    some rows and columns are observed far more often than others. Returns
    the start and sigma_1(P_Omega(X - mean)), the smallest ``reg`` for which
    Z = 0 solves (1).
    """
    values = entries.values - mean if mean else entries.values
    r = randomized_svd(entries.sparse(values), rank, power_iters=2, rng=rng)
    return Model(r.U * r.S, r.Vh.T, mean), float(r.S[0])


def _fit(method, train, start, reg, rank, options, validation, rng):
    monitor = _Monitor(train, validation)
    common = dict(max_iter=options["max_iter"], tol=options["tol"], monitor=monitor)
    if method == "softimpute":
        model, converged, n_iter = softimpute(train, start, reg, rank, oversample=options["oversample"],
                                              rng=rng, **common)
    elif method == "softimpute_als":
        model, converged, n_iter = softimpute_als(train, start, reg, rank, rng=rng, **common)
    else:
        model, converged, n_iter = altmin(train, start, reg, rank, cg_steps=options["cg_steps"],
                                          biases=options["biases"], rng=rng, **common)
    return model, converged, n_iter, monitor.history()


def _complete_bayes(train, start: Model, options, validation) -> CompletionResult:
    monitor = _Monitor(train, validation)
    centred = Entries(train.rows, train.cols, train.values - train.dtype.type(start.mean), train.shape)

    def record(L, R):
        model = Model(L, R, start.mean)
        monitor.record(model, train.values - model.values(train), 0.0)

    def converged(old, new):
        return monitor.converged(Model(*old), Model(*new), options["tol"])

    fit = variational_factorization(centred, start.L, start.R, max_iter=options["max_iter"],
                                    converged_test=converged, record=record)
    U, S, Vh = svd_form(Model(fit.L, fit.R))
    return CompletionResult(U, S, Vh, start.mean, None, None, float("nan"), "bayes", fit.converged, fit.n_iter,
                            monitor.history(), (), noise=float(np.sqrt(fit.noise_var)))


def _convergence_warning_category() -> type[Warning]:
    """scikit-learn's ``ConvergenceWarning`` where scikit-learn is installed, so that its filters catch this
    warning too; else its base class, ``UserWarning``."""
    try:
        from sklearn.exceptions import ConvergenceWarning
    except ImportError:
        return UserWarning
    return ConvergenceWarning


def _stacklevel_outside_randla() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside this package, for a warning
    issued by the function that calls this one: a user's call to :func:`complete`, or to an estimator
    that calls it."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def _warn_if_unconverged(result: CompletionResult, options) -> CompletionResult:
    """One warning for a returned fit that stopped at ``max_iter`` (not for the steps of a path)."""
    if not result.converged:
        warnings.warn(
            f"randla.complete(method={result.method!r}) stopped at max_iter={options['max_iter']} with Z still "
            f"changing by {result.history.relative_change[-1]:.2g} of its norm per step, above tol="
            f"{options['tol']:g}: the model falls short of the optimum of its problem. Raise max_iter.",
            _convergence_warning_category(), stacklevel=_stacklevel_outside_randla(),
        )
    return result


def _unit_exponent(entries: Entries, center: bool) -> int:
    """The even e with 2^e nearest the root mean square of the entries (minus their mean, with ``center``)
    where that is beyond 2^(maxexp / 4) (1e77 in float64, 4e9 in float32) or its inverse; else 0.

    The solvers run on the entries divided by 2^e: problem (1) scales with
    the entries, but their squares (the norms, Grams and objectives the
    solvers form) leave the float range near 1e154 and 1e-154. A power of 4
    makes the division exact and keeps square roots of the scaled values
    exact too, so a fit of 4^j X is then 4^j times that of X. The size of
    entries that are all equal to their mean is their own.
    """
    values = entries.values
    peak = max(float(values.max()), -float(values.min())) if values.size else 0.0
    if peak == 0:
        return 0
    exponent = math.frexp(peak)[1]
    # In (-1, 1), one copy: neither the mean nor the squares leave the float range.
    unit = np.ldexp(values, -exponent, dtype=np.float64)
    if center:
        unit -= np.mean(unit)
    rms = float(np.linalg.norm(unit)) / math.sqrt(unit.size) or 0.5  # 0.5: the peak, in these units
    e = 2 * round((math.log2(rms) + exponent) / 2)
    # Entries whose squares and sums of squares stay well inside the float range are fitted as they
    # are, so that the biases' penalty keeps its units (it does not scale with the entries).
    return e if abs(e) > np.finfo(values.dtype).maxexp // 4 else 0


def _scaled(x, e: int):
    """x times 2^e, exactly (barring the float range, where it is 0 or inf): an array, a float or None."""
    if not e or x is None:
        return x
    with np.errstate(over="ignore", under="ignore"):
        out = np.ldexp(x, e)
    return out if isinstance(x, np.ndarray) else float(out)


def _in_units(result: CompletionResult, e: int) -> CompletionResult:
    """A result fitted to the entries times 2^-e, in the units of the entries (its ``reg`` and ``path`` are
    :func:`complete`'s to set)."""
    if not e:
        return result
    h = result.history
    history = FitHistory(_scaled(h.train_rmse, e), _scaled(h.validation_rmse, e), _scaled(h.objective, 2 * e),
                         h.relative_change)
    return replace(result, S=_scaled(result.S, e), mean=_scaled(result.mean, e),
                   row_bias=_scaled(result.row_bias, e), col_bias=_scaled(result.col_bias, e),
                   noise=_scaled(result.noise, e), history=history)


def _rmse(entries: Entries, model: Model) -> float:
    err = entries.values - model.values(entries)
    return float(np.sqrt(err @ err / err.size))


def _check_reg(reg):
    if reg is None:
        return None
    values = [reg] if isinstance(reg, numbers.Real) else list(reg) if np.iterable(reg) else None
    if not values or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v) and v >= 0
                             for v in values):
        raise ValueError(f"`reg` must be None, a number >= 0 or a non-empty sequence of them; got {reg!r}.")
    return [float(v) for v in values]


def _check_validation(validation, m, n, dtype):
    if validation is None:
        return None
    if isinstance(validation, numbers.Real) and not isinstance(validation, bool):
        if not 0.0 < validation < 1.0:
            raise ValueError(f"`validation` as a fraction must be in (0, 1); got {validation!r}.")
        return float(validation)
    if isinstance(validation, tuple) and len(validation) == 3:
        held = as_entries(*validation, shape=(m, n))
        return Entries(held.rows, held.cols, held.values.astype(dtype, copy=False), held.shape)
    raise ValueError(
        "`validation` must be None, a fraction in (0, 1) of the entries to hold out, or a "
        f"(rows, cols, values) triple of held-out entries; got {type(validation).__name__}."
    )


def complete(
    rows,
    cols=None,
    values=None,
    shape=None,
    *,
    rank: int,
    method: str = "softimpute_als",
    reg=None,
    n_reg: int = 10,
    validation=None,
    center: bool = True,
    biases: bool = False,
    max_iter: int = 100,
    tol: float | None = None,
    cg_steps: int = 3,
    oversample: int = 10,
    rng=None,
) -> CompletionResult:
    """A low-rank matrix from observed entries: problem (1) with a rank cap.

    Parameters
    ----------
    rows, cols, values : array_like, shape (N,)
        The observed entries X[rows[t], cols[t]] = values[t], each position at
        most once (aggregate repeats first). ``rows`` may instead be a SciPy
        sparse matrix whose stored entries are the observations. NumPy
        arrays, or torch tensors (read by value, on the host; torch sparse
        as SciPy's).
    shape : (int, int), optional
        (m, n); default one past the largest row and column index.
    rank : int
        Rank cap k of Z.
    method : {"softimpute_als", "softimpute", "altmin", "bayes"}
        The solver (see the module notes); the first three solve (1).
        ``"bayes"`` fits the variational Bayesian model instead, centred on
        the mean of the entries; it takes no ``reg``, and ``rank`` is the
        cap on its components (unneeded ones are pruned towards zero). Its
        steps cost k times those of the others and it keeps (m + n) k^2 / 2
        numbers, so it suits ranks of tens (:mod:`randla.completion_bayes`).
        It is made for noisy data. It fits the centred entries, and
        subtracting the mean can raise the rank by one: on a noiseless
        rank-3 test, ``rank=3`` stays at 1.2% relative error, and
        ``rank=4`` reaches 4e-7 with a tight ``tol`` (1e-6: 10 iterations,
        or tol=0 and 100) but stops at the same 1.2% after 3 iterations at
        the default tol=1e-2 (the noise level it fits stops at the rounding
        of its float32 moments, about 3e-4 times the entries' RMS).
    reg : float, sequence of float or None
        The regularisation weight of (1). A sequence is a path, fitted from
        the largest value down with warm starts and chosen on held-out
        entries. None (default) is a path of ``n_reg`` values from
        sigma_1(P_Omega(X)) / 2 down by a factor 1000; the path stops early
        once the validation error has risen twice. ``n_reg=1`` is the one
        value sigma_1(P_Omega(X)) / 2, fitted as a single ``reg`` is.
    n_reg : int, default 10
        The length of the default path (``reg=None``); ignored otherwise.
    validation : float, (rows, cols, values) or None
        Held-out entries for choosing ``reg`` and for the validation RMSE in
        the history: a fraction of the observed entries (default 0.1 for a
        path of two values or more, else none) or explicit entries. After a
        path on a held-out fraction, the chosen model is refitted on all the
        observed entries, warm-started, with mu their mean, and ``history``
        is that refit's (its validation RMSE is NaN; the path's is in
        ``path``). With a single ``reg``, a held-out fraction is
        only monitored and never fitted (so too for ``"bayes"``, which needs
        no held-out entries).
    center : bool
        Fit the entries minus their mean mu (``result.mean``): Z is then
        mu + a low-rank part, and only that part is penalised in (1). Ratings
        on a 1-5 scale need this: uncentred, the nuclear norm shrinks every
        prediction towards 0, and a row or column with no entries is
        predicted as 0 rather than mu. ``False`` solves (1) for the entries
        as they are, as problem (1) states; a noiseless low-rank matrix is
        then recovered at its own rank, where centring can add one to it.
        ``"bayes"`` and ``biases=True`` always fit the mean.
    biases : bool
        ``"altmin"`` only: fit X_ij ~ mean + b_i + c_j + (L R^T)_ij with the
        biases under the same L2 penalty, reg (||b||^2 + ||c||^2) / 2 (in
        the units of the solve for entries far from 1: see the Notes).
    max_iter, tol : int, float or None
        Stop at the first step that changes Z by little relative to its size,
        ||Z_new - Z||_F <= tol max(||Z||_F, ||Z_new||_F, tol ||P_Omega(X)||_F)
        (the last term stops a Z shrinking to zero), as fancyimpute's
        ``convergence_threshold`` bounds the relative change of the
        unobserved entries (``history.relative_change`` records the change
        of each step); or after ``max_iter`` steps, with a warning
        (scikit-learn's ``ConvergenceWarning`` where scikit-learn is
        installed, else ``UserWarning``) when the fit returned stopped
        there. ``tol`` defaults to 1e-3, and to 1e-2 for ``"bayes"``. A small
        step is not a small distance to the optimum: see the Notes for how
        far above it the default stops.
    cg_steps : int
        Conjugate-gradient steps per row problem in ``"altmin"`` (k + 1
        solve them exactly).
    oversample : int
        Extra random directions per ``"softimpute"`` step.
    rng : None, int, SeedSequence, BitGenerator or Generator
        Seeds the starting SVD, the validation split and the sketches.

    Returns
    -------
    CompletionResult
        ``U, S, Vh`` (unpackable), ``predict``, ``converged``, ``n_iter``,
        ``history`` and the ``path``.

    Notes
    -----
    Every step costs O(|Omega| k) for the model values and sparse products
    and O((m + n) k^2) for the small factorizations (``"bayes"``: k times
    more). The start is the rank-k SVD of P_Omega(X), computed by
    :func:`randla.svd`.

    Entries whose root mean square (after the mean, with ``center``) is
    beyond 1e77 or below 1e-77 (4e9 and 2.5e-10 in float32) are fitted
    divided by 2^e, the even power of 2 nearest it, and the result is
    scaled back (``reg`` divided likewise): problem (1) scales with the
    entries, but the squares the solvers form leave the float range for
    entries near 1e154 or 1e-154. The division is exact, so such a fit of
    4^j X is exactly 4^j times that of X (its objectives 16^j times: they
    can overflow to inf, or underflow to 0, where the fit does not). The L2
    penalty of the biases does not scale with the entries as the nuclear
    norm does: there it is reg / 2^e in the entries' units.

    ``tol`` bounds the step, not the distance to the optimum, and where the
    rank cap binds the last steps are slow. On a MovieLens-shaped problem,
    ``randla.testing.ratings(1000, 800, 50000, rank=10, noise=0.5, rng=0)`` with
    ``rank=8`` and the ``reg`` its default path chooses (2.06, where the
    optimum under a cap of 40 has rank 40), ``"softimpute_als"`` stopped
    above the optimum value of (1) (that of a 3600-step run) by 3.2% at the
    defaults (at ``max_iter=100``, before ``tol``), by 0.5% at tol=1e-3 with
    steps unlimited (210 steps), 0.01% at tol=1e-4 (1270 steps) and 0.0001%
    at tol=1e-5 (1970 steps). At reg = 9.6, where the cap barely binds,
    tol=1e-3 stopped 0.01% above it after 68 steps. For the objective
    within 0.1% of the optimum, pass tol=1e-4 and a ``max_iter`` of a few
    thousand. ``"softimpute"`` crawls there: at tol=1e-5 it stopped 0.2%
    above (1180 steps) and reached the same optimum only after 10^4 steps.
    Where the cap does not bind, (1) is convex and the steps fast: on
    ``ratings(200, 160, 6000, rank=10, noise=0.5, rng=0)`` at reg = 6
    (optimum of rank 17, cap 20) every solver stopped within 0.005% of the
    exact optimum at the default tol; that figure is this problem's, not a
    bound: on ``ratings(200, 160, 6000, rank=5, noise=0.1, rng=5)`` at
    reg = 3 (optimum of rank 6), ``"softimpute"`` stopped 0.017% above it,
    and on constant entries (``center=False``, an optimum of rank 1) up to
    0.16%.

    References: [MHT2010] Mazumder, Hastie & Tibshirani, JMLR 11 (2010);
    [HMLZ2015] Hastie, Mazumder, Lee & Zadeh, JMLR 16 (2015); [JNS2013] Jain,
    Netrapalli & Sanghavi, STOC 2013; [GSYZ2023] Gu, Song, Yin & Zhang,
    "Low rank matrix completion via robust alternating minimization in nearly
    linear time" (2023); [LT2007] Lim & Teh, "Variational Bayesian approach
    to movie rating prediction", KDD Cup and Workshop (2007).

    Examples
    --------
    >>> import randla
    >>> data = randla.testing.ratings(600, 400, 30000, rank=5, noise=0.1, rng=0)
    >>> r = randla.complete(*data, shape=data.shape, rank=5, reg=1.0, rng=0)
    >>> r.U.shape, r.S.shape, r.Vh.shape
    ((600, 5), (5,), (5, 400))
    """
    method = check_choice("method", method, METHODS)
    entries = as_entries(rows, cols, values, shape)
    m, n = entries.shape
    rank = check_int("rank", rank, 1, min(m, n))
    regs = _check_reg(reg)
    if tol is None:
        tol = _BAYES_TOL if method == "bayes" else 1e-3
    if not (isinstance(tol, numbers.Real) and not isinstance(tol, bool) and 0 <= tol < 1):
        raise ValueError(f"`tol` must be a float in [0, 1), the relative change of Z to stop at; got {tol!r}.")
    n_reg = check_int("n_reg", n_reg, 1)
    options = dict(
        max_iter=check_int("max_iter", max_iter, 1),
        cg_steps=check_int("cg_steps", cg_steps, 1),
        oversample=check_int("oversample", oversample, 0),
        tol=float(tol),
        biases=bool(biases),
    )
    if biases and method != "altmin":
        raise ValueError(f"`biases=True` needs method='altmin'; method={method!r} fits no biases.")
    if not center and (biases or method == "bayes"):
        fits = "biases=True" if biases else "method='bayes'"
        raise ValueError(f"{fits} always fits the mean of the entries; leave `center` at True.")
    if method == "bayes" and regs is not None:
        raise ValueError("method='bayes' fits a prior per component instead of `reg`; leave `reg` at None.")
    validation = _check_validation(validation, m, n, entries.dtype)
    # A held-out part only where there is a reg to choose: with one, it would be data left unfitted.
    if validation is None and method != "bayes" and (n_reg if regs is None else len(regs)) > 1:
        validation = 0.1
    rng = check_rng(rng)

    # Entries far from 1 are solved divided by 2^e, of size near 1; the result is scaled back.
    e = _unit_exponent(entries, center)
    if e:
        entries = Entries(entries.rows, entries.cols, _scaled(entries.values, -e), entries.shape)
        if isinstance(validation, Entries):
            validation = Entries(validation.rows, validation.cols, _scaled(validation.values, -e), validation.shape)
    train, held = (entries.split(validation, rng) if isinstance(validation, float)
                   else (entries, validation))
    mean = float(np.mean(train.values, dtype=np.float64)) if center else 0.0
    start, sigma_max = _spectral_start(train, rank, mean, rng)
    if method == "bayes":
        return _warn_if_unconverged(_in_units(_complete_bayes(train, start, options, held), e), options)
    if regs is None:
        # Python floats: a NumPy float64 reg would promote float32 factors to float64 (NEP 50).
        regs = [float(v) for v in sigma_max * np.geomspace(0.5, 5e-4, n_reg)]
        given = [_scaled(v, e) for v in regs]
    else:
        # In the units of the scaled entries; the path and result report the values given.
        given = sorted(regs, reverse=True)
        regs = [_scaled(v, -e) for v in given]

    path, best, rising = [], None, 0
    for value, shown in zip(regs, given):
        model, converged, n_iter, history = _fit(method, train, start, value, rank, options, held, rng)
        score = _rmse(held, model) if held is not None else np.nan
        point = PathPoint(shown, svd_form(model)[1].size, _scaled(float(history.train_rmse[-1]), e),
                          _scaled(score, e), n_iter, converged)
        path.append(point)
        if best is None or score < best[-1]:
            best, rising = (point, model, converged, n_iter, history, value, score), 0
        else:
            rising += 1
        start = model
        if len(regs) > 1 and rising == 2:
            break
    point, model, converged, n_iter, history, value, _ = best
    if len(regs) > 1 and train is not entries:
        # mu of all the entries, as `center` defines it (the split's differs); the factors start warm.
        mean = float(np.mean(entries.values, dtype=np.float64)) if center else 0.0
        start = Model(model.L, model.R, mean, model.row_bias, model.col_bias)
        model, converged, n_iter, history = _fit(method, entries, start, value, rank, options, None, rng)
    U, S, Vh = svd_form(model)
    return _warn_if_unconverged(_in_units(CompletionResult(
        U, S, Vh, model.mean, model.row_bias, model.col_bias, point.reg, method,
        bool(converged), int(n_iter), history, tuple(path) if len(regs) > 1 else (),
    ), e), options)
