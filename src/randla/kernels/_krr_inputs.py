"""The inputs of kernel ridge regression: targets, weights, penalties and landmarks."""

from __future__ import annotations

import math
import numbers

import numpy as np
from array_api_compat import array_namespace, is_array_api_obj, is_numpy_array

from .._validate import check_choice
from ..backend import to_numpy
from ..operators.adapters import check_not_meta
from .landmarks import METHODS
from .landmarks import landmarks as select_landmarks
from .operator import KernelOperator
from .pcg import as_float64, take_rows

#: Landmarks chosen by a method name are chosen among this many uniform candidates by default.
CANDIDATES = 100_000


def is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_targets(y, op: KernelOperator):
    """y as a float64 (n, t) array in X's library and on its device."""
    if isinstance(y, (list, tuple, np.ndarray)):  # ndarray subclasses (np.matrix) as plain arrays
        y = np.asarray(y)
    if not is_array_api_obj(y):
        raise TypeError(f"y must be a NumPy array or torch tensor of targets; got {type(y).__name__}.")
    check_not_meta(y, "y")
    xp, n = op.xp, op.shape[0]
    if array_namespace(y) is not xp:
        y = xp.asarray(to_numpy(y), device=op.device)
    if y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] == 0):
        raise ValueError(
            f"y must have shape (n,) or (n, n_targets) with n_targets >= 1; got shape {tuple(y.shape)}."
        )
    if y.shape[0] != n:
        raise ValueError(f"y has {y.shape[0]} rows but X has {n} points; give one target (row) per point.")
    if not xp.isdtype(y.dtype, ("real floating", "integral", "bool")):
        raise TypeError(f"y must hold real numbers; got dtype {y.dtype}.")
    Y = as_float64(xp, y)
    if not bool(xp.all(xp.isfinite(Y))):
        raise ValueError("y contains NaN or Inf; drop those points or impute their targets first.")
    return (Y[:, None], True) if y.ndim == 1 else (Y, False)


def check_weights(sample_weight, op: KernelOperator):
    """(sqrt(w) as float64 in X's library or None, NumPy indices of positive weight)."""
    xp, n = op.xp, op.shape[0]
    if sample_weight is None:
        return None, np.arange(n, dtype=np.int64)
    w = to_numpy(sample_weight) if is_array_api_obj(sample_weight) else np.asarray(sample_weight)
    if w.shape != (n,):
        raise ValueError(f"sample_weight must have shape (n,) = ({n},), one weight per point; got {w.shape}.")
    if w.dtype.kind not in "biuf":
        raise TypeError(f"sample_weight must hold real numbers; got dtype {w.dtype}.")
    w = w.astype(np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError("sample_weight must be finite and non-negative.")
    positive = np.flatnonzero(w > 0)
    if positive.size == 0:
        raise ValueError("sample_weight is zero everywhere: no point is fitted. Give some point a positive weight.")
    return xp.asarray(np.sqrt(w), device=op.device), positive


def check_alpha(alpha, n_targets: int):
    """A float, or a float64 array with one penalty per target when they differ."""
    ok = isinstance(alpha, numbers.Real) and not isinstance(alpha, bool)
    if ok and math.isfinite(alpha) and alpha > 0:
        return float(alpha)
    if not ok and (is_array_api_obj(alpha) or isinstance(alpha, (list, tuple))):
        a = np.asarray(to_numpy(alpha) if is_array_api_obj(alpha) else alpha)
        if a.shape != (n_targets,):
            raise ValueError(
                f"`alpha` as an array must have one penalty per target, shape ({n_targets},); got shape {a.shape}."
            )
        if a.dtype.kind in "iuf" and np.all(np.isfinite(a)) and np.all(a > 0):
            a = a.astype(np.float64)
            return float(a[0]) if np.all(a == a[0]) else a
    raise ValueError(
        f"`alpha` must be a positive finite float, the ridge penalty of ||f||_H^2, or an array of "
        f"them with one per target (as in sklearn's KernelRidge); got {alpha!r}."
    )


def check_count(name: str, value, n: int, default: int, counted: str = "points") -> int:
    """'auto' (-> default) or an int in [1, n]."""
    if isinstance(value, str) and value == "auto":
        return default
    if is_int(value) and 1 <= value <= n:
        return int(value)
    raise ValueError(f"`{name}` must be 'auto' or an int in [1, {n}] (the number of {counted}); got {value!r}.")


def check_indices(idx, n: int) -> np.ndarray:
    if is_array_api_obj(idx) and not is_numpy_array(idx):
        idx = to_numpy(idx)
    arr = np.asarray(idx)
    if arr.dtype.kind not in "iu":
        raise TypeError(
            f"`landmarks` must be a method name or an array of row indices of X (integers); "
            f"got an array of dtype {arr.dtype}."
        )
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"landmark indices must be a non-empty 1-D array; got shape {arr.shape}.")
    if arr.min() < 0 or arr.max() >= n:
        raise ValueError(
            f"landmark indices must lie in [0, {n - 1}] (rows of X); "
            f"got values from {arr.min()} to {arr.max()}."
        )
    if np.unique(arr).size != arr.size:
        raise ValueError(
            "landmark indices must be distinct; a repeated landmark adds nothing. Use np.unique."
        )
    return arr.astype(np.int64)


def choose_landmarks(op: KernelOperator, landmarks, n_components, candidates, eligible, gen) -> np.ndarray:
    """Row indices of the landmarks, by name among uniform candidates from ``eligible``, or as given."""
    n = op.shape[0]
    if not isinstance(landmarks, str):
        if candidates is not None:
            raise ValueError(
                "`candidates` applies to landmarks chosen by a method name; "
                "with explicit landmark indices leave it out."
            )
        idx = check_indices(landmarks, n)
        if not (isinstance(n_components, str) and n_components == "auto") and n_components != idx.size:
            raise ValueError(
                f"`n_components`={n_components!r} but {idx.size} landmark indices were given; "
                "leave n_components out (it is taken from the indices) or make them agree."
            )
        return idx
    method = check_choice("landmarks", landmarks, METHODS, "or an array of row indices of X")
    n_fit = eligible.size
    counted = "points" if n_fit == n else "points of positive weight"
    default = min(n_fit, max(100, math.ceil(math.sqrt(n))))
    m = check_count("n_components", n_components, n_fit, default, counted)
    if candidates is None:
        pool = min(n_fit, max(CANDIDATES, m))
    elif is_int(candidates) and m <= candidates <= n_fit:
        pool = int(candidates)
    else:
        raise ValueError(
            f"`candidates` must be None or an int in [n_components, n] = [{m}, {n_fit}]; got {candidates!r}."
        )
    cand = eligible if pool == n_fit else np.sort(gen.choice(eligible, size=pool, replace=False))
    if method == "uniform":
        return np.sort(gen.choice(cand, size=m, replace=False))

    sub = op if pool == n else KernelOperator(take_rows(op.xp, op.X, cand), None, op.kernel, op.memory_limit)
    chosen = np.asarray(to_numpy(select_landmarks(sub, m, method=method, rng=gen).indices), dtype=np.int64)
    return cand[chosen]
