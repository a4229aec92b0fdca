"""Causal language models (GPT-2, Llama): which models are, loading one with its head, and perplexity.

A model compressed as ``transformers.AutoModel`` loads it (the base model,
without its language-model head) is scored as a language model by loading
its factors into the model with the head: ``load_compressed`` maps the base
model's layer names through ``base_model_prefix``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from .calibration import call_model, is_encoder_decoder
from .text import _from_pretrained, _with_pad_token, checked_model_dir

__all__ = ["is_causal_lm", "load_causal_lm", "perplexity", "predicted_tokens"]

# Endings of transformers' class names for a decoder with a next-token head.
_CAUSAL_HEADS = ("ForCausalLM", "LMHeadModel")


def is_causal_lm(config) -> bool:
    """Whether a transformers configuration describes a causal language model.

    True where ``config.architectures`` names a class ending in
    ``ForCausalLM`` or ``LMHeadModel`` (``LlamaForCausalLM``,
    ``GPT2LMHeadModel``), or ``config.is_decoder`` is set; never for an
    encoder-decoder (T5, BART), whose decoder reads an encoder's output. A
    directory saved from a base model (``GPT2Model``) names no head and is
    not one.
    """
    if getattr(config, "is_encoder_decoder", False):
        return False
    architectures = getattr(config, "architectures", None) or ()
    named = any(isinstance(name, str) and name.endswith(_CAUSAL_HEADS) for name in architectures)
    return named or bool(getattr(config, "is_decoder", False))


def load_causal_lm(model_dir, *, dtype=None):
    """(model, tokenizer) of a local causal language model directory, with its head and no network access.

    The model is what ``transformers.AutoModelForCausalLM`` loads, in eval
    mode, in ``dtype`` (default: the checkpoint's); its base model, what
    ``AutoModel`` would load, is ``model.base_model``. The tokenizer pads,
    with its end-of-sequence token where the directory names no padding
    token.
    """
    transformers = checked_model_dir(model_dir)
    tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = _from_pretrained(transformers.AutoModelForCausalLM, model_dir, dtype)
    return model.eval(), _with_pad_token(tokenizer)


def predicted_tokens(batch) -> torch.Tensor:
    """(batch, length - 1) bool: which tokens from the second on are predicted and scored.

    Token t is scored when it and the token before it are real (not
    padding, by the batch's ``attention_mask``; all are real without one):
    the model's output at t - 1 predicts it. A padded position, on either
    side, takes no part.
    """
    ids = batch["input_ids"]
    mask = batch.get("attention_mask")
    real = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.to(torch.bool)
    return real[:, 1:] & real[:, :-1]


@torch.no_grad()
def perplexity(model, batches) -> float:
    """Perplexity of a causal language model on tokenised text: exp of the mean next-token negative log-likelihood.

    Parameters
    ----------
    model : torch.nn.Module
        A causal language model whose output has ``logits`` (what
        ``transformers.AutoModelForCausalLM`` loads), in any dtype, on any
        device.
    batches : iterable of mappings
        Tokenised text with ``input_ids`` and, for padded batches,
        ``attention_mask`` (:func:`randla.nn.text.token_batches`), on the
        model's device.

    Returns
    -------
    float
        exp(-sum log p(x_t | x_<t) / N) over the N scored tokens of all
        batches (:func:`predicted_tokens`: every real token after the first
        of its sentence).

    Notes
    -----
    Log-probabilities are taken in float32 at least (from bf16 or fp16
    logits too), and summed over tokens in float64, so that the mean does
    not depend on how the text is split into batches beyond rounding. One
    forward pass per batch.

    Examples
    --------
    >>> import torch
    >>> from randla.nn import perplexity
    >>> class Uniform(torch.nn.Module):  # the same logits everywhere: every token is 1 of 50
    ...     def forward(self, input_ids, attention_mask=None):
    ...         return {"logits": torch.zeros(*input_ids.shape, 50)}
    >>> round(perplexity(Uniform(), [{"input_ids": torch.tensor([[1, 2, 3, 4]])}]), 4)
    50.0
    """
    if is_encoder_decoder(model):
        raise ValueError(f"{type(model).__name__} is an encoder-decoder model; perplexity here is of a causal "
                         "language model's next-token predictions (AutoModelForCausalLM).")
    total, count = 0.0, 0
    for batch in batches:
        if not isinstance(batch, Mapping) or "input_ids" not in batch:
            raise TypeError("each batch must be a mapping with input_ids (a tokenizer's output); "
                            f"got {type(batch).__name__}.")
        logits = _logits(call_model(model, batch), model)
        scored = predicted_tokens(batch)
        targets = batch["input_ids"][:, 1:][scored]
        wide = torch.promote_types(logits.dtype, torch.float32)
        nll = torch.nn.functional.cross_entropy(logits[:, :-1][scored].to(wide), targets, reduction="none")
        # float64 is summed on the CPU: some devices (MPS) have none.
        total += float(nll.detach().to("cpu", torch.float64).sum())
        count += int(scored.sum())
    if count == 0:
        raise ValueError("no token to score: every sentence is a single token (or the batches are empty); "
                         "perplexity needs sentences of at least two tokens.")
    return math.exp(total / count)


def _logits(output, model) -> torch.Tensor:
    logits = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"{type(model).__name__} gives no logits: perplexity needs a causal language model with its head "
            "(transformers.AutoModelForCausalLM; randla.nn.causal.load_causal_lm), not its base model (AutoModel)."
        )
    return logits
