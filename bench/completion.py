"""Matrix-completion benchmark: randla.complete against fancyimpute's SoftImpute and a dense iterative SVD.

Writes bench/results/completion.md and completion.json. Cases (``--only``):

- small: ``randla.testing.ratings(2000, 1500, 300000, rank=10, noise=0.5,
  rng=0)`` (10% of the entries observed), split ``.split(0.1, rng=1)`` into
  train and test. Peers on the dense 2000 x 1500 array (NaN where not
  observed): fancyimpute ``SoftImpute`` with its defaults (shrinkage =
  sigma_1 of the zero-filled matrix / 50, a full SVD per iteration) and with
  ``max_rank`` = randla's rank cap (randomized SVD per iteration), and hard
  impute written here (fill, exact SVD, keep rank 10, repeat). randla with
  fancyimpute's shrinkage as ``reg`` (the same problem (1)) at two rank caps,
  and with its defaults (``reg`` chosen on a held-out part of the training
  entries), for each of its methods, and ``method="bayes"`` (nothing to
  choose). Each call is timed (median of three, or
  once if its first call took over 30 s) and scored by test RMSE.
- large: ``ratings(10**6, 10**5, 10**7, rank=20, noise=1.0, rng=0)``,
  randla alone with its defaults (path of 6 ``reg`` values, rank 20) in a
  fresh process: time, peak RSS, test RMSE, and the RMSE of the Bayes
  oracle that knows the column factors and the prior of the row factors.
- large-bayes: the same with ``method="bayes"``.

RMSE is compared with the noise level, the best any predictor can do with
the true matrix known. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import inspect
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _environment  # noqa: E402
from _output import jsonable, write_results  # noqa: E402
from _timing import Task, round_robin  # noqa: E402

import randla  # noqa: E402

CASES = ("small", "large", "large-bayes")
SMALL = {"m": 2000, "n": 1500, "observed_fraction": 0.1, "rank": 10, "noise": 0.5}
LARGE = {"m": 10**6, "n": 10**5, "n_observed": 10**7, "rank": 20, "noise": 1.0, "n_reg": 6}
LARGE_METHODS = {"large": "softimpute_als", "large-bayes": "bayes"}  # case -> randla.complete's method
TEST_FRACTION = 0.1
RANK_CAP = 10  # randla's rank in the small case, the planted rank
WIDE_CAP = 20  # the second cap is max(WIDE_CAP, the rank of fancyimpute's solution)
METHODS = ("softimpute", "softimpute_als", "altmin")
SLOW_S = 30.0  # a call whose first run takes longer is timed once
BUSY_CORES = 0.25  # other processes' load above which a row is flagged
HARD_TOL, HARD_MAX_ITER = 1e-3, 100  # as fancyimpute's defaults
ORACLE_SAMPLE = 2000
SPEEDUP = 5.0
LARGE_TIME_S, LARGE_PEAK_BYTES, LARGE_RMSE_RATIO = 600.0, 6 * 2**30, 1.05
PAUSE = 0.15
_T0 = time.perf_counter()


def log(msg: str):
    print(f"[{time.perf_counter() - _T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def rmse(pred, truth) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - truth) ** 2)))


def split(m: int, n: int, n_observed: int, rank: int, noise: float, dtype=np.float64):
    data = randla.testing.ratings(m, n, n_observed, rank=rank, noise=noise, dtype=dtype, rng=0)
    train, test = data.split(TEST_FRACTION, rng=1)
    return data, train, test


# -- the Bayes oracle ----------------------------------------------------------------------------


def oracle(data, train, test, *, sample: int, rng) -> dict:
    """RMSE of the best predictor that knows the column factors V and the prior of the row factors.

    Row i's factor u has prior N(0, diag(var_c)) (var_c the variance of the
    planted row factors' component c); given V and row i's training entries
    J_i, its posterior has precision P = diag(1 / var_c) + V_J^T V_J / noise^2,
    and the expected squared error at a held-out (i, j) is
    noise^2 + v_j^T P^-1 v_j. Averaged over ``sample`` random test entries.
    """
    rng = np.random.default_rng(rng)
    pick = rng.choice(test.rows.size, size=min(sample, test.rows.size), replace=False)
    order = np.argsort(train.rows, kind="stable")
    starts = np.concatenate([[0], np.cumsum(np.bincount(train.rows, minlength=data.shape[0]))])
    cols, values = train.cols[order], train.values[order]
    V, noise2 = data.col_factors, data.noise**2
    prior = np.diag(1.0 / data.row_factors.var(axis=0))
    expected, realized, posterior = [], [], {}
    for t in pick:
        i, j = int(test.rows[t]), int(test.cols[t])
        if i not in posterior:
            part = slice(starts[i], starts[i + 1])
            VJ = V[cols[part]]
            cov = np.linalg.inv(prior + VJ.T @ VJ / noise2)
            posterior[i] = (cov, cov @ (VJ.T @ values[part]) / noise2)
        cov, mean = posterior[i]
        expected.append(noise2 + V[j] @ cov @ V[j])
        realized.append((V[j] @ mean - test.values[t]) ** 2)
    n_train = np.bincount(train.rows, minlength=data.shape[0])
    return {"rmse": float(np.sqrt(np.mean(expected))), "realized_rmse": float(np.sqrt(np.mean(realized))),
            "sample": int(pick.size), "noise": data.noise, "ratio": float(np.sqrt(np.mean(expected))) / data.noise,
            "train_per_row_mean": float(n_train.mean()), "train_per_row_median": float(np.median(n_train)),
            "rows_with_at_most_5": float(np.mean(n_train <= 5))}


# -- peers ---------------------------------------------------------------------------------------


def shim_fancyimpute() -> str | None:
    """Let fancyimpute 0.7 run on a scikit-learn whose check_array lost ``force_all_finite``.

    fancyimpute 0.7.0 calls ``check_array(X, force_all_finite=False)``; newer
    scikit-learn names the argument ``ensure_all_finite``. The check_array of
    the two fancyimpute modules that call it is replaced by a wrapper that
    renames it; nothing else changes. Returns a description, or None if no
    shim was needed.
    """
    import fancyimpute.soft_impute
    import fancyimpute.solver
    from sklearn.utils import check_array

    if "force_all_finite" in inspect.signature(check_array).parameters:
        return None

    def check_array_renamed(*args, force_all_finite=None, **kwargs):
        if force_all_finite is not None:
            kwargs["ensure_all_finite"] = force_all_finite
        return check_array(*args, **kwargs)

    for module in (fancyimpute.solver, fancyimpute.soft_impute):
        module.check_array = check_array_renamed
    return ("sklearn.utils.check_array in fancyimpute.solver and fancyimpute.soft_impute replaced by a wrapper "
            "that passes force_all_finite on as ensure_all_finite")


def fancy_softimpute(X_nan, **options) -> dict:
    """fancyimpute's SoftImpute().fit_transform, recording its shrinkage, ranks and convergence.

    The solver's own ``_svd_step`` and ``_converged`` are wrapped on the
    instance to read what they compute; the computation is unchanged.
    """
    from fancyimpute import SoftImpute

    solver = SoftImpute(verbose=False, **options)
    seen = {"ranks": [], "converged": False}
    svd_step, check = solver._svd_step, solver._converged

    def recording_step(X, shrinkage_value, max_rank=None):
        Z, rank = svd_step(X, shrinkage_value, max_rank=max_rank)
        seen["ranks"].append(int(rank))
        seen["shrinkage"], seen["Z"] = float(shrinkage_value), Z
        return Z, rank

    def recording_check(X_old, X_new, missing_mask):
        seen["converged"] = bool(check(X_old, X_new, missing_mask))
        return seen["converged"]

    solver._svd_step, solver._converged = recording_step, recording_check
    seen["filled"] = solver.fit_transform(X_nan)
    return seen


def hard_impute(X0, observed, rank: int) -> dict:
    """Fill the unobserved entries with the rank-``rank`` truncation of the filled matrix, repeat.

    Starts from zeros; each step is an exact dense SVD. Stops when the filled
    entries change by less than HARD_TOL relatively (fancyimpute's rule) or
    after HARD_MAX_ITER steps.
    """
    X, missing = X0.copy(), ~observed
    filled = np.zeros(int(missing.sum()))
    converged, it = False, 0
    for it in range(1, HARD_MAX_ITER + 1):
        U, s, Vh = np.linalg.svd(X, full_matrices=False)
        Z = (U[:, :rank] * s[:rank]) @ Vh[:rank]
        new = Z[missing]
        before = np.linalg.norm(filled)
        change = np.linalg.norm(new - filled) / before if before > 0 else np.inf
        X[missing], filled = new, new
        if change < HARD_TOL:
            converged = True
            break
    return {"Z": Z, "n_iter": it, "converged": converged}


def objective(train, Z_values, nuclear: float, reg: float) -> float:
    """Problem (1) of randla.completion: 1/2 ||P_Omega(X - Z)||^2 + reg ||Z||_*."""
    r = train.values - Z_values
    return 0.5 * float(r @ r) + reg * nuclear


# -- timing: each call once, then the fast ones twice more, round-robin ----------------------------


def first_calls(specs: dict) -> tuple[dict, dict, dict]:
    """One timed call of each spec: (times, results, failures)."""
    t = round_robin([Task(name, fn, repeats=1, warmup=False) for name, fn in specs.items()], pause=PAUSE, log=log)
    return t.times, t.first, t.failures


def more_calls(specs: dict, times: dict, repeats: int):
    """Time the specs whose first call was under SLOW_S ``repeats - 1`` more times, rotating."""
    fast = {n: fn for n, fn in specs.items() if n in times and times[n][0] <= SLOW_S}
    if repeats > 1 and fast:
        t = round_robin([Task(n, fn, repeats=repeats - 1, warmup=False) for n, fn in fast.items()], pause=PAUSE,
                        log=log)
        for n, extra in t.times.items():
            times[n] = times[n] + extra


def watched(key, fn, load: dict):
    """``fn`` that also records the cores other processes kept busy during each call in ``load[key]``.

    On 2 cores a neighbour using one makes multi-threaded BLAS calls wait for
    each other many times over: a call timed then is not comparable.
    """
    def run():
        probe = _environment.OtherLoad()
        out = fn()
        load.setdefault(key, []).append(probe.cores())
        return out

    return run


# -- the small case ------------------------------------------------------------------------------


def small_case(m: int, n: int, *, repeats: int) -> dict:
    n_observed = int(m * n * SMALL["observed_fraction"])
    construction = (f"randla.testing.ratings({m}, {n}, {n_observed}, rank={SMALL['rank']}, noise={SMALL['noise']}, "
                    f"rng=0).split({TEST_FRACTION}, rng=1)")
    log(f"case small: {construction}")
    quiet, others = _environment.wait_until_quiet(max_wait=5.0), _environment.OtherLoad()
    data, train, test = split(m, n, n_observed, SMALL["rank"], SMALL["noise"])
    shape, noise = data.shape, data.noise
    X0 = np.zeros(shape)
    X0[train.rows, train.cols] = train.values
    observed = np.zeros(shape, dtype=bool)
    observed[train.rows, train.cols] = True
    X_nan = np.where(observed, X0, np.nan)
    sigma_1 = float(sla.svds(sp.csr_matrix(X0), k=1, return_singular_vectors=False,
                             v0=np.random.default_rng(0).standard_normal(n))[0])
    reference_shrinkage = sigma_1 / 50
    log(f"  sigma_1 of the zero-filled training matrix {sigma_1:.4f} (svds); / 50 = {reference_shrinkage:.5f}")
    shim = shim_fancyimpute()
    truth_rmse = rmse(data.truth(test.rows, test.cols), test.values)

    rows, specs, scorers, load = {}, {}, {}, {}

    def add(key, label, kind, fn, score):
        rows[key] = {"key": key, "label": label, "kind": kind}
        specs[key], scorers[key] = watched(key, fn, load), score

    def score_fancy(res):
        Z = res["Z"]
        pred = res["filled"][test.rows, test.cols]
        nuclear = float(np.sum(np.linalg.svd(Z, compute_uv=False)))
        return {"prediction": pred, "rank": res["ranks"][-1], "n_iter": len(res["ranks"]),
                "converged": res["converged"], "shrinkage": res["shrinkage"],
                "objective": objective(train, Z[train.rows, train.cols], nuclear, res["shrinkage"])}

    def score_hard(res):
        return {"prediction": res["Z"][test.rows, test.cols], "rank": RANK_CAP, "n_iter": res["n_iter"],
                "converged": res["converged"]}

    add("fancy", "fancyimpute SoftImpute() (defaults: full SVD per iteration)", "peer",
        lambda: fancy_softimpute(X_nan), score_fancy)
    add("fancy_max_rank", f"fancyimpute SoftImpute(max_rank={RANK_CAP}) (randomized SVD per iteration)", "peer",
        lambda: fancy_softimpute(X_nan, max_rank=RANK_CAP), score_fancy)
    add("hard_impute", f"hard impute, dense np.linalg.svd, rank {RANK_CAP}", "peer",
        lambda: hard_impute(X0, observed, RANK_CAP), score_hard)
    times, first, failures = first_calls(specs)

    fancy = first.get("fancy")
    shrinkage = fancy["shrinkage"] if fancy else reference_shrinkage
    fancy_rank = fancy["ranks"][-1] if fancy else None
    wide = min(max(WIDE_CAP, fancy_rank or 0), min(shape))
    log(f"  fancyimpute shrinkage {shrinkage:.5f}, rank of its solution {fancy_rank}; randla caps {RANK_CAP}, {wide}")

    def randla_fit(method, rank, reg, validation=None):
        return lambda: randla.complete(train.rows, train.cols, train.values, shape=shape, rank=rank, method=method,
                                       reg=reg, validation=validation, rng=0)

    def score_randla(r):
        row = {"prediction": r.predict(test.rows, test.cols), "rank": r.rank, "n_iter": r.n_iter,
               "path_iter": sum(p.n_iter for p in r.path), "converged": r.converged, "reg": r.reg,
               "path": [vars(p) for p in r.path]}
        if not r.path and r.method != "bayes":
            row["objective"] = objective(train, r.predict(train.rows, train.cols), float(np.sum(r.S)), r.reg)
        return row

    randla_specs = {}
    for rank in dict.fromkeys((RANK_CAP, wide)):
        for method in METHODS:
            key = f"randla_{method}_reg_rank{rank}"
            add(key, f"randla.complete(method='{method}', reg=fancyimpute's, rank={rank})", "same_reg",
                randla_fit(method, rank, shrinkage), score_randla)
            rows[key].update(method=method, rank_cap=rank)
            randla_specs[key] = specs[key]
    for method in (*METHODS, "bayes"):
        key = f"randla_{method}_default"
        how = "no reg: priors and noise fitted" if method == "bayes" else "reg chosen on held-out training entries"
        add(key, f"randla.complete(method='{method}', rank={RANK_CAP}) ({how})", "default",
            randla_fit(method, RANK_CAP, None), score_randla)
        rows[key].update(method=method, rank_cap=RANK_CAP)
        randla_specs[key] = specs[key]
    t2, f2, e2 = first_calls(randla_specs)
    times.update(t2)
    first.update(f2)
    failures.update(e2)
    more_calls(specs, times, repeats)

    for key, row in rows.items():
        if key in failures:
            row["failure"] = failures[key]
            continue
        scored = scorers[key](first[key])
        pred = scored.pop("prediction")
        row.update(scored)
        row["times_s"] = times[key]
        row["other_cores"] = load.get(key, [])
        row["median_s"] = statistics.median(times[key])
        row["timed_once"] = len(times[key]) == 1
        row["test_rmse"] = rmse(pred, test.values)
        row["rmse_over_noise"] = row["test_rmse"] / noise
    base = rows["fancy"].get("median_s")
    for row in rows.values():
        row["x_fancy"] = base / row["median_s"] if base and row.get("median_s") else None
        if "failure" not in row:
            log(f"  {row['key']}: {row['median_s']:.2f} s ({len(row['times_s'])} runs), test RMSE "
                f"{row['test_rmse']:.5f} ({row['rmse_over_noise']:.4f} x noise), rank {row['rank']}, "
                f"{row['n_iter']} iterations, converged {row['converged']}")
    curves = rmse_curves(rows, randla_fit, shrinkage, test, rows["fancy"].get("test_rmse"))
    return {"construction": construction, "shape": list(shape), "n_observed": n_observed,
            "n_train": int(train.rows.size), "n_test": int(test.rows.size), "noise": noise,
            "truth_test_rmse": truth_rmse, "oracle": oracle(data, train, test, sample=ORACLE_SAMPLE, rng=2),
            "sigma_1_zero_filled": sigma_1, "reference_shrinkage": reference_shrinkage, "shrinkage": shrinkage,
            "fancy_rank": fancy_rank, "rank_caps": [RANK_CAP, wide], "fancyimpute_shim": shim,
            "repeats": repeats, "slow_s": SLOW_S, "rows": list(rows.values()), "curves": curves,
            "quiet_wait": quiet, "other_processes_cores": others.cores(),
            "load_average_after": _environment.load_average()}


def rmse_curves(rows, randla_fit, shrinkage, test, target) -> list[dict]:
    """Test RMSE after each iteration of the fixed-reg fits (untimed reruns with the test entries as validation).

    With a single ``reg`` the validation entries are only monitored, so the
    fit is the timed one. Entry i of the curve is the model after i + 1
    iterations, as in the fit's history; the last is the returned model.
    """
    out = []
    for row in rows.values():
        if row["kind"] != "same_reg" or "failure" in row:
            continue
        fit = randla_fit(row["method"], row["rank_cap"], shrinkage, (test.rows, test.cols, test.values))()
        curve = [float(v) for v in fit.history.validation_rmse]
        reached = next((i + 1 for i, v in enumerate(curve) if target is not None and v <= target), None)
        out.append({"key": row["key"], "label": row["label"], "curve": curve, "n_iter": fit.n_iter,
                    "first_iteration_at_or_below_fancy": reached})
        log(f"  curve {row['key']}: {len(curve)} iterations, at or below fancyimpute's test RMSE from "
            f"iteration {reached}")
    return out


# -- the large case: a fresh process -------------------------------------------------------------


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{field} not in /proc/self/status")


def large_child(m: int, n: int, n_observed: int, method: str) -> dict:
    """Generate, fit with ``method``'s defaults, predict; time and peak memory of the fit."""
    t0 = time.perf_counter()
    # Ratings in float32, as recommendation data are stored: half the memory and bandwidth.
    data, train, test = split(m, n, n_observed, LARGE["rank"], LARGE["noise"], dtype=np.float32)
    data_s = time.perf_counter() - t0
    generation_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    how = "VmHWM after resetting it (/proc/self/clear_refs) once the data were made"
    try:  # reset the peak RSS to the current RSS, so that making the data does not count
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        rss_before = _status_bytes("VmRSS")
    except OSError:
        how, rss_before = "ru_maxrss (includes making the data)", generation_peak
    t0 = time.perf_counter()
    r = randla.complete(train.rows, train.cols, train.values, shape=data.shape, rank=LARGE["rank"],
                        method=method, reg=None, n_reg=LARGE["n_reg"], rng=0)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = r.predict(test.rows, test.cols)
    predict_s = time.perf_counter() - t0
    fit_peak = _status_bytes("VmHWM") if how.startswith("VmHWM") else resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss * 1024
    iterations = sum(p.n_iter for p in r.path) + r.n_iter
    test_rmse = rmse(pred, test.values)
    out = {"m": m, "n": n, "n_observed": n_observed, "n_train": int(train.rows.size), "n_test": int(test.rows.size),
           "noise": data.noise, "method": r.method, "data_s": data_s, "fit_s": fit_s, "predict_s": predict_s,
           "total_s": fit_s + predict_s, "iterations": iterations, "noise_fitted": r.noise,
           "refit_iterations": r.n_iter,
           "seconds_per_iteration": fit_s / iterations, "converged": r.converged, "reg": r.reg, "rank": r.rank,
           "path": [vars(p) for p in r.path], "test_rmse": test_rmse, "rmse_over_noise": test_rmse / data.noise,
           "rss_method": how, "rss_before_fit_bytes": rss_before, "fit_peak_rss_bytes": fit_peak,
           "fit_peak_rss_growth_bytes": fit_peak - rss_before, "generation_peak_rss_bytes": generation_peak,
           "total_peak_rss_bytes": max(fit_peak, generation_peak)}
    out["oracle"] = oracle(data, train, test, sample=ORACLE_SAMPLE, rng=2)
    return out


def large_case(name: str, m: int, n: int, n_observed: int) -> dict:
    construction = (f"randla.testing.ratings({m}, {n}, {n_observed}, rank={LARGE['rank']}, noise={LARGE['noise']}, "
                    f"dtype=np.float32, rng=0).split({TEST_FRACTION}, rng=1)")
    method = LARGE_METHODS[name]
    log(f"case {name}: {construction}; randla.complete(rank={LARGE['rank']}, method={method!r}) in a fresh process")
    quiet, others = _environment.wait_until_quiet(max_wait=5.0), _environment.OtherLoad()
    out = subprocess.run([sys.executable, __file__, "--child-large", str(m), str(n), str(n_observed), method],
                         capture_output=True, text=True, check=False)
    case = {"construction": construction, "nominal": (m, n, n_observed) == (LARGE["m"], LARGE["n"],
                                                                              LARGE["n_observed"]),
            "rank_cap": LARGE["rank"], "n_reg": LARGE["n_reg"], "quiet_wait": quiet}
    if out.returncode != 0:
        case["failure"] = (out.stderr.strip().splitlines() or ["no output"])[-1]
        log(f"  fails: {case['failure']}")
    else:
        case.update(json.loads(out.stdout.strip().splitlines()[-1]))
        log(f"  fit {case['fit_s']:.1f} s ({case['iterations']} iterations, {case['seconds_per_iteration']:.3f} s "
            f"each), peak RSS {case['fit_peak_rss_bytes'] / 2**30:.2f} GiB, test RMSE {case['test_rmse']:.4f} "
            f"({case['rmse_over_noise']:.4f} x noise; oracle {case['oracle']['ratio']:.4f} x noise)")
    case["other_processes_cores"] = others.cores()
    return case


# -- targets and report --------------------------------------------------------------------------


def _status(passed) -> str:
    return "n/a" if passed is None else ("PASS" if passed else "FAIL")


def targets(cases) -> list[dict]:
    out = []

    def add(id_, text, passed, detail):
        out.append({"id": id_, "target": text, "status": _status(passed), "detail": detail})

    if "small" in cases:
        c = cases["small"]
        fancy = next(r for r in c["rows"] if r["key"] == "fancy")
        text = (f"small: randla reaches fancyimpute's test RMSE at least {SPEEDUP:g}x faster (test RMSE <= "
                "fancyimpute's, strictly, no tolerance; time by medians)")
        if "failure" in fancy:
            add("small", text, None, f"fancyimpute fails: {fancy['failure']}")
        else:
            ours = [r for r in c["rows"] if r["kind"] != "peer" and "failure" not in r]
            good = [r for r in ours if r["test_rmse"] <= fancy["test_rmse"] and r["x_fancy"] >= SPEEDUP]
            if good:
                best = max(good, key=lambda r: r["x_fancy"])
                detail = (f"{best['label']}: {best['x_fancy']:.1f}x faster ({best['median_s']:.2f} s vs "
                          f"{fancy['median_s']:.1f} s), test RMSE {best['test_rmse']:.5f} vs {fancy['test_rmse']:.5f}; "
                          f"{len(good)} of {len(ours)} randla rows qualify")
            else:
                near = [r["x_fancy"] for r in ours if r["test_rmse"] <= fancy["test_rmse"]]
                detail = (f"fancyimpute {fancy['test_rmse']:.5f} in {fancy['median_s']:.1f} s; "
                          + (f"fastest randla row at or below it: {max(near):.1f}x faster" if near
                             else "no randla row at or below it"))
            busy = _busy(fancy)
            if busy is not None and busy > BUSY_CORES:
                detail += (f" (fancyimpute was timed while other processes kept {busy:.2f} cores busy: its time is "
                           "inflated, the speed-up overstated)")
            add("small", text, bool(good), detail)
    for name in (n for n in LARGE_METHODS if n in cases):
        c = cases[name]
        text = (f"{name} (method {LARGE_METHODS[name]!r}): held-out RMSE within 5% of the noise level in < "
                f"{LARGE_TIME_S / 60:g} min with peak < {LARGE_PEAK_BYTES / 2**30:g} GiB")
        if "failure" in c:
            add(name, text, False, f"fails: {c['failure']}")
        else:
            parts = [(c["rmse_over_noise"] <= LARGE_RMSE_RATIO, f"RMSE / noise {c['rmse_over_noise']:.4f} (bound "
                      f"{LARGE_RMSE_RATIO}): {_status(c['rmse_over_noise'] <= LARGE_RMSE_RATIO)}"),
                     (c["total_s"] < LARGE_TIME_S, f"fit + predict {c['total_s']:.0f} s (bound {LARGE_TIME_S:.0f} s): "
                      f"{_status(c['total_s'] < LARGE_TIME_S)}"),
                     (c["fit_peak_rss_bytes"] < LARGE_PEAK_BYTES, f"peak RSS {c['fit_peak_rss_bytes'] / 2**30:.2f} "
                      f"GiB (bound {LARGE_PEAK_BYTES / 2**30:g} GiB): "
                      f"{_status(c['fit_peak_rss_bytes'] < LARGE_PEAK_BYTES)}")]
            detail = "; ".join(p for _, p in parts) + (
                f"; Bayes oracle RMSE / noise {c['oracle']['ratio']:.4f}"
                + ("" if c["nominal"] else "; reduced size, not the target's case"))
            add(name, text, all(ok for ok, _ in parts) if c["nominal"] else None, detail)
    return out


def _f(x, fmt=".3f", none="—"):
    return none if x is None else format(x, fmt)


def _time(t):
    return "—" if t is None else (f"{t:.3f}" if t < 10 else f"{t:.1f}")


def _busy(row):
    """The largest load other processes put on the machine during one of the row's timed calls."""
    seen = [x for x in row.get("other_cores", []) if x is not None]
    return max(seen) if seen else None


def small_markdown(c) -> list[str]:
    fancy = next(r for r in c["rows"] if r["key"] == "fancy")
    o = c["oracle"]
    lines = ["", f"## small: {c['shape'][0]}×{c['shape'][1]}, {c['n_observed']:,} observed entries", "",
             f"`{c['construction']}`: {c['n_train']:,} training and {c['n_test']:,} test entries; noise "
             f"{c['noise']:g}. On the test entries the true matrix itself has RMSE {c['truth_test_rmse']:.5f} "
             f"({c['truth_test_rmse'] / c['noise']:.4f} × noise), and the Bayes oracle (column factors and the "
             f"row-factor prior known; {o['sample']} test entries) {o['rmse']:.5f} ({o['ratio']:.4f} × noise).", "",
             f"fancyimpute's shrinkage (its σ₁ of the zero-filled training matrix, randomized, / 50): "
             f"{_f(fancy.get('shrinkage'), '.5f')}; σ₁ by `svds` / 50: {c['reference_shrinkage']:.5f}. Its solution "
             f"has rank {_f(c['fancy_rank'], 'd')}. The \"same reg\" rows give randla that shrinkage as `reg`: they "
             f"solve fancyimpute's problem (1) with rank caps {c['rank_caps'][0]} and {c['rank_caps'][1]} "
             f"(the larger of {WIDE_CAP} and fancyimpute's rank). Default rows: `reg=None` (a path chosen on 10% of "
             "the training entries, then a refit on all of them), end to end; `method='bayes'` has no `reg`.", "",
             f"Times: median of {c['repeats']} calls, or one call (marked ¹) when the first took over "
             f"{c['slow_s']:g} s. Other processes used {_f(c['other_processes_cores'], '.2f')} cores meanwhile.", "",
             "| method | time (s) | × faster than fancyimpute | test RMSE | RMSE / noise | rank | iterations | "
             "converged | objective (1) | other processes (cores) |", "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for r in c["rows"]:
        if "failure" in r:
            lines.append(f"| {r['label']} | fails: {r['failure']} | | | | | | | | |")
            continue
        busy = _busy(r)
        iters = f"{r['n_iter']}" + (f" (+{r['path_iter']} on the path)" if r.get("path_iter") else "")
        reg = f", reg {r['reg']:.4g}" if r["kind"] == "default" and r.get("path") else ""
        lines.append(f"| {r['label']}{reg} | {_time(r['median_s'])}{'¹' if r['timed_once'] else ''} | "
                     f"{_f(r['x_fancy'], '.1f')} | {r['test_rmse']:.5f} | {r['rmse_over_noise']:.4f} | {r['rank']} | "
                     f"{iters} | {'yes' if r['converged'] else 'no'} | {_f(r.get('objective'), '.1f')} | "
                     f"{_f(busy, '.2f')}{'²' if busy is not None and busy > BUSY_CORES else ''} |")
    if any((_busy(r) or 0) > BUSY_CORES for r in c["rows"]):
        lines += ["", f"² Other processes kept more than {BUSY_CORES} cores busy on average during this row's timed "
                      "calls (the last column, largest over its calls). On 2 cores a neighbour's load makes the "
                      "threads of a multi-threaded BLAS call wait for each other, which can slow a dense call many "
                      "times over: such a time, and its × faster, are not comparable with the others."]
    lines += ["", "Objective (1) = ½‖P_Ω(X − Z)‖² + reg‖Z‖_* at fancyimpute's shrinkage, for the rows that "
                  "solve it (lower is better; a rank cap below the solution's rank raises the attainable minimum)."]
    if c.get("fancyimpute_shim"):
        lines += ["", f"fancyimpute 0.7.0 runs here only with a shim in the benchmark: {c['fancyimpute_shim']}."]
    if c["curves"] and "failure" not in fancy:
        lines += ["", "### Time to fancyimpute's test RMSE", "",
                  f"Test RMSE after each iteration of the same-reg fits, from reruns with the test entries passed as "
                  f"`validation` (with one `reg` they are only monitored), after each iteration from the first. Time "
                  f"at an iteration is estimated as the median time × iteration / iterations (the start's SVD "
                  f"is not proportional). fancyimpute: {fancy['test_rmse']:.5f} in {_time(fancy['median_s'])} s.", "",
                  "| randla fit | iterations | first iteration at or below | test RMSE there | share of the fit | "
                  "estimated time (s) | × faster than fancyimpute |", "|---|---:|---:|---:|---:|---:|---:|"]
        medians = {r["key"]: r.get("median_s") for r in c["rows"]}
        for cv in c["curves"]:
            i, total = cv["first_iteration_at_or_below_fancy"], len(cv["curve"])
            if i is None:
                lines.append(f"| {cv['label']} | {total} | never | {min(cv['curve']):.5f} (best) | | | |")
                continue
            share = i / total
            t = medians[cv["key"]] * share if medians.get(cv["key"]) else None
            lines.append(f"| {cv['label']} | {total} | {i} | {cv['curve'][i - 1]:.5f} | {share:.2f} | {_time(t)} | "
                         f"{_f(fancy['median_s'] / t if t else None, '.1f')} |")
    defaults = [r for r in c["rows"] if r["kind"] == "default" and r.get("path")]
    if defaults:
        lines += ["", "### Paths of the default rows", "",
                  "| method | reg | rank | train RMSE | validation RMSE | iterations | converged |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for r in defaults:
            for p in r["path"]:
                chosen = " (chosen)" if p["reg"] == r["reg"] else ""
                lines.append(f"| {r['method']} | {p['reg']:.4g}{chosen} | {p['rank']} | {p['train_rmse']:.5f} | "
                             f"{p['validation_rmse']:.5f} | {p['n_iter']} | {'yes' if p['converged'] else 'no'} |")
    return lines


def large_markdown(name, c) -> list[str]:
    lines = ["", f"## {name}: randla alone, `{c['construction']}`", ""]
    if not c["nominal"]:
        lines += ["**Reduced size** (development run): not the target's case.", ""]
    if "failure" in c:
        return lines + [f"Fails: {c['failure']}"]
    o, path = c["oracle"], bool(c["path"])
    call = (f"rank={c['rank_cap']}, reg=None, n_reg={c['n_reg']}, rng=0)` (method `{c['method']}`: a path of "
            f"{c['n_reg']} reg values, chosen on 10% of the training entries, then a refit)" if path
            else f"rank={c['rank_cap']}, method='{c['method']}', rng=0)` (nothing to choose)")
    lines += [f"`randla.complete(rows, cols, values, shape, {call} on {c['n_train']:,} training entries of a "
              f"{c['m']:,}×{c['n']:,} matrix, in a fresh process; {c['n_test']:,} test entries. Other processes "
              f"used {_f(c['other_processes_cores'], '.2f')} cores meanwhile.", "",
              "| quantity | value |", "|---|---:|",
              f"| making the data (s, not counted) | {c['data_s']:.1f} |",
              f"| fit{', path and refit' if path else ''} (s) | {c['fit_s']:.1f} |",
              f"| predict the test entries (s) | {c['predict_s']:.2f} |",
              (f"| iterations (path + refit) | {c['iterations']} ({c['iterations'] - c['refit_iterations']} + "
               f"{c['refit_iterations']}) |" if path else f"| iterations | {c['iterations']} |"),
              f"| seconds per iteration | {c['seconds_per_iteration']:.3f} |",
              f"| peak RSS during the fit (GiB) | {c['fit_peak_rss_bytes'] / 2**30:.2f} |",
              f"| growth of the peak RSS during the fit (GiB) | {c['fit_peak_rss_growth_bytes'] / 2**30:.2f} |",
              f"| peak RSS of the process, making the data included (GiB) | {c['total_peak_rss_bytes'] / 2**30:.2f} |",
              (f"| chosen reg, rank | {c['reg']:.4g}, {c['rank']} |" if path
               else f"| fitted noise level, rank | {c['noise_fitted']:.4f}, {c['rank']} |"),
              f"| {'refit ' if path else ''}converged | {'yes' if c['converged'] else 'no'} |",
              f"| test RMSE | {c['test_rmse']:.5f} |",
              f"| test RMSE / noise | {c['rmse_over_noise']:.4f} |",
              f"| Bayes oracle RMSE / noise (expected; realized on the sample) | {o['ratio']:.4f}; "
              f"{o['realized_rmse'] / o['noise']:.4f} |", "",
              f"Peak RSS: {c['rss_method']}. The oracle knows the true column factors and the prior of the row "
              f"factors and predicts each row's posterior mean from its training entries (expected squared error "
              f"noise² + v_jᵀP⁻¹v_j, {o['sample']} random test entries): no method can beat it on average. "
              f"Training entries per row: mean {o['train_per_row_mean']:.1f}, median "
              f"{o['train_per_row_median']:.0f}; {100 * o['rows_with_at_most_5']:.0f}% of the rows have at most 5, "
              f"for a rank-{c['rank_cap']} model."]
    if path:
        lines += ["", "| reg | rank | train RMSE | validation RMSE | iterations | converged |",
                  "|---:|---:|---:|---:|---:|---|"]
    for p in c["path"]:
        chosen = " (chosen)" if p["reg"] == c["reg"] else ""
        lines.append(f"| {p['reg']:.4g}{chosen} | {p['rank']} | {p['train_rmse']:.5f} | {p['validation_rmse']:.5f} | "
                     f"{p['n_iter']} | {'yes' if p['converged'] else 'no'} |")
    return lines


def markdown(results) -> str:
    cases = results["cases"]
    lines = ["# Matrix completion benchmark", "",
             f"Generated by `bench/completion.py` (started {results['started_at']}): `randla.complete` against "
             "fancyimpute's `SoftImpute` and a dense hard-impute baseline, in one process (the large case in a fresh "
             "one, for its peak memory). Raw numbers: `completion.json`.", ""]
    kept = [name for name in cases if name not in results["parameters"]["cases"]]
    if kept:
        lines += [f"This run measured {', '.join(results['parameters']['cases'])}; the results of "
                  f"{', '.join(kept)} are kept from an earlier run of the same script.", ""]
    lines += ["## Targets", "", "| target | status | measured |", "|---|---|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | **{t['status']}** | {t['detail']} |")
    if "small" in cases:
        lines += small_markdown(cases["small"])
    for name in (n for n in LARGE_METHODS if n in cases):
        lines += large_markdown(name, cases[name])
    lines += _environment.markdown_lines(results["environment"], results["elapsed_s"])
    return "\n".join(lines) + "\n"


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CASES), help=f"comma-separated cases from {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per method under 30 s (default 3)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output folder")
    parser.add_argument("--report-only", action="store_true",
                        help="recompute targets and completion.md from the completion.json in --out, without running")
    parser.add_argument("--small-size", type=int, nargs=2, metavar=("M", "N"), default=(SMALL["m"], SMALL["n"]),
                        help=argparse.SUPPRESS)
    parser.add_argument("--large-size", type=int, nargs=3, metavar=("M", "N", "OBSERVED"),
                        default=(LARGE["m"], LARGE["n"], LARGE["n_observed"]), help=argparse.SUPPRESS)
    parser.add_argument("--child-large", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_large:
        m, n, n_observed, method = args.child_large
        print(json.dumps(jsonable(large_child(int(m), int(n), int(n_observed), method))))
        return
    if args.report_only:
        results = json.loads((args.out / "completion.json").read_text())
        results["targets"] = targets(results["cases"])
        write_results(args.out, "completion", results, markdown(results))
        return
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(only) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    import fancyimpute  # noqa: F401  (its thread pools and version go into the environment)

    whole_run = _environment.OtherLoad()
    environment = _environment.describe()
    environment["versions"]["fancyimpute"] = _version("fancyimpute")
    results = {"started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "environment": environment,
               "parameters": {"small": SMALL, "large": LARGE, "test_fraction": TEST_FRACTION, "rank_cap": RANK_CAP,
                              "wide_cap_at_least": WIDE_CAP, "repeats": args.repeats, "slow_s": SLOW_S,
                              "pause_s": PAUSE, "hard_impute_tol": HARD_TOL, "hard_impute_max_iter": HARD_MAX_ITER,
                              "oracle_sample": ORACLE_SAMPLE, "cases": only},
               "cases": {}}
    cases = results["cases"]
    if "small" in only:
        cases["small"] = small_case(*args.small_size, repeats=args.repeats)
    for name in LARGE_METHODS:
        if name in only:
            cases[name] = large_case(name, *args.large_size)
    results["environment"]["other_processes_cores"] = whole_run.cores()
    results["elapsed_s"] = time.perf_counter() - _T0
    previous = args.out / "completion.json"
    if previous.exists():  # cases not rerun keep their last results
        for name, case in json.loads(previous.read_text()).get("cases", {}).items():
            cases.setdefault(name, case)
    results["targets"] = targets(cases)
    write_results(args.out, "completion", results, markdown(results))
    log(f"wrote {args.out / 'completion.md'} and {args.out / 'completion.json'}")
    for t in results["targets"]:
        log(f"{t['status']:>5}  {t['id']}: {t['detail']}")
    log(f"total {results['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
