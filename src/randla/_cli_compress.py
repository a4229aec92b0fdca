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
it has no sentence embedding to compare). The layers compressed are those of
the model ``AutoModel`` loads; where the directory holds a causal language
model (its config names a ``...ForCausalLM`` or ``...LMHeadModel``), the
evaluation also loads it with its head (``AutoModelForCausalLM``), puts the
factors in, and reports the perplexity of both models on the sentences.

Both commands take ``--device`` (where the model and the text batches go),
``--dtype`` (what the model is loaded and run in; the factors are computed in
float32 at least and saved in this dtype), ``--max-length`` (tokens per
sentence; a count of the lines cut is printed) and ``--batch-size``
(sentences per forward pass).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import warnings
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
    _add_runtime_options(compress)
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
    _add_runtime_options(evaluate)
    evaluate.set_defaults(command=lambda args: run(_evaluate, args))


DTYPES = ("float32", "float16", "bfloat16")


def _add_runtime_options(command):
    """Where and how the model runs, and how text reaches it: the options both subcommands share."""
    command.add_argument("--device", default="cpu", metavar="DEVICE",
                         help="torch device for the model and the text batches: cpu (default), cuda or cuda:N "
                              "(not mps, which has no float64)")
    command.add_argument("--dtype", choices=DTYPES, default="float32",
                         help="dtype the model is loaded and run in (default: float32); factors are computed in "
                         "float32 at least and saved in this dtype")
    command.add_argument("--max-length", type=_positive_int, metavar="N",
                         help="tokens per sentence; longer ones are cut "
                              "(default: 128, or the model's positions if fewer)")
    command.add_argument("--batch-size", type=_positive_int, default=64, metavar="B",
                         help="sentences per forward pass (default: 64)")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an int >= 1; got {text!r}")
    return value


def _checked_device(text: str):
    """The torch device ``--device`` names, once a tensor can be made on it; else a ``ValueError`` saying why."""
    import torch

    try:
        device = torch.device(text)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ValueError(
            f"--device {text!r} is not a torch device ({exc}); pass e.g. cpu, cuda or cuda:1."
        ) from None
    if device.type == "meta":
        raise ValueError("--device 'meta' holds shapes but no numbers, so no model can run there; "
                         "pass e.g. cpu or cuda.")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "it finds no CUDA GPU"
            raise ValueError(f"--device {text!r}: CUDA is not available to torch {torch.__version__} ({why}); "
                             "pass --device cpu, or run where torch sees a GPU.")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ValueError(f"--device {text!r}: torch sees {count} CUDA device(s), cuda:0 to cuda:{count - 1}.")
    try:
        # randla.nn keeps calibration statistics and errors in float64 on the model's device.
        torch.zeros(1, dtype=torch.float64, device=device)
    except Exception as exc:  # torch says no in many ways: RuntimeError, TypeError, NotImplementedError, ImportError
        # The first sentence: torch may go on to list every backend it has.
        why = re.split(r"(?<=\.)\s", str(exc).strip(), maxsplit=1)[0] or type(exc).__name__
        raise ValueError(f"--device {text!r} cannot hold the float64 tensors randla.nn computes with there ({why}); "
                         "pass --device cpu or a CUDA device.") from None
    return device


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


def _load(args, device, *, head: bool):
    """(model, tokenizer, language model or None) of MODEL_DIR, on ``device`` in ``--dtype``.

    ``model`` is what ``AutoModel`` loads: the layers compressed, the
    sentence embeddings compared. Where ``head`` is asked for and the
    directory holds a causal language model, that is loaded instead
    (``AutoModelForCausalLM``, once) and ``model`` is its base model.
    """
    import torch

    from .nn.causal import is_causal_lm, load_causal_lm
    from .nn.text import load_config, load_encoder

    dtype = getattr(torch, args.dtype)
    if head and is_causal_lm(load_config(args.model)):
        language_model, tokenizer = load_causal_lm(args.model, dtype=dtype)
        language_model.to(device)
        return language_model.base_model, tokenizer, language_model
    model, tokenizer = load_encoder(args.model, dtype=dtype)
    return model.to(device), tokenizer, None


def _max_length(args, model) -> int:
    """``--max-length``, refused beyond the model's positions; by default 128 or the positions if fewer."""
    from .nn.text import token_limit

    if args.max_length is None:
        return token_limit(model)
    positions = token_limit(model, default=args.max_length)
    if positions < args.max_length:
        raise ValueError(f"--max-length {args.max_length} is more than the model's {positions} positions "
                         f"(max_position_embeddings in its config); pass at most {positions}.")
    return args.max_length


def _token_batches(args, tokenizer, sentences, path, max_length: int, device) -> list:
    """The sentences of ``path`` as batches on ``device``, with a warning where some are cut to ``max_length``."""
    from .nn.text import count_truncated, token_batches

    cut = count_truncated(tokenizer, sentences, max_length=max_length)
    if cut:
        print(f"randla: warning: {cut} of the {len(sentences)} lines of {path} are longer than {max_length} tokens "
              f"and are cut to {max_length} (--max-length)", file=sys.stderr)
    return token_batches(tokenizer, sentences, batch_size=args.batch_size, max_length=max_length, device=device)


def _evaluation(models, compressed_models, batches) -> dict:
    """Fidelity of the compressed base model's sentence embeddings; perplexities where a language model is given.

    ``models`` and ``compressed_models`` are (base model, language model or None) pairs.
    """
    from .nn.causal import perplexity, predicted_tokens
    from .nn.text import embed, fidelity

    start = time.perf_counter()
    reference = embed(models[0], batches)
    result = fidelity(reference, embed(compressed_models[0], batches))
    result["sentences"] = int(reference.shape[0])
    if models[1] is not None:
        result["perplexity"] = {"original": perplexity(models[1], batches),
                                "compressed": perplexity(compressed_models[1], batches)}
        result["scored_tokens"] = sum(int(predicted_tokens(batch).sum()) for batch in batches)
    result["seconds"] = time.perf_counter() - start
    return result


def _print_evaluation(result: dict, path):
    print(
        f"fidelity on {result['sentences']} sentences of {path}: mean cosine {result['cosine']:.4f}, "
        f"top-{result['k']} neighbour agreement {result['neighbours']:.4f}"
    )
    if "perplexity" in result:
        scores = result["perplexity"]
        print(f"perplexity on {result['scored_tokens']} tokens of {path}: original {scores['original']:.4f}, "
              f"compressed {scores['compressed']:.4f}")


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


def _checked_out(name: str) -> Path:
    """OUT_DIR, refused before any work where the factors could not be written there.

    Nothing is created yet: the nearest folder on the path that exists is
    probed with a directory made and removed at once, so that the real cause
    (a part of the path that is a file, a folder that takes no new entries)
    is named now, not after the compression.
    """
    out = Path(name)
    existing = next(part for part in (out, *out.parents)
                    if part.exists() or part.is_symlink() or part == Path(part.anchor or "."))
    if existing.is_symlink() and not existing.exists():  # mkdir would fail on it only after the compression
        raise ValueError(f"--out {name!r}: {str(existing)!r} is a symbolic link to a missing "
                         f"{os.readlink(existing)!r}; create its target or choose another --out.")
    if existing == out and not out.is_dir():
        raise ValueError(f"--out {name!r} exists and is not a directory.")
    if not existing.is_dir():
        raise ValueError(f"--out {name!r}: {str(existing)!r} is a file, not a directory, so no folder can be "
                         "made inside it; choose another --out.")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".randla-", dir=existing))
    except OSError as exc:
        raise ValueError(f"--out {name!r}: cannot write in {str(existing)!r} ({exc.strerror or exc}); "
                         "choose another --out.") from None
    return out


def _nothing_factored(args) -> str:
    """Why a run left every layer dense, and what to change: there is nothing to save."""
    if args.reduction is None:
        option = "--rank" if args.rank is not None else "--energy"
        asked, hint = f"{option} {args.rank if args.rank is not None else f'{args.energy:g}'}", f"lower {option}"
        why = ("as its rank would be at or above the layer's break-even rank, where the factors hold as many "
               "parameters as the weight")
    else:
        asked, hint = f"--reduction {args.reduction:g}", "raise --reduction or choose other layers (--include)"
        why = "as the allocation found no layer worth factoring (see any warning above)"
    return (f"no layer was factored: with {asked} every selected layer is left dense (see the table), {why}. "
            f"Nothing was written to {args.out}; {hint}.")


def _compress(args) -> int:
    from .nn import compress, load_compressed, save_compressed
    from .nn.compress import check_target
    from .nn.text import check_embeds, read_sentences, with_decoder_inputs

    check_target(args.reduction, args.rank, args.energy)
    if args.method in ("whitened", "fisher") and args.calib is None:
        raise ValueError(f"--method {args.method} needs calibration sentences: --calib TEXT_FILE.")
    if args.share_inputs is not None and (args.calib is None or args.reduction is None):
        raise ValueError("--share-inputs needs --calib TEXT_FILE (to find layers reading one input) and --reduction.")
    out = _checked_out(args.out)
    device = _checked_device(args.device)
    # Read the text files first: a wrong path fails before the long part.
    calibration = None if args.calib is None else read_sentences(args.calib)
    evaluation = None if args.eval is None else read_sentences(args.eval, minimum=_EVAL_MINIMUM)
    model, tokenizer, language_model = _load(args, device, head=evaluation is not None)
    if evaluation is not None:
        check_embeds(model, args.model)
    max_length = _max_length(args, model)
    if calibration is not None:
        calibration = with_decoder_inputs(model, _token_batches(args, tokenizer, calibration, args.calib, max_length,
                                                                device))
    if evaluation is not None:
        evaluation = _token_batches(args, tokenizer, evaluation, args.eval, max_length, device)
    print(f"compressing {args.model} ({args.method}, {args.allocation} allocation; {args.dtype} on {device})",
          file=sys.stderr)
    with warnings.catch_warnings(record=True) as caught:  # the library's warnings, in the command's voice
        warnings.simplefilter("always")
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
    for caught_warning in caught:
        if issubclass(caught_warning.category, UserWarning):
            print(f"randla: warning: {caught_warning.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(caught_warning.message, caught_warning.category, caught_warning.filename,
                                   caught_warning.lineno)
    print(report.table())
    print(
        f"{report.params_before:,} -> {report.params_after:,} weight parameters "
        f"({100 * report.reduction:.1f}% removed) in {report.seconds:.1f} s"
    )
    if all(layer.rank is None for layer in report.layers):
        raise ValueError(_nothing_factored(args))
    _remove_earlier_outputs(out)
    save_compressed(compressed, out, report=report, factors_only=True)  # the rest is the original's
    print(f"saved the factors to {out}")
    try:
        from .plot import plot_compression

        plot_compression(report, out / "spectra.png")  # imports matplotlib: ImportError without it
    except ImportError:
        print("matplotlib is not installed: no spectra.png (pip install 'randla[plot]')", file=sys.stderr)
    else:
        print(f"plotted spectra and error against rank to {out / 'spectra.png'}")
    if evaluation is not None:
        compressed_language_model = None
        if language_model is not None:
            # The saved factors in the model with its head, as `randla evaluate` rebuilds it; its
            # base model is the compressed one (the copy compress made is let go).
            compressed_language_model = load_compressed(language_model, out)
            compressed = compressed_language_model.base_model
        result = _evaluation((model, language_model), (compressed, compressed_language_model), evaluation)
        _print_evaluation(result, args.eval)
        _write_json(out / "evaluation.json", result)
    return 0


def _evaluate(args) -> int:
    from .nn import load_compressed
    from .nn.text import check_embeds, read_sentences

    device = _checked_device(args.device)
    evaluation = read_sentences(args.eval, minimum=_EVAL_MINIMUM)
    model, tokenizer, language_model = _load(args, device, head=True)
    check_embeds(model, args.model)
    max_length = _max_length(args, model)
    if language_model is None:
        compressed, compressed_language_model = load_compressed(model, args.compressed), None
    else:
        compressed_language_model = load_compressed(language_model, args.compressed)
        compressed = compressed_language_model.base_model
    batches = _token_batches(args, tokenizer, evaluation, args.eval, max_length, device)
    result = _evaluation((model, language_model), (compressed, compressed_language_model), batches)
    _print_evaluation(result, args.eval)
    return 0
