"""Sentence encoders from a local Hugging Face model directory, and how faithful a compressed one stays.

Any model ``transformers.AutoModel`` loads is read: encoders (BERT,
DistilBERT), decoders (GPT-2, Llama) and encoder-decoders (T5). A decoder's
tokenizer often has no padding token; batches are then padded with its
end-of-sequence token, which the attention mask hides. An encoder-decoder
reads calibration text in both halves (:func:`with_decoder_inputs`), but has
no sentence embedding to compare (:func:`check_embeds`).
"""

from __future__ import annotations

import copy
import io
import json
import numbers
import os
from collections.abc import Mapping

import torch

from .calibration import call_model, is_encoder_decoder, output_tensor

__all__ = [
    "load_encoder", "load_config", "checked_model_dir", "token_batches", "count_truncated", "token_limit",
    "with_decoder_inputs", "embed", "check_embeds", "fidelity", "read_sentences",
]


def load_encoder(model_dir, *, dtype=None):
    """(model, tokenizer) of a local Hugging Face model directory, with no network access.

    The model is what ``transformers.AutoModel`` loads, in eval mode, in
    ``dtype`` (a ``torch.dtype``; default: transformers' choice, the dtype
    the checkpoint was saved in). The tokenizer pads: with its
    end-of-sequence token where the directory names no padding token
    (GPT-2, Llama).
    """
    transformers = checked_model_dir(model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = _from_pretrained(transformers.AutoModel, model_dir, dtype)
    return model.eval(), _with_pad_token(tokenizer)


def _from_pretrained(auto_class, model_dir, dtype=None):
    """``auto_class.from_pretrained`` of a local directory, in ``dtype``; weights it cannot read raise ``ValueError``.

    A download cut short, a corrupt file or a pickle of more than tensors
    (never unpickled: transformers loads with ``weights_only``) otherwise
    escapes as safetensors', pickle's or torch's own error, which names
    neither the directory nor what to do; so does weights' shape that differs
    from what ``config.json`` declares. Other errors pass unchanged.
    """
    import pickle

    from safetensors import SafetensorError

    options = _dtype_option(dtype)
    try:
        return auto_class.from_pretrained(model_dir, local_files_only=True, **options)
    except (SafetensorError, pickle.UnpicklingError, EOFError, RuntimeError) as exc:
        mismatch = isinstance(exc, RuntimeError) and "ignore_mismatched_sizes" in str(exc)
        if isinstance(exc, RuntimeError) and not mismatch and not any(m in str(exc) for m in _UNREADABLE):
            raise  # not the file's bytes (out of memory, a bug): "download again" would mislead
        files = ", ".join(sorted(name for name in os.listdir(model_dir) if name.endswith(_WEIGHT_SUFFIXES)))
        where = f"{model_dir} ({files or 'no weight file'})"
        if isinstance(exc, pickle.UnpicklingError):
            raise ValueError(
                f"cannot load the weights in {where}: they hold pickled Python objects besides tensors, which are "
                "never loaded (unpickling can run arbitrary code). Save the model as safetensors "
                "(model.save_pretrained) where you trust its source."
            ) from exc
        if mismatch:  # transformers logs which tensors, with both shapes, just before
            raise ValueError(
                f"the weights in {where} do not match {os.path.join(model_dir, 'config.json')}: some tensors' shapes "
                "differ from those the config declares (transformers' report above lists them). Correct config.json "
                "(e.g. vocab_size) to the weights, or save the model again with model.save_pretrained."
            ) from exc
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ValueError(
            f"cannot read the weights in {where}: truncated or corrupt ({first.strip()}). Download or save the "
            "model again."
        ) from exc


# Files of model weights transformers reads, named in the error for weights it cannot.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")

# What torch's RuntimeErrors for a cut or damaged checkpoint say (its zip reader; the pickle stream's end).
_UNREADABLE = ("PytorchStreamReader", "unexpected EOF", "unexpected end of file")


def load_config(model_dir):
    """The ``transformers`` configuration of a local Hugging Face model directory, with no network access."""
    transformers = checked_model_dir(model_dir)
    return transformers.AutoConfig.from_pretrained(model_dir, local_files_only=True)


def checked_model_dir(model_dir):
    """The ``transformers`` module, once ``model_dir`` is known to be a local Hugging Face model directory.

    Network access is turned off (``HF_HUB_OFFLINE``) unless the environment
    already says otherwise.
    """
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"{model_dir} is not a directory; pass a local Hugging Face model directory.")
    # Without it transformers blames a missing tokenizer library instead (sentencepiece, tiktoken).
    config = os.path.join(model_dir, "config.json")
    if not os.path.isfile(config):
        raise FileNotFoundError(
            f"{model_dir} has no config.json, so it is not a Hugging Face model directory; "
            "pass the folder that holds the model's config.json, weights and tokenizer files."
        )
    if not _names_a_model_type(config):
        # A sentence-transformers module folder (1_Pooling/) has a config.json of its own.
        raise ValueError(
            f"{config} names no model_type, so {model_dir} is not a Hugging Face model directory (a "
            "sentence-transformers module folder such as 1_Pooling/ looks like one); pass the folder that holds "
            "the model's config.json, weights and tokenizer files: for sentence-transformers, the top one."
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import transformers
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ImportError("loading Hugging Face models needs transformers: pip install 'randla[nn]'") from exc
    hf_logging.disable_progress_bar()  # randla reports its own progress
    return transformers


def _dtype_option(dtype) -> dict:
    if dtype is None:
        return {}
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError("`dtype` must be a floating-point torch.dtype (torch.float32, torch.bfloat16); "
                         f"got {dtype!r}.")
    return {"dtype": dtype}


def _names_a_model_type(config) -> bool:
    try:
        with open(config, "rb") as stream:
            description = json.load(stream)
    except (ValueError, OSError):
        return False
    return isinstance(description, dict) and isinstance(description.get("model_type"), str)


def read_sentences(path, *, minimum: int = 1) -> list:
    """The non-empty lines of a UTF-8 text file, at least ``minimum`` of them."""
    with open(path, "rb") as stream:
        data = stream.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # The codec's own message names neither the file nor the line.
        line = data.count(b"\n", 0, exc.start) + 1
        raise ValueError(
            f"{path} is not UTF-8 text: byte {data[exc.start]:#04x} on line {line}. Save it as UTF-8."
        ) from None
    # A byte order mark (from some Windows editors) is not part of the first sentence.
    lines = [line.strip() for line in io.StringIO(text.removeprefix("\ufeff"), newline=None)]
    sentences = [line for line in lines if line]
    if len(sentences) < minimum:
        raise ValueError(
            f"{path} has {len(sentences)} non-empty line(s); put at least {minimum} sentence(s), one per line."
        )
    return sentences


def _with_pad_token(tokenizer):
    """``tokenizer`` if it has a padding token, else a copy that pads with its end-of-sequence token.

    Which token fills the padding does not matter: the attention mask hides
    it from the model and from randla's statistics. The tokenizer given is
    never changed.
    """
    if getattr(tokenizer, "pad_token", None) is not None:
        return tokenizer
    if getattr(tokenizer, "eos_token", None) is None:
        raise ValueError(
            f"the tokenizer ({type(tokenizer).__name__}) has neither a padding token nor an end-of-sequence token "
            "to pad batches of sentences with; set one, e.g. tokenizer.pad_token = tokenizer.unk_token, or add "
            '"pad_token" to the model directory\'s tokenizer_config.json.'
        )
    padded = copy.deepcopy(tokenizer)
    padded.pad_token = padded.eos_token
    return padded


def token_batches(tokenizer, sentences, *, batch_size: int = 64, max_length: int = 128, device=None) -> list:
    """Tokenised batches (mappings for ``model(**batch)``) of ``batch_size`` sentences, padded per batch.

    Each sentence is cut to ``max_length`` tokens (:func:`count_truncated`
    says how many are). The tensors are on ``device`` (default: the CPU). A
    tokenizer without a padding token (GPT-2's, Llama's) pads with its
    end-of-sequence token, on a copy: ``tokenizer`` itself is not changed.
    """
    for name, value in (("batch_size", batch_size), ("max_length", max_length)):
        _check_positive(name, value)
    tokenizer = _with_pad_token(tokenizer)
    batches = [
        tokenizer(sentences[i : i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        for i in range(0, len(sentences), batch_size)
    ]
    return batches if device is None else [batch.to(device) for batch in batches]


def count_truncated(tokenizer, sentences, *, max_length: int) -> int:
    """How many of ``sentences`` have more than ``max_length`` tokens, so that :func:`token_batches` cuts them.

    Tokens are counted as the model reads them, special tokens included.
    """
    _check_positive("max_length", max_length)
    # Cut at one token more than the limit, a longer sentence still shows as longer; uncut,
    # transformers would log a warning for each beyond the model's own limit.
    lengths = tokenizer(list(sentences), truncation=True, max_length=max_length + 1)["input_ids"]
    return sum(len(ids) > max_length for ids in lengths)


def _check_positive(name: str, value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be an int >= 1; got {value!r}.")


def token_limit(model, default: int = 128) -> int:
    """``default``, or fewer where the model has fewer positions (``max_position_embeddings`` in its config).

    Longer inputs would index past a learned position table (GPT-2's) deep
    inside the model.
    """
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return min(default, positions) if isinstance(positions, int) and positions > 0 else default


def with_decoder_inputs(model, batches) -> list:
    """For an encoder-decoder ``model``, the batches with decoder inputs; for any other, ``batches`` as they are.

    The decoder reads each sentence shifted right by one token behind the
    model's decoder start token (teacher forcing, as in training on the
    sentence as its own target), under the same attention mask, so that
    every layer of both halves runs on the text and padding is skipped
    alike. A batch that already has ``decoder_input_ids`` is kept.
    """
    if not is_encoder_decoder(model):
        return batches
    config = model.config
    start = config.decoder_start_token_id if config.decoder_start_token_id is not None else config.pad_token_id
    if start is None:
        raise ValueError(
            f"the encoder-decoder model ({config.model_type}) names no decoder_start_token_id nor pad_token_id in "
            "its config, so its decoder cannot be given inputs; set config.decoder_start_token_id."
        )
    out = []
    for batch in batches:
        if not isinstance(batch, Mapping) or "decoder_input_ids" in batch or "input_ids" not in batch:
            out.append(batch)
            continue
        ids = batch["input_ids"]
        shifted = torch.cat([torch.full_like(ids[:, :1], start), ids[:, :-1]], dim=1)
        extra = {"decoder_input_ids": shifted}
        if "attention_mask" in batch:
            extra["decoder_attention_mask"] = batch["attention_mask"]
        out.append({**batch, **extra})
    return out


def check_embeds(model, where: str = "the model"):
    """Raise ``ValueError`` unless ``model``'s token states give sentence embeddings: not for an encoder-decoder.

    The output of an encoder-decoder is its decoder's states for given decoder
    inputs, not an embedding of the sentence; its encoder alone would leave
    the decoder's layers unmeasured.
    """
    if is_encoder_decoder(model):
        raise ValueError(
            f"{where} is an encoder-decoder model ({model.config.model_type}), which gives no sentence embeddings "
            "to compare: fidelity needs an encoder (BERT) or a decoder (GPT-2, Llama). Compress it without "
            "--eval, then measure the compressed model on its own task: rebuild it with "
            "randla.nn.load_compressed(model, OUT_DIR)."
        )


@torch.no_grad()
def embed(model, batches) -> torch.Tensor:
    """Unit-length sentence embeddings: token states averaged over the attention mask (sentence-transformers pooling).

    For a decoder (GPT-2, Llama) these are its causal token states averaged;
    an encoder-decoder is refused (:func:`check_embeds`).
    """
    check_embeds(model)
    out = []
    for batch in batches:
        states = output_tensor(call_model(model, batch))
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)
        out.append(torch.nn.functional.normalize(pooled.float(), dim=1))
    return torch.cat(out)


def fidelity(reference: torch.Tensor, embeddings: torch.Tensor, *, k: int = 10) -> dict:
    """How close compressed embeddings stay to the original ones.

    Returns ``cosine``, the mean cosine similarity of each sentence's two
    embeddings, ``neighbours``, the mean fraction of each sentence's k
    nearest neighbours (by cosine, among the same sentences) that both models
    agree on, and ``k``, the number of neighbours compared: at most the
    number of other sentences, so at least two sentences are needed.
    """
    if reference.shape != embeddings.shape:
        raise ValueError(f"embeddings of shape {tuple(embeddings.shape)} do not match the reference {tuple(reference.shape)}.")
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
        raise ValueError(f"`k` must be an int >= 1, the number of neighbours compared; got {k!r}.")
    n = reference.shape[0]
    if n < 2:
        raise ValueError(f"neighbour agreement needs at least 2 sentences, each with a neighbour; got {n}.")
    k = min(int(k), n - 1)
    ref = torch.nn.functional.normalize(reference.double(), dim=1)
    new = torch.nn.functional.normalize(embeddings.double(), dim=1)
    cosine = float((ref * new).sum(dim=1).mean())

    def neighbours(E):
        similarity = E @ E.T
        similarity.fill_diagonal_(-torch.inf)
        return similarity.topk(k, dim=1).indices

    a, b = neighbours(ref), neighbours(new)
    shared = (a.unsqueeze(2) == b.unsqueeze(1)).any(dim=2).sum(dim=1).double() / k
    return {"cosine": cosine, "neighbours": float(shared.mean()), "k": k}
