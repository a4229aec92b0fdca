"""Interpolative decomposition and CUR benchmark: randla against scipy.linalg.interpolative.

Writes bench/results/interp.md and interp.json. Cases (``--only``):

- slow, fast: dense 4000 x 3000 float64 with a planted spectrum
  (sigma_i = i^-1/2 as in bench/run.py, and sigma_i = 0.9^(i-1)). Column ID
  at equal rank k = 50 and 100: randla.interpolative with its default
  (Gaussian), SRHT and sparse-sign sketches, and with P read from the sketch
  (``coefficients="sketch"``, no pass over A after the sketch) instead of
  the default least-squares P, against scipy's ``interp_decomp``
  (``rand=True``, its default, and ``rand=False``). On the fast
  matrix also at equal tolerance eps = 1e-1, 1e-2, with scipy's
  ``estimate_rank``. On the slow matrix the pieces that follow an ID are
  timed too: ``id_to_svd`` against ``result.svd()`` and
  ``reconstruct_matrix_from_id`` against ``result.reconstruct()``.
- sparse: CSR 200000 x 50000 with 1M nonzeros, column ID at rank 50; scipy
  can only take it as a LinearOperator (``aslinearoperator``), on which it is
  always randomized. randla with CountSketch, sparse sign and its default
  sketch, and CountSketch with ``coefficients="sketch"``. Errors by
  ``randla.estimate_error`` on the implicit residual; nothing m x n is ever
  formed.
- scaling: the same shape with 0.5M to 8M nonzeros, rank 50, the two sparse
  sketches and scipy; least-squares fit of time against nnz (input-sparsity
  time).
- cur: randla.cur on the sparse matrix with each column/row selection method;
  formats and nnz of C and R, shape of U, and the peak memory of the call,
  measured in a fresh process (tracemalloc peak of NumPy allocations and the
  growth of the peak RSS).

Errors are ratios to the optimum of the same rank: ||A - A[:, idx] P||_2 /
sigma_(k+1) and ||A - A[:, idx] P||_F / (sum_(i>k) sigma_i^2)^(1/2) (1 is
the truncated SVD, which no rank-k approximation beats). See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import scipy.linalg.interpolative as sli
import scipy.sparse as sp
import scipy.sparse.linalg as sla

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _environment  # noqa: E402
from _output import write_results  # noqa: E402
from _timing import Task, round_robin  # noqa: E402

import randla  # noqa: E402

CASES = ("slow", "fast", "sparse", "scaling", "cur")
RANKS = (50, 100)
TOLS = (1e-1, 1e-2)
SPARSE_RANK = 50
SEEDS = (0, 1, 2)  # randomized methods are scored from each; target a compares the means
SCALING_NNZ = (500_000, 1_000_000, 2_000_000, 4_000_000, 8_000_000)
SPARSE_SHAPE = (200_000, 50_000)
# randla.cur options per row; "qr" with the default (Gaussian) sketch, and with CountSketch.
CUR_VARIANTS = {"qr": {"method": "qr"}, "qr_countsketch": {"method": "qr", "sketch": "countsketch"},
                "leverage": {"method": "leverage"}, "deim": {"method": "deim"}}
ERROR_POWER_ITERS = 30
ERROR_BLOCK = 16
PAUSE = 0.15
# Seconds of timing rounds per case (at least three rounds are always made).
BUDGET_S = {"slow": 35, "fast": 20, "tolerance": 15, "sparse": 15, "scaling": 40, "cur": 12, "pieces": 10}
SCALING_REPEATS = 7  # single sparse-sign calls scatter by 20-30%: more runs per size for the fit
_T0 = time.perf_counter()

SLOW = ("randla.testing.planted(4000, 3000, 'polynomial', rate=0.5, rng=2)",
        lambda: randla.testing.planted(4000, 3000, "polynomial", rate=0.5, rng=2))
# rank=300: sigma_i = 0.9^(i-1) < 2e-14 beyond i = 300, below the rounding of A itself.
FAST = ("randla.testing.planted(4000, 3000, 'exponential', rate=0.9, rank=300, rng=1)",
        lambda: randla.testing.planted(4000, 3000, "exponential", rate=0.9, rank=300, rng=1))


def log(msg: str):
    print(f"[{time.perf_counter() - _T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


# -- the two libraries' answers as (columns, P) -----------------------------------------------


def scipy_id(idx, proj, k: int, n: int):
    """scipy's (idx, proj) as (columns, P) with A ~ A[:, columns] @ P, P (k, n)."""
    P = np.empty((k, n))
    P[:, idx[:k]] = np.eye(k)
    P[:, idx[k:]] = proj
    return np.asarray(idx[:k]), P


def randla_id(r):
    idx, P = r
    return np.asarray(idx), np.asarray(P)


def columns(A, idx):
    """A[:, idx] as a dense m x k array (k columns: small even when A is large and sparse)."""
    C = A[:, idx]
    return C.toarray() if sp.issparse(C) else np.asarray(C)


def spectral_error(A, L, R) -> float:
    """||A - L R||_2 by block power iteration on the implicit residual (never formed)."""
    return randla.estimate_error(A, (L, R), power_iters=ERROR_POWER_ITERS,
                                 block_size=min(ERROR_BLOCK, min(A.shape)), rng=0)


def dense_errors(A, S, idx, P) -> dict:
    """Spectral and Frobenius errors of A ~ A[:, idx] P, absolute, relative and against the optimum."""
    k = len(idx)
    C = columns(A, idx)
    spec = spectral_error(A, C, P)
    frob = float(np.linalg.norm(A - C @ P))
    tail = float(np.sqrt(np.sum(S[k:] ** 2)))
    total = float(np.sqrt(np.sum(S ** 2)))
    return {"rank": k, "spectral": spec, "frobenius": frob,
            "spectral_ratio": spec / S[k] if k < len(S) and S[k] > 0 else None,
            "frobenius_ratio": frob / tail if tail > 0 else None,
            "relative_spectral": spec / S[0], "relative_frobenius": frob / total}


def optimal_rank(S, tol: float) -> int:
    """Smallest k with (sum_(i>k) sigma_i^2)^(1/2) <= tol ||A||_F: the truncated SVD's rank for tol."""
    tails = np.sqrt(np.cumsum((S ** 2)[::-1])[::-1])  # tails[k] = ||sigma_(k+1:)||
    ok = np.nonzero(tails <= tol * tails[0])[0]
    return int(ok[0]) if len(ok) else len(S)


# -- methods -----------------------------------------------------------------------------------


RANDLA_SKETCHES = {"randla": None, "randla_srht": "srht", "randla_sparse_sign": "sparse_sign"}
LABELS = {
    "scipy": "scipy interp_decomp (rand=True)",
    "scipy_det": "scipy interp_decomp rand=False (QRCP of A)",
    "scipy_op": "scipy interp_decomp on aslinearoperator(A)",
    "randla": "randla.interpolative (default sketch)",
    "randla_srht": "randla.interpolative sketch='srht'",
    "randla_sparse_sign": "randla.interpolative sketch='sparse_sign'",
    "randla_countsketch": "randla.interpolative sketch='countsketch'",
    "randla_sketch_coefficients": "randla.interpolative coefficients='sketch'",
    "randla_countsketch_sketch_coefficients": "randla.interpolative sketch='countsketch', coefficients='sketch'",
    "scipy_estimate_rank": "scipy estimate_rank",
}


def randla_call(A, sketch, *, rank=None, tol=None):
    options = {} if sketch is None else {"sketch": sketch}
    if tol is not None:
        return lambda seed: randla.interpolative(A, tol=tol, rng=seed, **options)
    return lambda seed: randla.interpolative(A, rank, rng=seed, **options)


def rank_methods(A, k) -> dict:
    """name -> (run(seed), to (columns, P), randomized?) at fixed rank k on dense A."""
    n = A.shape[1]
    out = {
        "scipy": (lambda seed: sli.interp_decomp(A, k, rng=seed), lambda r: scipy_id(*r, k, n), True),
        "scipy_det": (lambda seed: sli.interp_decomp(A, k, rand=False), lambda r: scipy_id(*r, k, n), False),
    }
    for name, sketch in RANDLA_SKETCHES.items():
        out[name] = (randla_call(A, sketch, rank=k), randla_id, True)
    out["randla_sketch_coefficients"] = (
        lambda seed: randla.interpolative(A, k, coefficients="sketch", rng=seed), randla_id, True)
    return out


def tol_methods(A, eps) -> dict:
    n = A.shape[1]
    out = {"scipy": (lambda seed: sli.interp_decomp(A, eps, rng=seed), lambda r: scipy_id(r[1], r[2], r[0], n))}
    for name, sketch in RANDLA_SKETCHES.items():
        out[name] = (randla_call(A, sketch, tol=eps), randla_id)
    return out


def _timing_tasks(specs: dict, repeats: int):
    return [Task(name, lambda run=run: run(0), repeats=repeats) for name, run in specs.items()]


def _start_case(title: str):
    log(title)
    quiet = _environment.wait_until_quiet(max_wait=5.0)
    return quiet, _environment.OtherLoad()


def _case_info(quiet, others) -> dict:
    return {"quiet_wait": quiet, "other_processes_cores": others.cores(),
            "load_average_after": _environment.load_average()}


# -- dense cases -------------------------------------------------------------------------------


def dense_case(key: str, construction: str, build, *, repeats: int, seeds: tuple, tolerance: bool,
               pieces: bool) -> dict:
    quiet, others = _start_case(f"case {key}: {construction}")
    t0 = time.perf_counter()
    planted = build()
    A, S = planted.A, np.asarray(planted.S)
    log(f"  built in {time.perf_counter() - t0:.1f} s")

    specs, readers, randomized = {}, {}, {}
    for k in RANKS:
        for name, (run, read, rand) in rank_methods(A, k).items():
            specs[(name, k)] = run
            readers[(name, k)] = read
            randomized[(name, k)] = rand
    # scipy's deterministic ID is timed once: it only shows what rand=True computes.
    tasks = [Task(f"{name} k={k}", lambda run=run: run(0), repeats=1 if name == "scipy_det" else repeats,
                  warmup=name != "scipy_det") for (name, k), run in specs.items()]
    timings = round_robin(tasks, pause=PAUSE, log=log, budget=BUDGET_S[key])
    deterministic = scipy_rand_is_deterministic(A, RANKS[0])
    if deterministic:  # then its other seeds give the same answer: scored once
        randomized.update({(name, k): False for (name, k) in randomized if name == "scipy"})
    rows = []
    for (name, k), run in specs.items():
        task = f"{name} k={k}"
        row = {"method": name, "label": LABELS[name], "rank": k, "times_s": timings.times.get(task, []),
               "median_s": timings.median(task), "failure": timings.failures.get(task)}
        if row["failure"] is None:
            errs = [dense_errors(A, S, *readers[(name, k)](timings.first[task] if s == 0 else run(s)))
                    for s in (seeds if randomized[(name, k)] else seeds[:1])]
            row["errors_by_seed"] = errs
            row["spectral_ratio_mean"] = statistics.mean(e["spectral_ratio"] for e in errs)
            row["frobenius_ratio_mean"] = statistics.mean(e["frobenius_ratio"] for e in errs)
            log(f"  {task}: {row['median_s']:.3f} s, spectral / sigma_(k+1) {row['spectral_ratio_mean']:.3f}, "
                f"Frobenius / optimal {row['frobenius_ratio_mean']:.4f} (mean of {len(errs)})")
        rows.append(row)
    for row in rows:
        ref = next((r for r in rows if r["method"] == "scipy" and r["rank"] == row["rank"]), None)
        row["x_scipy"] = row["median_s"] / ref["median_s"] if row["median_s"] and ref and ref["median_s"] else None
    out = {"key": key, "construction": construction, "shape": list(A.shape), "dtype": str(A.dtype),
           "sigma": {str(k): float(S[k]) for k in RANKS}, "rows": rows, "seeds": list(seeds),
           "scipy_rand_is_deterministic": deterministic}
    if tolerance:
        out["tolerance"] = tolerance_rows(A, S, repeats=repeats)
    if pieces:
        out["pieces"] = piece_rows(A, S, RANKS[0], repeats=repeats)
    out.update(_case_info(quiet, others))
    return out


def scipy_rand_is_deterministic(A, k: int) -> bool:
    """Whether interp_decomp(A, k) with rand=True (two seeds) returns exactly the deterministic ID.

    In SciPy 1.15 to 1.17 the randomized branch of the dense fixed-rank ID is unreachable and
    every call runs the column-pivoted QR of A itself; this records which one was measured.
    """
    det = sli.interp_decomp(A, k, rand=False)
    return all(all(np.array_equal(a, b) for a, b in zip(sli.interp_decomp(A, k, rng=s), det)) for s in (0, 1))


def tolerance_rows(A, S, *, repeats: int) -> list[dict]:
    """Equal nominal tolerance. scipy's eps bounds the error roughly relative to the largest
    singular value (spectral-like); randla's tol bounds ||A - A_hat||_F / ||A||_F. Both are shown."""
    specs, readers = {}, {}
    for eps in TOLS:
        for name, (run, read) in tol_methods(A, eps).items():
            specs[(name, eps)] = run
            readers[(name, eps)] = read
        specs[("scipy_estimate_rank", eps)] = lambda seed, eps=eps: sli.estimate_rank(A, eps, rng=seed)
    tasks = [Task(f"{name} eps={eps:g}", lambda run=run: run(0), repeats=repeats) for (name, eps), run in specs.items()]
    timings = round_robin(tasks, pause=PAUSE, log=log, budget=BUDGET_S["tolerance"])
    rows = []
    for (name, eps) in specs:
        task = f"{name} eps={eps:g}"
        row = {"method": name, "label": LABELS[name], "eps": eps, "optimal_rank": optimal_rank(S, eps),
               "times_s": timings.times.get(task, []), "median_s": timings.median(task),
               "failure": timings.failures.get(task)}
        if row["failure"] is None:
            raw = timings.first[task]
            if name == "scipy_estimate_rank":
                row["rank"] = int(raw)
            else:
                row.update(dense_errors(A, S, *readers[(name, eps)](raw)))
                row["meets_frobenius"] = bool(row["relative_frobenius"] <= eps)
                row["meets_spectral"] = bool(row["relative_spectral"] <= eps)
            log(f"  {task}: rank {row['rank']} (optimal {row['optimal_rank']}), {row['median_s']:.3f} s")
        rows.append(row)
    return rows


def piece_rows(A, S, k: int, *, repeats: int) -> list[dict]:
    """The steps after an ID, on the same rank-k column ID of the dense matrix."""
    idx, proj = sli.interp_decomp(A, k, rng=0)
    B = A[:, idx[:k]]
    r = randla.interpolative(A, k, rng=0)
    specs = {
        "scipy id_to_svd": lambda: sli.id_to_svd(B, idx, proj),
        "randla result.svd()": r.svd,
        "scipy reconstruct_matrix_from_id": lambda: sli.reconstruct_matrix_from_id(B, idx, proj),
        "randla result.reconstruct()": r.reconstruct,
    }
    timings = round_robin(_tasks_plain(specs, repeats), pause=PAUSE, log=log, budget=BUDGET_S["pieces"])
    total = float(np.sqrt(np.sum(S ** 2)))
    rows = []
    for name in specs:
        row = {"operation": name, "times_s": timings.times.get(name, []), "median_s": timings.median(name),
               "failure": timings.failures.get(name)}
        res = timings.first.get(name)
        if res is not None:
            if "svd" in name:
                U, s, V = res
                Vh = V.T if name.startswith("scipy") else V  # scipy returns V, randla Vh
                approx = (np.asarray(U) * np.asarray(s)) @ np.asarray(Vh)
                row["relative_frobenius"] = float(np.linalg.norm(A - approx)) / total
            else:
                row["relative_frobenius"] = float(np.linalg.norm(A - np.asarray(res))) / total
        rows.append(row)
    # Each ID's own error, which the SVD and the reconstruction must reproduce.
    theirs, ours = dense_errors(A, S, *scipy_id(idx, proj, k, A.shape[1])), dense_errors(A, S, *randla_id(r))
    rows.append({"operation": "(errors of the IDs themselves)",
                 "scipy_relative_frobenius": theirs["relative_frobenius"],
                 "randla_relative_frobenius": ours["relative_frobenius"]})
    return rows


def _tasks_plain(specs: dict, repeats: int):
    return [Task(name, fn, repeats=repeats) for name, fn in specs.items()]


# -- sparse ------------------------------------------------------------------------------------


def sparse_matrix(nnz: int = 1_000_000):
    return randla.testing.sparse_random(*SPARSE_SHAPE, nnz, rng=3)


_REFERENCE = {}  # rank -> singular values of the 1M-nonzero matrix, shared by the sparse and cur cases


def sparse_reference(A, k: int):
    t0 = time.perf_counter()
    s = np.sort(sla.svds(A, k + 1, random_state=0, return_singular_vectors=False))[::-1]
    elapsed = time.perf_counter() - t0
    log(f"  reference sigma_(k+1) by svds(A, {k + 1}): {s[k]:.6g} in {elapsed:.1f} s")
    return s, elapsed


def sparse_id_specs(A, k: int, *, everything: bool = True) -> dict:
    n = A.shape[1]
    op = sla.aslinearoperator(A)
    specs = {"scipy_op": (lambda seed: sli.interp_decomp(op, k, rng=seed), lambda r: scipy_id(*r, k, n))}
    for name, sketch in (("randla_countsketch", "countsketch"), ("randla_sparse_sign", "sparse_sign")):
        specs[name] = (randla_call(A, sketch, rank=k), randla_id)
    if everything:  # the scaling case times the input-sparsity-time methods only
        specs["randla"] = (randla_call(A, None, rank=k), randla_id)
        specs["randla_countsketch_sketch_coefficients"] = (
            lambda seed: randla.interpolative(A, k, sketch="countsketch", coefficients="sketch", rng=seed), randla_id)
    return specs


def sparse_case(*, repeats: int) -> dict:
    k = SPARSE_RANK
    quiet, others = _start_case(f"case sparse: CSR {SPARSE_SHAPE[0]}x{SPARSE_SHAPE[1]}, 1M nonzeros, rank {k}")
    A = sparse_matrix()
    s_ref, ref_time = sparse_reference(A, k)
    _REFERENCE[k] = s_ref
    specs = sparse_id_specs(A, k)
    timings = round_robin(_timing_tasks({n: run for n, (run, _) in specs.items()}, repeats),
                          pause=PAUSE, log=log, budget=BUDGET_S["sparse"])
    rows = []
    for name, (run, read) in specs.items():
        row = {"method": name, "label": LABELS[name], "times_s": timings.times.get(name, []),
               "median_s": timings.median(name), "failure": timings.failures.get(name)}
        if row["failure"] is None:
            idx, P = read(timings.first[name])
            C = columns(A, idx)  # m x k
            row["spectral"] = spectral_error(A, C, P)
            row["spectral_ratio"] = row["spectral"] / s_ref[k]
            row["C_format"] = A[:, idx].format
            log(f"  {name}: {row['median_s']:.3f} s, spectral / sigma_(k+1) {row['spectral_ratio']:.3f}")
        rows.append(row)
    ref = next(r for r in rows if r["method"] == "scipy_op")
    for row in rows:
        row["x_scipy"] = row["median_s"] / ref["median_s"] if row["median_s"] and ref["median_s"] else None
    return {"shape": list(A.shape), "nnz": int(A.nnz), "format": A.format, "rank": k,
            "construction": "randla.testing.sparse_random(200000, 50000, 1000000, rng=3)",
            "sigma_next": float(s_ref[k]), "sigma_1": float(s_ref[0]), "reference_time_s": ref_time,
            "rows": rows, **_case_info(quiet, others)}


def scaling_case(*, repeats: int) -> dict:
    k = SPARSE_RANK
    quiet, others = _start_case(f"case scaling: ID at rank {k}, nnz {', '.join(f'{n:,}' for n in SCALING_NNZ)}")
    mats = {nnz: sparse_matrix(nnz) for nnz in SCALING_NNZ}
    specs = {}
    for nnz, A in mats.items():
        for name, (run, _) in sparse_id_specs(A, k, everything=False).items():
            specs[f"{name} nnz={nnz}"] = run
    timings = round_robin(_timing_tasks(specs, max(repeats, SCALING_REPEATS)), pause=PAUSE, log=log,
                          budget=BUDGET_S["scaling"])
    methods = list(sparse_id_specs(mats[SCALING_NNZ[0]], k, everything=False))
    table = {}
    for name in methods:
        times = [timings.median(f"{name} nnz={nnz}") for nnz in SCALING_NNZ]
        table[name] = {"label": LABELS[name], "median_s": times,
                       "runs": [len(timings.times.get(f"{name} nnz={nnz}", [])) for nnz in SCALING_NNZ],
                       "fit": linear_fit(SCALING_NNZ, times) if None not in times else None}
        if table[name]["fit"]:
            f = table[name]["fit"]
            log(f"  {name}: {', '.join(f'{t:.3f}' for t in times)} s; log-log slope {f['loglog_slope']:.2f}, "
                f"t = {f['intercept_s']:.3f} s + {f['seconds_per_million_nnz']:.3f} s/M nnz, R^2 {f['r2']:.4f}")
    return {"shape": list(SPARSE_SHAPE), "rank": k, "nnz": list(SCALING_NNZ),
            "actual_nnz": [int(A.nnz) for A in mats.values()],
            "construction": "randla.testing.sparse_random(200000, 50000, nnz, rng=3)",
            "methods": table, **_case_info(quiet, others)}


def linear_fit(nnz, times) -> dict:
    """Least squares t = a + b nnz, the slope of log t against log nnz, and the growth per doubling."""
    x, y = np.asarray(nnz, dtype=float), np.asarray(times, dtype=float)
    b, a = np.polyfit(x, y, 1)
    fitted = a + b * x
    ss_res, ss_tot = float(np.sum((y - fitted) ** 2)), float(np.sum((y - y.mean()) ** 2))
    slope = float(np.polyfit(np.log(x), np.log(y), 1)[0])
    return {"intercept_s": float(a), "seconds_per_million_nnz": float(b) * 1e6,
            "r2": 1 - ss_res / ss_tot if ss_tot > 0 else 1.0,
            "max_relative_residual": float(np.max(np.abs(y - fitted) / y)), "loglog_slope": slope,
            "ratio_last_first": float(y[-1] / y[0]), "nnz_ratio": float(x[-1] / x[0]),
            "max_step_growth": float(np.max((y[1:] / y[:-1]) / (x[1:] / x[:-1]))),
            "nnz_share_at_largest": float(b * x[-1] / y[-1])}


# -- CUR ---------------------------------------------------------------------------------------


def cur_child(variant: str) -> dict:
    """In a fresh process: build the sparse matrix, then one CUR call under tracemalloc."""
    A = sparse_matrix()
    rss_before, how = _rss_now(), "VmHWM after resetting it (/proc/self/clear_refs)"
    try:  # reset the peak RSS to the current RSS, so that building A does not count
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        rss_before, how = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "growth of ru_maxrss"
    tracemalloc.start()
    t0 = time.perf_counter()
    randla.cur(A, SPARSE_RANK, rng=0, **CUR_VARIANTS[variant])
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_peak = _status_bytes("VmHWM") if how.startswith("VmHWM") else resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"variant": variant, "traced_time_s": elapsed, "peak_traced_bytes": peak,
            "rss_before_bytes": rss_before, "peak_rss_bytes": rss_peak, "peak_rss_growth_bytes": rss_peak - rss_before,
            "rss_method": how, "A_bytes": int(A.data.nbytes + A.indices.nbytes + A.indptr.nbytes)}


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{field} not in /proc/self/status")


def _rss_now() -> int:
    try:
        return _status_bytes("VmRSS")
    except OSError:
        return 0


def _describe_factor(X) -> dict:
    if sp.issparse(X):
        return {"sparse": True, "format": X.format, "shape": list(X.shape), "nnz": int(X.nnz)}
    return {"sparse": False, "format": type(X).__name__, "shape": list(X.shape), "nnz": int(np.count_nonzero(X))}


def cur_case(*, repeats: int) -> dict:
    k = SPARSE_RANK
    quiet, others = _start_case(f"case cur: randla.cur on the sparse matrix, rank {k}")
    A = sparse_matrix()
    s_ref = _REFERENCE[k] if k in _REFERENCE else sparse_reference(A, k)[0]
    specs = {v: (lambda o=o: randla.cur(A, k, rng=0, **o)) for v, o in CUR_VARIANTS.items()}
    timings = round_robin(_tasks_plain(specs, repeats), pause=PAUSE, log=log, budget=BUDGET_S["cur"])
    rows = []
    for method, options in CUR_VARIANTS.items():
        row = {"method": method, "options": options, "times_s": timings.times.get(method, []),
               "median_s": timings.median(method), "failure": timings.failures.get(method)}
        if row["failure"] is None:
            C, U, R = timings.first[method]
            row["C"], row["U"], row["R"] = _describe_factor(C), _describe_factor(U), _describe_factor(R)
            # C @ U is m x k and R is k x n: the residual A - (C U) R stays implicit.
            L = C @ np.asarray(U)
            Rd = R.toarray() if sp.issparse(R) else np.asarray(R)
            row["spectral"] = spectral_error(A, np.asarray(L), Rd)
            row["spectral_ratio"] = row["spectral"] / s_ref[k]
            child = subprocess.run([sys.executable, __file__, "--child-cur", method], capture_output=True, text=True,
                                   check=False)
            if child.returncode == 0:
                row["memory"] = json.loads(child.stdout.strip().splitlines()[-1])
            else:
                row["memory_failure"] = (child.stderr.strip().splitlines() or ["no output"])[-1]
            mem = row.get("memory", {})
            log(f"  cur {method}: {row['median_s']:.3f} s, C {row['C']['format']} nnz {row['C']['nnz']}, "
                f"R {row['R']['format']} nnz {row['R']['nnz']}, U {row['U']['shape']}, "
                f"peak traced {mem.get('peak_traced_bytes', float('nan')) / 2**20:.1f} MiB, "
                f"spectral / sigma_(k+1) {row['spectral_ratio']:.3f}")
        rows.append(row)
    return {"shape": list(A.shape), "nnz": int(A.nnz), "rank": k, "sigma_next": float(s_ref[k]),
            "dense_bytes": A.shape[0] * A.shape[1] * 8, "rows": rows, **_case_info(quiet, others)}


# -- targets and report ------------------------------------------------------------------------


PEAK_LIMIT = 2**30  # bytes: 1 GiB, against 80 GB for a dense 200000 x 50000 float64 array


def targets(cases) -> list[dict]:
    out = []

    def add(id_, text, passed, detail):
        out.append({"id": id_, "target": text, "status": "PASS" if passed else "FAIL", "detail": detail})

    if "slow" in cases:
        rows = cases["slow"]["rows"]
        verdicts, parts = [], []
        for k in RANKS:
            ours = next(r for r in rows if r["method"] == "randla" and r["rank"] == k)
            theirs = next(r for r in rows if r["method"] == "scipy" and r["rank"] == k)
            if ours.get("failure") or theirs.get("failure"):
                verdicts.append(False)
                parts.append(f"k={k}: failed ({ours.get('failure') or theirs.get('failure')})")
                continue
            spec = ours["spectral_ratio_mean"] / theirs["spectral_ratio_mean"]
            frob = ours["frobenius_ratio_mean"] / theirs["frobenius_ratio_mean"]
            speed = theirs["median_s"] / ours["median_s"]
            verdicts.append(spec <= 1.2 and frob <= 1.2 and speed >= 2)
            parts.append(f"k={k}: error {spec:.3f}x (spectral), {frob:.3f}x (Frobenius) scipy's; "
                         f"{speed:.1f}x faster ({ours['median_s']:.3f} vs {theirs['median_s']:.3f} s)")
        add("a", "dense slow decay, equal rank (50, 100): randla's ID error <= 1.2x scipy's (spectral and Frobenius, "
                 f"{len(SEEDS)}-seed means) and randla >= 2x faster", all(verdicts), "; ".join(parts))
    if "scaling" in cases:
        verdicts, parts = [], []
        for name in ("randla_countsketch", "randla_sparse_sign"):
            f = cases["scaling"]["methods"][name]["fit"]
            if f is None:
                verdicts.append(False)
                parts.append(f"{name}: failed")
                continue
            verdicts.append(f["loglog_slope"] <= 1.15)
            parts.append(f"{LABELS[name].split('sketch=')[1]}: {f['nnz_ratio']:.0f}x nnz -> "
                         f"{f['ratio_last_first']:.2f}x time, log-log slope {f['loglog_slope']:.2f}, "
                         f"worst step {f['max_step_growth']:.2f}x the nnz growth; t = {f['intercept_s']:.3f} s + "
                         f"{f['seconds_per_million_nnz']:.3f} s per 1M nnz (R^2 {f['r2']:.3f})")
        add("b", f"sparse ID time linear in nnz, same shape, {len(SCALING_NNZ)} sizes over "
                 f"{SCALING_NNZ[-1] // SCALING_NNZ[0]}x: t = a + b nnz, least-squares slope of log t on log nnz "
                 "<= 1.15 (no faster than linear)", all(verdicts), "; ".join(parts))
    if "cur" in cases:
        verdicts, parts = [], []
        for row in cases["cur"]["rows"]:
            if row.get("failure") or "memory" not in row:
                verdicts.append(False)
                parts.append(f"{row['method']}: {row.get('failure') or row.get('memory_failure')}")
                continue
            peak = row["memory"]["peak_traced_bytes"]
            verdicts.append(row["C"]["sparse"] and row["R"]["sparse"] and peak <= PEAK_LIMIT)
            parts.append(f"{row['method']}: C {row['C']['format']}, R {row['R']['format']}, "
                         f"peak {peak / 2**20:.0f} MiB")
        add("c", "CUR on sparse keeps C and R sparse; peak NumPy memory of the call <= 1 GiB "
                 f"(a dense m x n array: {cases['cur']['dense_bytes'] / 1e9:.0f} GB)", all(verdicts), "; ".join(parts))
    return out


def _f(x, fmt=".3f", none="—"):
    return none if x is None else format(x, fmt)


def markdown(results) -> str:
    cases = results["cases"]
    lines = ["# Interpolative decomposition and CUR benchmark", "",
             f"Generated by `bench/interp.py` (started {results['started_at']}), randla and "
             "`scipy.linalg.interpolative` in one process, timed round-robin (medians of the timed runs). "
             "Raw numbers: `interp.json`. Spectral errors by `randla.estimate_error` "
             f"({ERROR_POWER_ITERS} block power iterations on the implicit residual, block {ERROR_BLOCK}); "
             "Frobenius errors exact (dense cases).", "",
             "## Targets", "", "| target | status | measured |", "|---|---|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['id']}: {t['target']} | **{t['status']}** | {t['detail']} |")
    for key in ("slow", "fast"):
        if key not in cases:
            continue
        c = cases[key]
        seeds = (f"mean over seeds {', '.join(map(str, c['seeds']))} for randomized methods" if len(c["seeds"]) > 1
                 else f"seed {c['seeds'][0]}")
        lines += ["", f"## {key}: dense {c['shape'][0]}×{c['shape'][1]} {c['dtype']}, `{c['construction']}`", "",
                  "Column ID A ≈ A[:, idx] P at equal rank. Error columns are ratios to the optimum of the same "
                  f"rank ({seeds}). Other processes used {_f(c['other_processes_cores'], '.2f')} cores meanwhile.",
                  "",
                  "| method | k | median time (s) | × scipy time | ‖A − CP‖₂ / σ_(k+1) | ‖A − CP‖_F / optimal | runs |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for r in c["rows"]:
            if r.get("failure"):
                lines.append(f"| {r['label']} | {r['rank']} | fails: {r['failure']} | | | | |")
                continue
            lines.append(f"| {r['label']} | {r['rank']} | {r['median_s']:.3f} | {_f(r['x_scipy'], '.2f')} | "
                         f"{r['spectral_ratio_mean']:.3f} | {r['frobenius_ratio_mean']:.4f} | {len(r['times_s'])} |")
        lines += ["", "randla's default P at a fixed rank is the least-squares one for its columns, A[:, idx]^+ A "
                      "(one more pass over A); `coefficients='sketch'` reads P from the pivoted QR of the sketch "
                      "instead, without that pass."]
        if c.get("scipy_rand_is_deterministic"):
            lines += ["", "With this SciPy, `interp_decomp(A, k)` on a dense array returns exactly the answer of "
                          "`rand=False` for every seed tried: its randomized (SRFT) branch is unreachable, and "
                          "every call runs the column-pivoted QR of the whole of A. Its rows are scored once."]
        if "tolerance" in c:
            lines += ["", f"### {key}: equal tolerance", "",
                      "scipy's `eps` is a relative precision measured against the largest pivot (close to "
                      "‖A‖₂); randla's `tol` bounds ‖A − Â‖_F / ‖A‖_F. Both are given the same number and "
                      "both errors are shown; 'optimal rank' is the truncated SVD's rank for ‖·‖_F ≤ eps ‖A‖_F.", "",
                      "| method | eps | rank found | optimal rank | median time (s) | ‖A − CP‖₂ / ‖A‖₂ | "
                      "‖A − CP‖_F / ‖A‖_F | runs |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
            for r in c["tolerance"]:
                if r.get("failure"):
                    lines.append(f"| {r['label']} | {r['eps']:g} | fails: {r['failure']} | | | | | |")
                    continue
                lines.append(f"| {r['label']} | {r['eps']:g} | {r['rank']} | {r['optimal_rank']} | "
                             f"{r['median_s']:.3f} | "
                             f"{_f(r.get('relative_spectral'), '.4f')} | {_f(r.get('relative_frobenius'), '.4f')} | "
                             f"{len(r['times_s'])} |")
        if key == "slow":
            lines += ["", "Equal tolerance is not run on this matrix: with σ_i = i^(−1/2) the tail holds most of "
                          "‖A‖_F, so eps = 0.1 needs rank "
                          f"{optimal_rank(randla.testing.spectrum(3000, 'polynomial', rate=0.5), 0.1)} of 3000 "
                          "(scipy's `interp_decomp(A, 0.1)` returns rank 3000, in about 50 s on 2 cores)."]
        if "pieces" in c:
            lines += ["", f"### {key}: after the ID (rank {RANKS[0]})", "",
                      "| operation | median time (s) | ‖A − result‖_F / ‖A‖_F | runs |", "|---|---:|---:|---:|"]
            for r in c["pieces"]:
                if "scipy_relative_frobenius" in r:
                    lines.append(f"| the IDs themselves (scipy / randla) | | {r['scipy_relative_frobenius']:.4f} / "
                                 f"{r['randla_relative_frobenius']:.4f} | |")
                elif r.get("failure"):
                    lines.append(f"| {r['operation']} | fails: {r['failure']} | | |")
                else:
                    lines.append(f"| {r['operation']} | {r['median_s']:.4f} | {r['relative_frobenius']:.4f} | "
                                 f"{len(r['times_s'])} |")
    if "sparse" in cases:
        c = cases["sparse"]
        lines += ["", f"## sparse: CSR {c['shape'][0]}×{c['shape'][1]}, {c['nnz']:,} nonzeros, rank {c['rank']}", "",
                  f"`{c['construction']}`; σ_(k+1) = {c['sigma_next']:.6g} from `svds(A, k+1)` "
                  f"({c['reference_time_s']:.1f} s). scipy takes sparse input only as a LinearOperator, on which "
                  "`interp_decomp` is always randomized. Other processes used "
                  f"{_f(c['other_processes_cores'], '.2f')} cores meanwhile.", "",
                  "| method | median time (s) | × scipy time | ‖A − CP‖₂ / σ_(k+1) | ‖A − CP‖₂ / ‖A‖₂ | runs |",
                  "|---|---:|---:|---:|---:|---:|"]
        for r in c["rows"]:
            if r.get("failure"):
                lines.append(f"| {r['label']} | fails: {r['failure']} | | | | |")
                continue
            lines.append(f"| {r['label']} | {r['median_s']:.3f} | {_f(r['x_scipy'], '.2f')} | "
                         f"{r['spectral_ratio']:.3f} | "
                         f"{r['spectral'] / c['sigma_1']:.4f} | {len(r['times_s'])} |")
    if "scaling" in cases:
        c = cases["scaling"]
        lines += ["", f"## scaling: ID time against nnz, {c['shape'][0]}×{c['shape'][1]}, rank {c['rank']}", "",
                  f"`{c['construction']}`. Median times (s); fit t = a + b·nnz by least squares.", "",
                  "| method | " + " | ".join(f"{n / 1e6:g}M nnz" for n in c["nnz"])
                  + " | a (s) | b (s per 1M nnz) | R² | log-log slope | runs per size |",
                  "|---|" + "---:|" * (len(c["nnz"]) + 5)]
        for name, m in c["methods"].items():
            f = m["fit"] or {}
            lines.append(f"| {m['label']} | " + " | ".join(_f(t) for t in m["median_s"])
                         + f" | {_f(f.get('intercept_s'))} | {_f(f.get('seconds_per_million_nnz'))} | "
                           f"{_f(f.get('r2'), '.4f')} | {_f(f.get('loglog_slope'), '.2f')} | "
                           f"{min(m['runs'])}–{max(m['runs'])} |")
    if "cur" in cases:
        c = cases["cur"]
        lines += ["", f"## cur: randla.cur on the sparse matrix ({c['shape'][0]}×{c['shape'][1]}, "
                      f"{c['nnz']:,} nonzeros), rank {c['rank']}", "",
                  "Peak memory from a fresh process per method: the tracemalloc peak of the call (NumPy and SciPy "
                  "arrays are traced) and the growth of the process's peak RSS during the call. A dense "
                  f"m×n float64 array would take {c['dense_bytes'] / 1e9:.0f} GB.", "",
                  "| randla.cur options | median time (s) | C (format, nnz) | U shape | R (format, nnz) | peak traced (MiB) | "
                  "peak RSS growth (MiB) | ‖A − CUR‖₂ / σ_(k+1) | runs |",
                  "|---|---:|---|---|---|---:|---:|---:|---:|"]
        for r in c["rows"]:
            if r.get("failure"):
                lines.append(f"| {r['options']} | fails: {r['failure']} | | | | | | | |")
                continue
            mem = r.get("memory") or {}
            peak = mem.get("peak_traced_bytes")
            rss = mem.get("peak_rss_growth_bytes")
            label = ", ".join(f"{o}={v!r}" for o, v in r["options"].items())
            lines.append(f"| {label} | {r['median_s']:.3f} | {r['C']['format']}, {r['C']['nnz']:,} | "
                         f"{tuple(r['U']['shape'])} | {r['R']['format']}, {r['R']['nnz']:,} | "
                         f"{_f(None if peak is None else peak / 2**20, '.1f')} | "
                         f"{_f(None if rss is None else rss / 2**20, '.1f')} | {r['spectral_ratio']:.3f} | "
                         f"{len(r['times_s'])} |")
    lines += _environment.markdown_lines(results["environment"], results["elapsed_s"])
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CASES), help=f"comma-separated cases from {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per method (default 5; fewer if a "
                                                               "case runs out of time)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output folder")
    parser.add_argument("--report-only", action="store_true",
                        help="recompute targets and interp.md from the interp.json in --out, without running")
    parser.add_argument("--child-cur", choices=list(CUR_VARIANTS), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_cur:
        print(json.dumps(cur_child(args.child_cur)))
        return
    if args.report_only:
        results = json.loads((args.out / "interp.json").read_text())
        results["targets"] = targets(results["cases"])
        write_results(args.out, "interp", results, markdown(results))
        return
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(only) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    whole_run = _environment.OtherLoad()
    results = {"started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "environment": _environment.describe(),
               "parameters": {"ranks": RANKS, "tolerances": TOLS, "sparse_rank": SPARSE_RANK, "seeds": SEEDS,
                              "repeats": args.repeats, "pause_s": PAUSE, "scaling_nnz": SCALING_NNZ,
                              "estimate_error_power_iters": ERROR_POWER_ITERS,
                              "estimate_error_block_size": ERROR_BLOCK, "cases": only},
               "cases": {}}
    cases = results["cases"]
    if "slow" in only:
        cases["slow"] = dense_case("slow", *SLOW, repeats=args.repeats, seeds=SEEDS, tolerance=False, pieces=True)
    if "fast" in only:
        # One seed: target a is judged on the slow-decay matrix, where the seeds are averaged.
        cases["fast"] = dense_case("fast", *FAST, repeats=args.repeats, seeds=SEEDS[:1], tolerance=True,
                                   pieces=False)
    if "sparse" in only:
        cases["sparse"] = sparse_case(repeats=args.repeats)
    if "scaling" in only:
        cases["scaling"] = scaling_case(repeats=args.repeats)
    if "cur" in only:
        cases["cur"] = cur_case(repeats=args.repeats)
    results["environment"]["other_processes_cores"] = whole_run.cores()
    results["elapsed_s"] = time.perf_counter() - _T0
    results["targets"] = targets(cases)
    write_results(args.out, "interp", results, markdown(results))
    log(f"wrote {args.out / 'interp.md'} and {args.out / 'interp.json'}")
    for t in results["targets"]:
        log(f"{t['status']:>5}  {t['id']}: {t['detail']}")
    log(f"total {results['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
