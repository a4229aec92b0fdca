"""``randla compress`` and ``randla evaluate``: low-rank compression of a local Hugging Face model.

``randla compress MODEL_DIR --reduction 0.4 --method rsi --out OUT_DIR``
factors the model's linear layers (``torch.nn.Linear`` and GPT-2's
``Conv1D``; all of them unless ``--include`` or ``--exclude`` choose;
:func:`randla.nn.compress`), prints a
per-layer table, and writes to OUT_DIR the factors (``factors.safetensors``
and ``compression.json``, :func:`randla.nn.save_compressed`) and
``spectra.png`` (singular values and error against rank per layer; needs
matplotlib). With ``--eval TEXT_FILE`` it also reports how faithful the
sentence embeddings stay on those sentences and writes ``evaluation.json``.
Into an OUT_DIR of an earlier run, it first removes that run's
``spectra.png`` and ``evaluation.json``: what OUT_DIR holds describes one
compression.

``randla evaluate MODEL_DIR OUT_DIR --eval TEXT_FILE`` reloads a saved
compression onto the original model and reports the same fidelity.

MODEL_DIR holds any model ``transformers.AutoModel`` loads: an encoder
(BERT), a decoder (GPT-2, Llama; a tokenizer without a padding token pads
with its end-of-sequence token) or an encoder-decoder (T5; its decoder reads
the calibration sentences shifted by one token, and ``--eval`` is refused, as
it has no sentence embedding to compare).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

__all__ = ["add_commands"]


def add_commands(commands, run):
    """Add the two subcommands to an argparse subparsers object; ``run`` wraps their bodies."""
    compress = commands.add_parser(
        "compress",
        help="low-rank compression of a Hugging Face model's linear layers",
        description="Replace the linear layers of a local Hugging Face model by low-rank factors.",
    )
    compress.add_argument("model", metavar="MODEL_DIR", help="local Hugging Face model directory")
    target = compress.add_mutually_exclusive_group(required=True)
    target.add_argument("--reduction", type=float, metavar="F", help="fraction of the layers' parameters to remove")
    target.add_argument("--rank", type=int, metavar="K", help="one rank for every layer")
    target.add_argument("--energy", type=float, metavar="E", help="per layer, keep this fraction of the squared norm")
    compress.add_argument(
        "--method", choices=("rsi", "rsvd", "exact", "whitened", "fisher"), default="rsi", help="default: rsi"
    )
    compress.add_argument(
        "--solver", choices=("rsi", "rsvd", "exact"), help="SVD inside whitened and fisher (default: rsi)"
    )
    compress.add_argument("--share-inputs", type=float, metavar="T",
                          help="let layers reading one input share a factor (needs --calib and --reduction)")
    compress.add_argument("--allocation", choices=("global", "uniform"), default="global", help="default: global")
    compress.add_argument("--calib", metavar="TEXT_FILE", help="calibration sentences, one per line")
    compress.add_argument("--eval", metavar="TEXT_FILE", help="sentences on which to measure fidelity")
    compress.add_argument("--include", action="append", metavar="PATTERN", help="module names to compress (glob)")
    compress.add_argument("--exclude", action="append", metavar="PATTERN", help="module names to keep (glob)")
    compress.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    compress.add_argument("--out", required=True, metavar="OUT_DIR", help="where to write the compressed factors")
    compress.set_defaults(command=lambda args: run(_compress, args))

    evaluate = commands.add_parser(
        "evaluate",
        help="fidelity of a saved compression of a Hugging Face model",
        description="Reload a compression saved by `randla compress` and measure its fidelity on sentences.",
    )
    evaluate.add_argument("model", metavar="MODEL_DIR", help="the original model directory")
    evaluate.add_argument("compressed", metavar="OUT_DIR", help="the directory `randla compress` wrote")
    evaluate.add_argument("--eval", required=True, metavar="TEXT_FILE", help="sentences, one per line")
    evaluate.set_defaults(command=lambda args: run(_evaluate, args))


class _LayerBar:
    """One line per layer on a pipe; a bar redrawn in place on a terminal."""

    def __init__(self, stream=None, width: int = 30):
        self.stream, self.width = stream or sys.stderr, width
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, name: str, index: int, count: int):
        done = int(self.width * (index + 1) / count)
        line = f"[{'#' * done}{'.' * (self.width - done)}] {index + 1}/{count} {name}"
        self.stream.write(f"\r{line[:100]:<100}" if self.live else line + "\n")
        if self.live and index + 1 == count:
            self.stream.write("\n")
        self.stream.flush()


# Neighbour agreement compares each sentence's nearest neighbours: it needs two sentences.
_EVAL_MINIMUM = 2


def _fidelity(model, compressed, tokenizer, sentences) -> dict:
    from .nn.text import embed, fidelity, token_batches, token_limit

    batches = token_batches(tokenizer, sentences, max_length=token_limit(model))
    start = time.perf_counter()
    reference = embed(model, batches)
    result = fidelity(reference, embed(compressed, batches))
    result["sentences"] = int(reference.shape[0])
    result["seconds"] = time.perf_counter() - start
    return result


def _print_fidelity(result: dict, path):
    print(
        f"fidelity on {result['sentences']} sentences of {path}: mean cosine {result['cosine']:.4f}, "
        f"top-{result['k']} neighbour agreement {result['neighbours']:.4f}"
    )


def _write_json(path: Path, content: dict):
    from .nn.storage import write_atomically

    write_atomically(path, json.dumps(content, indent=1).encode())


# What `randla compress` writes beside the factors; each describes one compression.
_RUN_OUTPUTS = ("spectra.png", "evaluation.json")


def _remove_earlier_outputs(out: Path):
    """Delete the plot and evaluation an earlier run wrote to ``out``, before its factors are replaced.

    Removed before the new factors are written (not after), so that no reader
    ever finds them beside factors they do not describe, even if this run
    stops before writing its own. Only where ``out`` holds randla's
    ``compression.json``: files of these names in any other folder are the
    user's own.
    """
    from .nn.storage import DESCRIPTION, FORMAT

    try:
        description = json.loads((out / DESCRIPTION).read_text())
    except (OSError, ValueError):  # absent, unreadable or not JSON: not an earlier run's output
        return
    if isinstance(description, dict) and description.get("format") == FORMAT:
        for name in _RUN_OUTPUTS:
            (out / name).unlink(missing_ok=True)


def _compress(args) -> int:
    from .nn import compress, save_compressed
    from .nn.compress import check_target
    from .nn.text import check_embeds, load_encoder, read_sentences, token_batches, token_limit, with_decoder_inputs

    check_target(args.reduction, args.rank, args.energy)
    if args.method in ("whitened", "fisher") and args.calib is None:
        raise ValueError(f"--method {args.method} needs calibration sentences: --calib TEXT_FILE.")
    if args.share_inputs is not None and (args.calib is None or args.reduction is None):
        raise ValueError("--share-inputs needs --calib TEXT_FILE (to find layers reading one input) and --reduction.")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out!r} exists and is not a directory.")
    # Read the text files first: a wrong path fails before the long part.
    calibration = None if args.calib is None else read_sentences(args.calib)
    evaluation = None if args.eval is None else read_sentences(args.eval, minimum=_EVAL_MINIMUM)
    model, tokenizer = load_encoder(args.model)
    if evaluation is not None:
        check_embeds(model, args.model)
    if calibration is not None:
        calibration = with_decoder_inputs(model, token_batches(tokenizer, calibration, max_length=token_limit(model)))
    print(f"compressing {args.model} ({args.method}, {args.allocation} allocation)", file=sys.stderr)
    compressed, report = compress(
        model,
        reduction=args.reduction,
        rank=args.rank,
        energy=args.energy,
        method=args.method,
        solver=args.solver,
        allocation=args.allocation,
        share_inputs=args.share_inputs,
        calibration=calibration,
        include=args.include or ("*",),
        exclude=args.exclude or (),
        progress=_LayerBar(),
        rng=args.seed,
    )
    print(report.table())
    print(
        f"{report.params_before:,} -> {report.params_after:,} weight parameters "
        f"({100 * report.reduction:.1f}% removed) in {report.seconds:.1f} s"
    )
    _remove_earlier_outputs(out)
    save_compressed(compressed, out, report=report, factors_only=True)  # the rest is the original's
    print(f"saved the factors to {out}")
    try:
        from .plot import plot_compression
    except ImportError:
        print("matplotlib is not installed: no spectra.png (pip install 'randla[plot]')", file=sys.stderr)
    else:
        plot_compression(report, out / "spectra.png")
        print(f"plotted spectra and error against rank to {out / 'spectra.png'}")
    if evaluation is not None:
        result = _fidelity(model, compressed, tokenizer, evaluation)
        _print_fidelity(result, args.eval)
        _write_json(out / "evaluation.json", result)
    return 0


def _evaluate(args) -> int:
    from .nn import load_compressed
    from .nn.text import check_embeds, load_encoder, read_sentences

    evaluation = read_sentences(args.eval, minimum=_EVAL_MINIMUM)
    model, tokenizer = load_encoder(args.model)
    check_embeds(model, args.model)
    compressed = load_compressed(model, args.compressed)
    result = _fidelity(model, compressed, tokenizer, evaluation)
    _print_fidelity(result, args.eval)
    return 0
