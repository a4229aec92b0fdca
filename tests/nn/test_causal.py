"""Perplexity of causal language models, checked against torch's own cross-entropy, on tiny random GPT-2 and
Llama models with a language-model head (built from configs, offline)."""

import copy
import math

import pytest
import torch

pytest.importorskip("transformers")

from randla.nn import LowRankLinear, compress, load_compressed, perplexity, save_compressed  # noqa: E402
from randla.nn.causal import is_causal_lm, predicted_tokens  # noqa: E402
from randla.nn.layers import is_linear, linear_weight, module_places, replace_module  # noqa: E402
from randla.nn.text import load_encoder, token_batches  # noqa: E402


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def language_model(request, tiny_model_dir):
    """(model with a random language-model head, tokenizer): the tiny ``kind`` model's config, a fresh model."""
    import transformers

    base, tokenizer = load_encoder(tiny_model_dir(request.param))
    torch.manual_seed(1)
    model = transformers.AutoModelForCausalLM.from_config(base.config).eval()
    return model, tokenizer


def _torch_perplexity(model, batches) -> float:
    """exp of the mean cross-entropy of each next token after a real one, by torch.nn.functional.cross_entropy."""
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            logits = model(**batch).logits.double()
            labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
            flat = logits[:, :-1].reshape(-1, logits.shape[-1])
            total += float(torch.nn.functional.cross_entropy(flat, labels[:, 1:].reshape(-1), reduction="sum"))
            count += int((labels[:, 1:] != -100).sum())
    return math.exp(total / count)


def test_perplexity_is_exp_of_torchs_cross_entropy(language_model, sentences):
    model, tokenizer = language_model
    batches = token_batches(tokenizer, sentences["evaluation"][:12], batch_size=5)
    assert len(batches) == 3 and not bool(batches[0]["attention_mask"].all())  # padded, in several batches
    value = perplexity(model, batches)
    assert value == pytest.approx(_torch_perplexity(model, batches), rel=1e-6)
    # A random head over a 300-token vocabulary is about as good as guessing.
    assert 100 < value < 1000


def test_padding_takes_no_part(language_model, sentences):
    model, tokenizer = language_model
    text = sentences["evaluation"][:6]
    padded = perplexity(model, token_batches(tokenizer, text, batch_size=6))
    one_by_one = perplexity(model, token_batches(tokenizer, text, batch_size=1))
    assert padded == pytest.approx(one_by_one, rel=1e-5)


def _full_rank(base):
    """A copy of ``base`` whose every linear layer is its exact SVD at full rank, as LowRankLinear factors."""
    base = copy.deepcopy(base)
    places = module_places(base)
    for module in [m for m in base.modules() if is_linear(m)]:
        U, S, Vh = torch.linalg.svd(linear_weight(module).detach().double(), full_matrices=False)
        dtype = module.weight.dtype
        layer = LowRankLinear((U * S).to(dtype), Vh.to(dtype), module.bias)
        for place in places[id(module)]:
            replace_module(base, place, layer)
    return base


def test_factors_saved_from_the_base_model_give_the_model_with_its_head_its_perplexity(language_model, sentences,
                                                                                          tmp_path):
    model, tokenizer = language_model
    batches = token_batches(tokenizer, sentences["evaluation"][:16], batch_size=8)
    original = perplexity(model, batches)
    save_compressed(_full_rank(model.base_model), tmp_path / "full", factors_only=True)
    loaded = load_compressed(model, tmp_path / "full")
    assert sum(isinstance(m, LowRankLinear) for m in loaded.modules()) >= 8
    assert perplexity(loaded, batches) == pytest.approx(original, rel=1e-4)
    # The same path with rank-2 factors does change it: the comparison above is not vacuous.
    small, _ = compress(model.base_model, rank=2, rng=0)
    save_compressed(small, tmp_path / "small", factors_only=True)
    assert abs(perplexity(load_compressed(model, tmp_path / "small"), batches) / original - 1) > 1e-3


def test_a_model_without_its_head_gives_no_logits(tiny_model_dir, sentences):
    base, tokenizer = load_encoder(tiny_model_dir("gpt2"))
    with pytest.raises(TypeError, match="gives no logits.*AutoModelForCausalLM"):
        perplexity(base, token_batches(tokenizer, sentences["evaluation"][:2]))


class _Uniform(torch.nn.Module):
    """Equal logits over ``vocabulary`` tokens everywhere: the perplexity is the vocabulary's size."""

    def __init__(self, vocabulary=50, dtype=torch.float32):
        super().__init__()
        self.vocabulary, self.dtype = vocabulary, dtype

    def forward(self, input_ids, attention_mask=None):
        return {"logits": torch.zeros(*input_ids.shape, self.vocabulary, dtype=self.dtype)}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_half_precision_logits_are_scored_in_float32(dtype):
    # log(50000) in bf16 would be 10.8125, not 10.8198: a perplexity of 49,637.
    batch = {"input_ids": torch.tensor([[1, 2, 3, 4, 5]])}
    assert perplexity(_Uniform(50_000, dtype), [batch]) == pytest.approx(50_000, rel=1e-6)


def test_only_tokens_after_a_real_token_are_scored():
    # Left padding (the first two of row 0) and right padding (the last of row 1).
    batch = {"input_ids": torch.tensor([[0, 0, 7, 8, 9], [4, 5, 6, 7, 0]]),
             "attention_mask": torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]])}
    expected = torch.tensor([[False, False, True, True], [True, True, True, False]])
    assert torch.equal(predicted_tokens(batch), expected)
    assert perplexity(_Uniform(), [batch]) == pytest.approx(50.0, rel=1e-6)  # log(50) in float32


def test_sentences_of_one_token_leave_nothing_to_score():
    with pytest.raises(ValueError, match="at least two tokens"):
        perplexity(_Uniform(), [{"input_ids": torch.tensor([[3], [4]])}])
    with pytest.raises(TypeError, match="mapping with input_ids"):
        perplexity(_Uniform(), [torch.tensor([[3, 4]])])


def test_which_configurations_are_causal_language_models():
    import transformers

    assert is_causal_lm(transformers.GPT2Config(architectures=["GPT2LMHeadModel"]))
    assert is_causal_lm(transformers.LlamaConfig(architectures=["LlamaForCausalLM"]))
    assert is_causal_lm(transformers.BertConfig(is_decoder=True))
    assert not is_causal_lm(transformers.GPT2Config(architectures=["GPT2Model"]))  # saved without its head
    assert not is_causal_lm(transformers.BertConfig(architectures=["BertModel"]))
    assert not is_causal_lm(transformers.T5Config(architectures=["T5ForConditionalGeneration"], is_decoder=True))
