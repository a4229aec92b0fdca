"""Networks built of transformers' Conv1D (GPT-2's projections), each with a twin built of nn.Linear."""

import pytest
import torch


def _conv1d_mlp(seed=0, planted_rank=None, widths=(64, 128, 96, 32)):
    """Conv1D layers with GELU between them; weights (in x out) of rank ``planted_rank`` if given."""
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(seed)
    layers = []
    for n, m in zip(widths[:-1], widths[1:]):
        layer = Conv1D(m, n)
        with torch.no_grad():
            # Conv1D's own initialisation has zero biases; random ones check that the bias is carried over.
            layer.bias.normal_()
            if planted_rank is None:
                layer.weight.normal_(std=n**-0.5)
            else:
                layer.weight.copy_(torch.randn(n, planted_rank) @ torch.randn(planted_rank, m) / n)
        layers += [layer, torch.nn.GELU()]
    return torch.nn.Sequential(*layers[:-1])


def _linear_twin(net):
    """The same network with each Conv1D (y = x W + b) as an nn.Linear holding W^T."""
    from transformers.pytorch_utils import Conv1D

    twin = []
    for layer in net:
        if isinstance(layer, Conv1D):
            linear = torch.nn.Linear(layer.nx, layer.nf)
            with torch.no_grad():
                linear.weight.copy_(layer.weight.T)
                linear.bias.copy_(layer.bias)
            layer = linear
        twin.append(layer)
    return torch.nn.Sequential(*twin)


@pytest.fixture
def conv1d_mlp():
    """A factory: ``conv1d_mlp(seed=0, planted_rank=None)`` -> a Conv1D network (needs transformers)."""
    pytest.importorskip("transformers")
    return _conv1d_mlp


@pytest.fixture
def linear_twin():
    return _linear_twin
