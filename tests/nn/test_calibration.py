"""Statistics gathered from calibration batches by forward hooks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

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
    # As a BERT pooler is off the path of last_hidden_state: selected alone,
    # the loss does not depend on any selected weight.
    torch.manual_seed(0)
    model = SideBranch()
    stats = collect(model, {"side": model.side}, [torch.randn(3, 4)], gradients=True)
    assert torch.equal(stats["side"].row_importance, torch.zeros(4, dtype=torch.float64))
    assert stats["side"].rows == 3
    assert all(p.requires_grad for p in model.parameters())
