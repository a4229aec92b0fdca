"""Sentence encoders from a local Hugging Face model directory, and how faithful a compressed one stays."""

from __future__ import annotations

import io
import numbers
import os

import torch

__all__ = ["load_encoder", "token_batches", "embed", "fidelity", "read_sentences"]


def load_encoder(model_dir):
    """(model, tokenizer) of a local Hugging Face model directory, with no network access."""
    if not os.path.isdir(model_dir):
        raise FileNotFoundError(f"{model_dir} is not a directory; pass a local Hugging Face model directory.")
    # Without it transformers blames a missing tokenizer library instead (sentencepiece, tiktoken).
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise FileNotFoundError(
            f"{model_dir} has no config.json, so it is not a Hugging Face model directory; "
            "pass the folder that holds the model's config.json, weights and tokenizer files."
        )
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging
    except ImportError as exc:
        raise ImportError("loading Hugging Face models needs transformers: pip install 'randla[nn]'") from exc
    hf_logging.disable_progress_bar()  # randla reports its own progress
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModel.from_pretrained(model_dir, local_files_only=True)
    return model.eval(), tokenizer


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


def token_batches(tokenizer, sentences, *, batch_size: int = 64, max_length: int = 128) -> list:
    """Tokenised batches (mappings for ``model(**batch)``), padded per batch."""
    return [
        tokenizer(sentences[i : i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        for i in range(0, len(sentences), batch_size)
    ]


@torch.no_grad()
def embed(model, batches) -> torch.Tensor:
    """Unit-length sentence embeddings: token states averaged over the attention mask (sentence-transformers pooling)."""
    from .calibration import call_model, output_tensor

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
