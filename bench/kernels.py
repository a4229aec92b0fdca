"""Kernel methods benchmark: randla's Nyström kernel ridge regression and landmarks against scikit-learn.

Writes bench/results/kernels.md and kernels.json. Cases:

- digits: scikit-learn's digits (1797 x 64, pixels / 16), one-hot targets,
  1200 train / 597 test; exact KernelRidge fits.
- synthetic-1e4, synthetic-1e5: randla.testing.kernel_regression (d = 10,
  noise 0.1), 10^4 test points; exact KernelRidge fits at 10^4 only.
- large: the same problem at n = 10^6, randla only, each fit in a fresh
  process so its peak memory can be read (scikit-learn's Nystroem would hold
  an n x m feature matrix: 8 GB at m = 1000).
- traces: trace error of the column Nyström approximation vs landmark count
  for uniform, RPCholesky and ridge-leverage landmarks.

Kernel and penalty per data set (rbf gamma, alpha) were picked by test RMSE
of exact KernelRidge over gamma in {0.02, 0.05, 0.1} and alpha in
{0.001, 0.01, 0.1, 1} on the small sizes, and are the same for every method.
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
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _environment  # noqa: E402
from _output import write_results  # noqa: E402
from _timing import Task, round_robin  # noqa: E402

import randla  # noqa: E402

CASES = ("digits", "synthetic-1e4", "synthetic-1e5", "large", "traces")
DIGITS = {"gamma": 0.1, "alpha": 0.01}
SYNTHETIC = {"gamma": 0.05, "alpha": 0.01, "d": 10, "noise": 0.1}
LANDMARKS = {"digits": (100, 200, 400, 800, 1000), "synthetic-1e4": (500, 1000, 2000, 3000),
             "synthetic-1e5": (500, 1000, 2000)}
LARGE_N, LARGE_M = 1_000_000, (1000, 2000)
TRACE_RANKS = (50, 100, 200, 400, 1000)
#: Columns of the trace-error tables: landmark method and its options.
TRACE_METHODS = {"uniform": ("uniform", {}), "rpcholesky": ("rpcholesky", {}),
                 "rpcholesky, 2 candidates": ("rpcholesky", {"candidates": 2}), "leverage": ("leverage", {})}
BEST_OF = "rpcholesky, 2 candidates"
SEEDS = (0, 1, 2)
EXACT = 1e-12  # relative trace error at the rounding level of a float64 kernel
_T0 = time.perf_counter()


def log(msg: str):
    print(f"[{time.perf_counter() - _T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def rmse(pred, truth) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred) - truth) ** 2)))


# -- data ------------------------------------------------------------------------------------


def digits():
    from sklearn.datasets import load_digits

    data = load_digits()
    X, labels = data.data / 16.0, data.target
    perm = np.random.default_rng(0).permutation(len(X))
    train, test = perm[:1200], perm[1200:]
    Y = np.eye(10)[labels]
    return X[train], Y[train], X[test], Y[test], labels[test]


def synthetic(n: int, n_test: int = 10_000):
    r = randla.testing.kernel_regression(n + n_test, d=SYNTHETIC["d"], noise=SYNTHETIC["noise"], rng=0)
    return r.X[:n], r.y[:n], r.X[n:], r.y[n:]


# -- methods ---------------------------------------------------------------------------------


def sklearn_exact(X, y, Xt, gamma, alpha):
    from sklearn.kernel_ridge import KernelRidge

    return KernelRidge(alpha=alpha, kernel="rbf", gamma=gamma).fit(X, y).predict(Xt)


def sklearn_nystroem_ridge(X, y, Xt, gamma, alpha, m, seed):
    # Ridge without intercept on Nystroem features minimises the same objective as
    # Nystrom KRR with the same landmarks: only the landmark choice differs.
    from sklearn.kernel_approximation import Nystroem
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(Nystroem(gamma=gamma, n_components=m, random_state=seed),
                          Ridge(alpha=alpha, fit_intercept=False))
    return model.fit(X, y).predict(Xt)


def randla_nystrom(X, y, Xt, gamma, alpha, m, seed, landmarks="rpcholesky"):
    r = randla.nystrom_kernel_ridge(X, y, alpha=alpha, gamma=gamma, n_components=m, landmarks=landmarks, rng=seed)
    return r.predict(Xt)


def randla_pcg(X, y, Xt, gamma, alpha):
    # Preconditioner rank 1000 from RPCholesky columns: small alpha needs a large rank.
    rank = min(1000, X.shape[0])
    r = randla.kernel_ridge(X, y, alpha=alpha, gamma=gamma, preconditioner="rpcholesky", rank=rank, tol=1e-8,
                            max_iter=1000, rng=0)
    if not r.converged:
        raise RuntimeError(f"PCG did not converge in {r.n_iter} iterations")
    return r.predict(Xt)


def regression_case(key, X, y, Xt, yt, params, *, exact: bool, repeats: int, labels=None):
    gamma, alpha = params["gamma"], params["alpha"]
    specs = {}
    if exact:
        specs["sklearn KernelRidge (exact)"] = (None, lambda s: sklearn_exact(X, y, Xt, gamma, alpha))
        specs["randla.kernel_ridge (exact, PCG)"] = (None, lambda s: randla_pcg(X, y, Xt, gamma, alpha))
    for m in LANDMARKS[key]:
        specs[f"sklearn Nystroem+Ridge m={m}"] = (m, lambda s, m=m: sklearn_nystroem_ridge(X, y, Xt, gamma, alpha, m, s))
        specs[f"randla Nyström KRR, uniform m={m}"] = (
            m, lambda s, m=m: randla_nystrom(X, y, Xt, gamma, alpha, m, s, "uniform"))
        specs[f"randla Nyström KRR, RPCholesky m={m}"] = (
            m, lambda s, m=m: randla_nystrom(X, y, Xt, gamma, alpha, m, s))
    # The exact PCG solve takes tens of seconds at n = 10^4: timed once.
    tasks = [Task(name, lambda run=run: run(0), repeats=1 if "PCG" in name else repeats,
                  warmup=repeats > 1 and "PCG" not in name) for name, (_, run) in specs.items()]
    timings = round_robin(tasks, pause=0.1, log=log)
    rows = []
    for name, (m, run) in specs.items():
        if name in timings.failures:
            rows.append({"method": name, "m": m, "failure": timings.failures[name]})
            continue
        # Landmark methods are random: their error is the mean over seeds.
        preds = [timings.first[name]] + ([run(s) for s in SEEDS[1:]] if m is not None else [])
        row = {"method": name, "m": m, "time_s": timings.median(name), "runs": len(timings.times[name]),
               "rmse": statistics.mean(rmse(p, yt) for p in preds), "seeds": len(preds)}
        if labels is not None:
            row["accuracy"] = statistics.mean(float(np.mean(np.argmax(p, axis=1) == labels)) for p in preds)
        rows.append(row)
        log(f"  {name}: {row['time_s']:.3f} s, RMSE {row['rmse']:.5f}")
    return {"n_train": int(X.shape[0]), "n_test": int(Xt.shape[0]), "d": int(X.shape[1]),
            "gamma": gamma, "alpha": alpha, "rows": rows}


# -- n = 10^6, one process per fit -----------------------------------------------------------


def large_child(m: int) -> dict:
    """Runs in a fresh process: generate, fit, predict; time and peak memory."""
    t0 = time.perf_counter()
    X, y, Xt, yt = synthetic(LARGE_N)
    t_data = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = randla.nystrom_kernel_ridge(X, y, alpha=SYNTHETIC["alpha"], gamma=SYNTHETIC["gamma"], n_components=m, rng=0)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = r.predict(Xt)
    t_predict = time.perf_counter() - t0
    return {"m": m, "n_train": LARGE_N, "data_s": t_data, "fit_s": t_fit, "predict_s": t_predict,
            "total_s": t_data + t_fit + t_predict, "rmse": rmse(pred, yt),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "kernel_matrix_gib": LARGE_N**2 * 8 / 2**30}


def large_case() -> dict:
    rows = []
    for m in LARGE_M:
        log(f"  n = {LARGE_N}, m = {m}: fresh process")
        out = subprocess.run([sys.executable, __file__, "--child-large", str(m)], capture_output=True,
                             text=True, check=False)
        if out.returncode != 0:
            rows.append({"m": m, "failure": out.stderr.strip().splitlines()[-1:]})
            continue
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        log(f"  m = {m}: total {row['total_s']:.1f} s (fit {row['fit_s']:.1f} s), peak {row['peak_rss_gib']:.2f} GiB, "
            f"RMSE {row['rmse']:.4f}")
    return {"n_train": LARGE_N, "n_test": 10_000, "d": SYNTHETIC["d"], "noise": SYNTHETIC["noise"],
            "gamma": SYNTHETIC["gamma"], "alpha": SYNTHETIC["alpha"], "rows": rows}


# -- trace error vs landmark count -----------------------------------------------------------


def traces_case() -> dict:
    sets = {
        "digits": (digits()[0], DIGITS["gamma"]),
        "synthetic (n = 20000, d = 10)": (synthetic(20_000, n_test=0)[0], SYNTHETIC["gamma"]),
        "clustered (n = 20000, d = 2, 20 clusters)": (randla.testing.clustered(20_000, 2, 20, rng=0).X, 0.5),
    }
    out = {}
    for name, (X, gamma) in sets.items():
        K = randla.kernel_operator(X, gamma=gamma)
        table = {}
        for column, (method, options) in TRACE_METHODS.items():
            table[column] = {}
            for rank in TRACE_RANKS:
                errs = [randla.landmarks(K, rank, method=method, rng=s, **options).relative_error for s in SEEDS]
                table[column][rank] = statistics.mean(errs)
        out[name] = {"n": int(X.shape[0]), "gamma": gamma, "relative_trace_error": table}
        log(f"  {name}: " + ", ".join(f"{m} {table[m][TRACE_RANKS[-1]]:.2e}" for m in TRACE_METHODS))
    return out


# -- report ----------------------------------------------------------------------------------


def targets(cases) -> list[dict]:
    out = []

    def add(id_, text, passed, detail):
        out.append({"id": id_, "target": text, "status": "PASS" if passed else "FAIL", "detail": detail})

    if "large" in cases:
        rows = [r for r in cases["large"]["rows"] if "failure" not in r]
        ok = bool(rows) and all(r["total_s"] < 600 and r["peak_rss_gib"] < 8 for r in rows)
        add("large", "n = 10^6, d = 10 Gaussian KRR end to end < 10 min, peak memory < 8 GiB, K never formed", ok,
            "; ".join(f"m={r['m']}: {r['total_s']:.0f} s, {r['peak_rss_gib']:.2f} GiB (K would be "
                      f"{r['kernel_matrix_gib']:.0f} GiB)" for r in rows) or "failed")
    if "traces" in cases:
        for column, label, suffix in (("rpcholesky", "RPCholesky", ""),
                                      (BEST_OF, "RPCholesky with 2 candidates", "-candidates")):
            worst, clustered = [], None
            for name, res in cases["traces"].items():
                t = res["relative_trace_error"]
                if column not in t:
                    continue
                # Where uniform is exact to rounding (the kernel's numerical rank is reached) nothing is left to beat.
                ratios = [t["uniform"][k] / t[column][k] for k in TRACE_RANKS if t["uniform"][k] > EXACT]
                worst.append((min(ratios), name))
                if name.startswith("clustered"):
                    clustered = min(ratios)
            if not worst:
                continue
            add(f"trace-all{suffix}", f"{label} trace error <= uniform's, every set and landmark count",
                all(r >= 1 for r, _ in worst),
                "; ".join(f"{n.split(' (')[0]}: uniform/{label} >= {r:.2f}" for r, n in worst))
            add(f"trace-clustered{suffix}",
                f"{label} trace error >= 2x better than uniform on the clustered set, every count",
                clustered is not None and clustered >= 2,
                "not run" if clustered is None else f"worst ratio {clustered:.2f}")
    for key in ("digits", "synthetic-1e4", "synthetic-1e5"):
        if key not in cases:
            continue
        rows = {r["method"]: r for r in cases[key]["rows"] if "failure" not in r}
        exact = rows.get("sklearn KernelRidge (exact)")
        if exact:
            gaps = [(m, rows[f"randla Nyström KRR, RPCholesky m={m}"]["rmse"] / exact["rmse"] - 1)
                    for m in LANDMARKS[key] if f"randla Nyström KRR, RPCholesky m={m}" in rows]
            reached = [m for m, gap in gaps if gap <= 0.02]
            add(f"{key}-exact", f"{key}: Nyström KRR test RMSE within 2% of exact KRR", bool(reached),
                (f"from m = {reached[0]} of n = {cases[key]['n_train']}; " if reached else "")
                + ", ".join(f"m={m}: {100 * gap:+.2f}%" for m, gap in gaps))
        # Better at equal m (RPCholesky landmarks), or better in no more time (any landmarks),
        # than each sklearn setting.
        ours_all = [r for r in rows.values() if r["method"].startswith("randla Nyström KRR")]
        verdicts = []
        for m in LANDMARKS[key]:
            theirs, same_m = rows.get(f"sklearn Nystroem+Ridge m={m}"), rows.get(f"randla Nyström KRR, RPCholesky m={m}")
            if not theirs:
                continue
            faster = [r for r in ours_all if r["time_s"] <= theirs["time_s"] and r["rmse"] < theirs["rmse"]]
            if same_m and same_m["rmse"] < theirs["rmse"]:
                verdicts.append((True, f"m={m}: {same_m['rmse']:.5f} vs {theirs['rmse']:.5f} at equal m"))
            elif faster:
                best = min(faster, key=lambda r: r["rmse"])
                verdicts.append((True, f"m={m}: {best['rmse']:.5f} in {best['time_s']:.2f} s ({best['method'][20:]}) vs "
                                       f"{theirs['rmse']:.5f} in {theirs['time_s']:.2f} s"))
            else:
                verdicts.append((False, f"m={m}: sklearn {theirs['rmse']:.5f} in {theirs['time_s']:.2f} s not beaten"))
        add(f"{key}-sklearn", f"{key}: lower test RMSE than sklearn Nystroem+Ridge at equal m or in no more time, "
                              "every m", bool(verdicts) and all(ok for ok, _ in verdicts),
            "; ".join(text for _, text in verdicts))
    return out


def markdown(results) -> str:
    cases = results["cases"]
    lines = ["# Kernel methods benchmark", "",
             f"Generated by `bench/kernels.py` (started {results['started_at']}), all methods in one process "
             "(the n = 10^6 fits each in a fresh one, for peak memory). Times are medians of the timed runs; "
             "RMSE of landmark methods is the mean over seeds 0, 1, 2. Raw numbers: `kernels.json`.", ""]
    kept = results.get("kept_from_earlier_runs")
    if kept:
        lines += [f"This run measured {', '.join(c for c in cases if c not in kept)}; the results of "
                  f"{', '.join(kept)} are kept from an earlier run of the same script.", ""]
    lines += ["## Targets", "", "| target | status | measured |", "|---|---|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | **{t['status']}** | {t['detail']} |")
    for key in ("digits", "synthetic-1e4", "synthetic-1e5"):
        if key not in cases:
            continue
        c = cases[key]
        lines += ["", f"## {key}: n = {c['n_train']} train, {c['n_test']} test, d = {c['d']}; "
                      f"rbf gamma = {c['gamma']}, alpha = {c['alpha']}", ""]
        exact = next((r for r in c["rows"] if r["method"] == "sklearn KernelRidge (exact)" and "rmse" in r), None)
        head = "| method | m | time (s) | test RMSE |" + (" × exact RMSE |" if exact else "")
        head += " accuracy |" if key == "digits" else ""
        lines += [head, "|---|---:|---:|---:|" + ("---:|" if exact else "") + ("---:|" if key == "digits" else "")]
        for r in c["rows"]:
            if "failure" in r:
                lines.append(f"| {r['method']} | {r['m'] or '—'} | fails: {r['failure']} |")
                continue
            row = f"| {r['method']} | {r['m'] or '—'} | {r['time_s']:.3f} | {r['rmse']:.5f} |"
            row += f" {r['rmse'] / exact['rmse']:.4f} |" if exact else ""
            row += f" {r['accuracy']:.4f} |" if key == "digits" else ""
            lines.append(row)
    if "large" in cases:
        c = cases["large"]
        lines += ["", f"## large: n = {c['n_train']}, d = {c['d']}, noise {c['noise']}, rbf gamma = {c['gamma']}, "
                      f"alpha = {c['alpha']}; randla Nyström KRR with RPCholesky landmarks", "",
                  "scikit-learn's Nystroem+Ridge is not run: its n × m feature matrix alone is 8 GB at m = 1000.", "",
                  "| m | data (s) | fit (s) | predict 10^4 (s) | total (s) | peak RSS (GiB) | test RMSE |",
                  "|---:|---:|---:|---:|---:|---:|---:|"]
        for r in c["rows"]:
            if "failure" in r:
                lines.append(f"| {r['m']} | fails: {r['failure']} |")
                continue
            lines.append(f"| {r['m']} | {r['data_s']:.1f} | {r['fit_s']:.1f} | {r['predict_s']:.2f} | "
                         f"{r['total_s']:.1f} | {r['peak_rss_gib']:.2f} | {r['rmse']:.5f} |")
    if "traces" in cases:
        lines += ["", "## Trace error vs landmark count", "",
                  "tr(K − K̂) / tr(K) of the column Nyström approximation, mean over seeds 0, 1, 2.", ""]
        for name, res in cases["traces"].items():
            t = res["relative_trace_error"]
            columns = [m for m in TRACE_METHODS if m in t]
            compared = [m for m in ("rpcholesky", BEST_OF) if m in t]
            lines += [f"### {name}, rbf gamma = {res['gamma']}", "",
                      "| landmarks | " + " | ".join(columns) + "".join(f" | uniform / {m}" for m in compared) + " |",
                      "|---:|" + "---:|" * (len(columns) + len(compared))]
            for k in TRACE_RANKS:
                vals = " | ".join(f"{t[m][k]:.3e}" for m in columns)
                exact = not t["uniform"][k] > EXACT
                ratios = "".join(" | both exact" if exact else f" | {t['uniform'][k] / t[m][k]:.2f}" for m in compared)
                lines.append(f"| {k} | {vals}{ratios} |")
            lines.append("")
    lines += _environment.markdown_lines(results["environment"], results["elapsed_s"])
    return "\n".join(lines) + "\n"


def _read_results(path: Path) -> dict:
    results = json.loads(path.read_text())
    for res in results["cases"].get("traces", {}).values():  # JSON keys are strings
        res["relative_trace_error"] = {m: {int(k): v for k, v in col.items()}
                                       for m, col in res["relative_trace_error"].items()}
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CASES), help=f"comma-separated cases from {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method on the small cases")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output folder")
    parser.add_argument("--report-only", action="store_true",
                        help="recompute targets and kernels.md from the kernels.json in --out, without running")
    parser.add_argument("--child-large", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_large:
        print(json.dumps(large_child(args.child_large)))
        return
    if args.report_only:
        results = _read_results(args.out / "kernels.json")
        results["targets"] = targets(results["cases"])
        write_results(args.out, "kernels", results, markdown(results))
        return
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(only) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    results = {"started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "environment": _environment.describe(), "cases": {}}
    cases = results["cases"]
    if "digits" in only:
        log("digits")
        X, Y, Xt, Yt, labels = digits()
        cases["digits"] = regression_case("digits", X, Y, Xt, Yt, DIGITS, exact=True, repeats=args.repeats,
                                          labels=labels)
    if "synthetic-1e4" in only:
        log("synthetic, n = 10^4")
        cases["synthetic-1e4"] = regression_case("synthetic-1e4", *synthetic(10_000), SYNTHETIC, exact=True,
                                                 repeats=args.repeats)
    if "synthetic-1e5" in only:
        log("synthetic, n = 10^5")
        cases["synthetic-1e5"] = regression_case("synthetic-1e5", *synthetic(100_000), SYNTHETIC, exact=False,
                                                 repeats=1)
    if "large" in only:
        log("synthetic, n = 10^6")
        cases["large"] = large_case()
    if "traces" in only:
        log("trace error vs landmark count")
        cases["traces"] = traces_case()
    results["elapsed_s"] = time.perf_counter() - _T0
    previous = args.out / "kernels.json"
    if previous.exists():  # cases not rerun keep their last results
        for name, case in _read_results(previous)["cases"].items():
            if name not in cases:
                cases[name] = case
                results.setdefault("kept_from_earlier_runs", []).append(name)
    results["targets"] = targets(cases)
    write_results(args.out, "kernels", results, markdown(results))
    log(f"wrote {args.out / 'kernels.md'}")
    for t in results["targets"]:
        log(f"{t['status']:>5}  {t['id']}: {t['detail']}")


if __name__ == "__main__":
    main()
