"""Turn the raw results into the markdown report and the target checks."""

from __future__ import annotations

import datetime
import statistics

LABELS = {
    "randla": "randla.svd (defaults)",
    "randla_q2": "randla.svd power_iters=2",
    "randla_bk": "randla.svd block_krylov (defaults)",
    "randla_bk_q2": "randla.svd block_krylov, power_iters=2",
    "sklearn_q2": "sklearn randomized_svd n_iter=2",
    "sklearn_auto": "sklearn randomized_svd (default n_iter)",
    "torch_q2": "torch.svd_lowrank niter=2",
    "randla_torch_q2": "randla.svd on torch, power_iters=2",
    "fbpca_q2": "fbpca.pca n_iter=2",
    "svds": "scipy svds (ARPACK)",
    "exact": "numpy.linalg.svd (exact)",
}

# Accuracy ratios come from a power-iteration estimate good to about 0.1%;
# "equal accuracy" allows that much.
ACCURACY_SLACK = 1.005


def label(name: str) -> str:
    return LABELS.get(name, name)


def _mean_accuracy(row) -> float:
    return row.get("accuracy_mean", row["accuracy"])


def _seeds_phrase(row) -> str:
    seeds = row.get("accuracy_by_seed")
    return f" (mean of {len(seeds)} seeds)" if seeds else ""


def _method(case, name):
    if not case:
        return None
    return next((r for r in case["methods"] if r["method"] == name), None)


def _ok(row, *keys):
    return row is not None and not row.get("failure") and all(row.get(k) is not None for k in keys)


def _target(id_, description, passed, detail):
    status = "n/a" if passed is None else ("PASS" if passed else "FAIL")
    return {"id": id_, "description": description, "status": status, "detail": detail}


def targets(results) -> list[dict]:
    cases = results["cases"]
    out = []

    slow = cases.get("slow")
    r, s = _method(slow, "randla_q2"), _method(slow, "sklearn_q2")
    if _ok(r, "median_s", "accuracy", "bare_s") and _ok(s, "median_s", "accuracy"):
        speedup = s["median_s"] / r["median_s"]
        out.append(_target("a1", "slow decay, q=2, NumPy: randla >= 1.5x faster than sklearn n_iter=2",
                           speedup >= 1.5,
                           f"sklearn {s['median_s']:.3f} s / randla {r['median_s']:.3f} s = {speedup:.2f}x"))
        ra, sa, what = _mean_accuracy(r), _mean_accuracy(s), _seeds_phrase(r)
        out.append(_target("a2", "slow decay, q=2, NumPy: randla accuracy <= sklearn's",
                           ra <= sa * ACCURACY_SLACK, f"randla {ra:.4f} vs sklearn {sa:.4f}{what}"))
        ratio = r["median_s"] / r["bare_s"]
        out.append(_target("a3", "slow decay, q=2, NumPy: randla time <= 1.2x bare(2)", ratio <= 1.2,
                           f"randla {r['median_s']:.3f} s / bare(2) {r['bare_s']:.3f} s = {ratio:.2f}x"))
    else:
        out.append(_target("a", "slow decay, q=2, NumPy vs sklearn", None, "not measured"))

    for key in ("fast", "slow", "slow32"):
        case = cases.get(key)
        rt, tt = _method(case, "randla_torch_q2"), _method(case, "torch_q2")
        if _ok(rt, "median_s") and _ok(tt, "median_s"):
            ratio = rt["median_s"] / tt["median_s"]
            out.append(_target(f"b-{key}", f"{key}: randla on torch <= torch.svd_lowrank(q=60, niter=2)",
                               ratio <= 1.0,
                               f"randla {rt['median_s']:.3f} s vs torch {tt['median_s']:.3f} s = {ratio:.2f}x"
                               + (f" (accuracy {_mean_accuracy(rt):.4f} vs {_mean_accuracy(tt):.4f}"
                                  f"{_seeds_phrase(rt)})" if _ok(rt, "accuracy") and _ok(tt, "accuracy") else "")))
        elif case is not None:
            out.append(_target(f"b-{key}", f"{key}: randla on torch vs torch.svd_lowrank", None,
                               "a method failed"))

    for key in ("slow", "slow32"):
        row = _method(cases.get(key), "randla")
        if _ok(row, "accuracy"):
            worst = row.get("accuracy_max", row["accuracy"])
            what = f" (worst of {len(row['accuracy_by_seed'])} seeds)" if row.get("accuracy_by_seed") else ""
            out.append(_target(f"c-{key}", f"{key}: randla defaults accuracy <= 1.1", worst <= 1.1,
                               f"{worst:.4f}{what} with power_iters={row['power_iters']}"))
    minilm = cases.get("minilm")
    if minilm:
        accs = []
        word = _method(minilm["detail"], "randla")
        if _ok(word, "accuracy"):
            accs.append((word["accuracy"], minilm["detail"]["matrix"]))
        missing = 0
        for m in minilm["batch"]["matrices"]:
            res = m["methods"]["randla"]
            if res.get("accuracy") is None:
                missing += 1
            else:
                accs.append((res["accuracy"], m["name"]))
        if accs:
            worst, name = max(accs)
            passed = worst <= 1.1 and missing == 0
            extra = f"; {missing} matrices without a result" if missing else ""
            out.append(_target("c-minilm", f"MiniLM, all {len(accs) + missing} weight matrices at half rank: "
                               "randla defaults accuracy <= 1.1", passed,
                               f"worst {worst:.4f} ({name}), median {statistics.median(a for a, _ in accs):.4f}"
                               f"{extra}"))
    return out


# -- markdown ---------------------------------------------------------------------


def _f(x, fmt):
    return "—" if x is None else format(x, fmt)


def _time(t):
    if t is None:
        return "—"
    return f"{t:.3f}" if t < 10 else f"{t:.1f}"


def _case_table(case) -> list[str]:
    bp = case["bare_products"]
    lines = [
        f"## {case['title']}",
        "",
        f"Shape {case['shape'][0]}×{case['shape'][1]}, {case['dtype']}, {case['format']}"
        + (f", {case['nnz']} nonzeros" if case.get("nnz") else "")
        + f"; rank k = {case['rank']}, sketch width l = {case['sketch_width']}; "
        f"σ_(k+1) = {case['sigma_next']:.6g} ({case['sigma_source']}).",
        "",
        "Bare products (median s): NumPy/SciPy A·X "
        f"{_time(bp['numpy A@X']['median_s'])}, Aᵀ·Y {_time(bp['numpy A^T@Y']['median_s'])}; "
        f"torch A·X {_time(bp['torch A@X']['median_s'])}, Aᵀ·Y {_time(bp['torch A^T@Y']['median_s'])}. "
        f"Other processes kept {_f(case.get('other_processes_cores'), '.2f')} cores busy on average "
        f"during this case (load average before/after: {case['load_average']['before']} / "
        f"{case['load_average']['after']}).",
        "",
    ]
    seeds = max((len(r.get("accuracy_by_seed") or ()) for r in case["methods"]), default=0)
    seed_head = f" accuracy, mean (max) of {seeds} seeds |" if seeds else ""
    lines += [
        "| method | q | median time (s) | × bare(q) | × sklearn q=2 | accuracy ‖A−UΣVᴴ‖₂/σ_(k+1) |"
        + seed_head + " timed runs |",
        "|---|---:|---:|---:|---:|---:|" + ("---:|" if seeds else "") + "---:|",
    ]
    for r in case["methods"]:
        if r.get("failure") and r.get("median_s") is None:
            lines.append(f"| {r['label']} | | fails: {r['failure']} | | | |" + (" |" if seeds else "") + " |")
            continue
        seed_cell = ""
        if seeds:
            seed_cell = (f" {r['accuracy_mean']:.4f} ({r['accuracy_max']:.4f}) |" if r.get("accuracy_by_seed")
                         else " — |")
        lines.append(
            f"| {r['label']} | {_f(r.get('power_iters'), 'd')} | {_time(r['median_s'])} | "
            f"{_f(r.get('x_bare'), '.2f')} | {_f(r.get('x_sklearn_q2'), '.2f')} | "
            f"{_f(r.get('accuracy'), '.4f')}{' (' + r['failure'] + ')' if r.get('failure') else ''} |"
            f"{seed_cell} {len(r['times_s'])} |"
        )
    lines.append("")
    return lines


def _shape_rows(minilm) -> list[str]:
    """One row per distinct shape: worst accuracy and median time per method."""
    groups: dict[tuple, list] = {}
    for m in minilm["batch"]["matrices"]:
        groups.setdefault(tuple(m["shape"]), []).append(
            {name: res for name, res in m["methods"].items()} | {"_name": m["name"], "_k": m["rank"]})
    detail = minilm["detail"]
    word = {r["method"]: r for r in detail["methods"]}
    groups.setdefault(tuple(detail["shape"]), []).append(
        {name: word.get(name, {}) for name in ("randla", "randla_q2", "sklearn_q2", "torch_q2")}
        | {"_name": detail["matrix"], "_k": detail["rank"]})

    def agg(entries, method):
        res = [e[method] for e in entries if e.get(method)]
        accs = [(r["accuracy"], e["_name"]) for e, r in zip(entries, res) if r.get("accuracy") is not None]
        times = [r["median_s"] for r in res if r.get("median_s") is not None]
        ratios = [r["median_s"] / r["bare_s"] for r in res if r.get("median_s") and r.get("bare_s")]
        fails = sum(1 for r in res if r.get("failure"))
        return {
            "worst": max(accs) if accs else (None, None),
            "time": statistics.median(times) if times else None,
            "x_bare": statistics.median(ratios) if ratios else None,
            "q": res[0].get("power_iters") if res else None,
            "fails": fails,
        }

    lines = [
        "| shape | matrices | k | randla defaults: q | time (s) | × bare(q) | worst accuracy |"
        " randla q=2: time | worst acc. | sklearn n_iter=2: time | worst acc. |"
        " torch niter=2: time | worst acc. | randla defaults / sklearn time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for shape, entries in sorted(groups.items(), key=lambda kv: -kv[0][0] * kv[0][1]):
        a = {m: agg(entries, m) for m in ("randla", "randla_q2", "sklearn_q2", "torch_q2")}

        def cell_acc(m):
            worst = a[m]["worst"][0]
            fails = f" ({a[m]['fails']} fail)" if a[m]["fails"] else ""
            return _f(worst, ".4f") + fails

        rel = (a["randla"]["time"] / a["sklearn_q2"]["time"]
               if a["randla"]["time"] and a["sklearn_q2"]["time"] else None)
        lines.append(
            f"| {shape[0]}×{shape[1]} | {len(entries)} | {entries[0]['_k']} | {_f(a['randla']['q'], 'd')} | "
            f"{_time(a['randla']['time'])} | {_f(a['randla']['x_bare'], '.2f')} | {cell_acc('randla')} | "
            f"{_time(a['randla_q2']['time'])} | {cell_acc('randla_q2')} | "
            f"{_time(a['sklearn_q2']['time'])} | {cell_acc('sklearn_q2')} | "
            f"{_time(a['torch_q2']['time'])} | {cell_acc('torch_q2')} | {_f(rel, '.2f')} |"
        )
    worst = max(((r["methods"]["randla"].get("accuracy") or 0.0, r["name"])
                 for r in minilm["batch"]["matrices"]), default=None)
    lines.append("")
    if worst:
        lines.append(f"Worst randla-defaults accuracy among the small matrices: {worst[0]:.4f} ({worst[1]}). "
                     "Times are the median over matrices of each matrix's median over repeats.")
    lines.append("")
    return lines


def _environment(env, params, results) -> list[str]:
    lines = [
        "## Environment",
        "",
        f"- CPU: {env['cpu_model']}, os.cpu_count() = {env['cpu_count']}, usable by this process = "
        f"{env['cpu_affinity']}",
        f"- Python {env['python']} on {env['platform']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
        f"- torch threads: {env['torch_threads']} (inter-op {env['torch_interop_threads']}), "
        f"torch BLAS: {env['torch_blas']}",
        f"- Load average at start / end: {env['load_average_at_start']} / {env.get('load_average_at_end')}; "
        f"other processes kept {_f(env.get('other_processes_cores'), '.2f')} of the "
        f"{env['cpu_count']} cores busy on average during the run",
        f"- Timing: round-robin, starting method rotated each round, one untimed warm-up per method "
        f"(not for exact SVD and ARPACK); up to {params['repeats']} timed runs for fast methods "
        "(fewer once a case's time budget is spent), 3 for methods "
        f"whose warm-up took over 2 s; {params['pause_s']} s idle before each timed call; "
        f"accuracy numerator by randla.estimate_error with power_iters={params['estimate_error_power_iters']}, "
        f"block_size={params['estimate_error_block_size']}, rng=0.",
        f"- Whole run: {results['elapsed_s']:.0f} s.",
        "",
        "Thread and BLAS settings (environment):",
        "",
        "| variable | value |",
        "|---|---|",
    ]
    for k, v in env["settings"].items():
        lines.append(f"| {k} | {'(unset)' if v is None else v} |")
    lines += ["", "Loaded thread pools (threadpoolctl):", "",
              "| API | implementation | library | version | threads | file |", "|---|---|---|---|---:|---|"]
    for p in env["threadpools"]:
        lines.append(f"| {p['user_api']} | {p['internal_api']} | {p['prefix']} | {p.get('version') or ''} | "
                     f"{p['num_threads']} | {p['filepath']} |")
    lines.append("")
    return lines


def markdown(results) -> str:
    env, params, cases = results["environment"], results["parameters"], results["cases"]
    started = results.get("started_at")
    when = (datetime.datetime.fromisoformat(started) if started else datetime.datetime.now().astimezone())
    now = when.strftime("%Y-%m-%d %H:%M %Z")
    lines = [
        "# randla.svd benchmark",
        "",
        f"Generated by `bench/run.py` (started {now}). All methods ran in one process under the same thread "
        "settings; see bench/README.md for what each column means. Raw numbers: `svd.json`.",
        "",
        "q: passes of A·Aᵀ (power iterations). × bare(q): median time over (q+1)·(t[A·X] + t[Aᵀ·Y]), the "
        "bare products in the method's own library. Accuracy: ‖A−UΣVᴴ‖₂ / σ_(k+1), 1 is optimal.",
        "",
        "## Targets",
        "",
        "| target | status | measured |",
        "|---|---|---|",
    ]
    for t in results["targets"]:
        lines.append(f"| {t['id']}: {t['description']} | **{t['status']}** | {t['detail']} |")
    lines.append("")
    for key in ("fast", "slow", "slow32", "sparse"):
        if key in cases:
            lines += _case_table(cases[key])
    if "minilm" in cases:
        minilm = cases["minilm"]
        lines += _case_table(minilm["detail"])
        lines += ["## MiniLM: every weight matrix at half its rank, by shape", "",
                  f"All 2-D floating-point weights of `{minilm['model_file'].split('site-packages/')[-1]}` "
                  "(float32 as shipped), k = min(m, n) // 2, l = min(k + 10, min(m, n)); σ_(k+1) from exact "
                  "SVD in float64. Each method runs over all matrices in a row; the runs are interleaved "
                  f"round-robin ({minilm['batch']['repeats']} timed passes after one warm-up pass). "
                  "The word-embedding row repeats the detailed table above. Other processes kept "
                  f"{_f(minilm['batch'].get('other_processes_cores'), '.2f')} cores busy on average meanwhile.",
                  ""]
        lines += _shape_rows(minilm)
    lines += _environment(env, params, results)
    return "\n".join(lines)
