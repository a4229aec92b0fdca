"""LowRankLinear: a drop-in replacement for a linear layer that holds W ~ up @ down.

The linear layers randla factors are ``torch.nn.Linear`` (weight stored
out x in, y = x W^T + b) and transformers' ``Conv1D`` of the GPT-2 family
(weight stored in x out, y = x W + b). :func:`linear_weight` reads either as
the out x in matrix W, so the rest of :mod:`randla.nn` sees one kind.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

__all__ = [
    "LowRankLinear", "replace_module", "module_places", "is_linear", "is_conv1d", "linear_weight", "LINEAR_KINDS",
]

#: How messages name the layers randla factors.
LINEAR_KINDS = "torch.nn.Linear or transformers' Conv1D"


def is_conv1d(module) -> bool:
    """Whether ``module`` is exactly transformers' ``Conv1D`` (GPT-2's projections, weight in x out)."""
    # transformers is optional and never imported here: a model can only hold
    # its Conv1D once transformers has been imported by whoever built it.
    utils = sys.modules.get("transformers.pytorch_utils")
    conv1d = getattr(utils, "Conv1D", None)
    return conv1d is not None and type(module) is conv1d


def is_linear(module) -> bool:
    """Whether ``module`` is a layer randla factors: exactly ``torch.nn.Linear`` or transformers' ``Conv1D``.

    Subclasses are not: they may change the forward (quantised or adapted layers).
    """
    return type(module) is nn.Linear or is_conv1d(module)


def linear_weight(module) -> torch.Tensor:
    """The weight of a linear layer as its (out_features, in_features) matrix: a transposed view for ``Conv1D``."""
    return module.weight.T if is_conv1d(module) else module.weight


class LowRankLinear(nn.Module):
    """y = x @ down^T @ up^T + bias: a linear layer whose weight has rank ``rank``.

    It replaces a ``torch.nn.Linear`` or a transformers ``Conv1D`` alike: the
    factors are of the out x in weight W, whichever way the layer stored it.

    Parameters
    ----------
    up : (out_features, rank) tensor
    down : (rank, in_features) tensor or ``nn.Parameter``
        Passing the same ``nn.Parameter`` to several layers shares it: layers
        that read the same input can use one down-projection.
    bias : (out_features,) tensor or None

    Notes
    -----
    A rank-r factorisation of an m x n weight stores r (m + n) numbers instead
    of m n and costs the same ratio of multiply-adds, so it pays when
    r < m n / (m + n).

    Examples
    --------
    >>> import torch
    >>> from randla.nn import LowRankLinear
    >>> layer = LowRankLinear.from_linear(torch.nn.Linear(64, 32), rank=8)
    >>> layer(torch.ones(5, 64)).shape, layer.rank
    (torch.Size([5, 32]), 8)
    """

    def __init__(self, up, down, bias=None):
        super().__init__()
        if up.ndim != 2 or down.ndim != 2 or up.shape[1] != down.shape[0]:
            raise ValueError(
                f"`up` (out x rank) and `down` (rank x in) must be matrices with a common rank; "
                f"got shapes {tuple(up.shape)} and {tuple(down.shape)}."
            )
        if bias is not None and tuple(bias.shape) != (up.shape[0],):
            raise ValueError(f"`bias` must have shape ({up.shape[0]},); got {tuple(bias.shape)}.")
        self.up = up if isinstance(up, nn.Parameter) else nn.Parameter(up)
        self.down = down if isinstance(down, nn.Parameter) else nn.Parameter(down)
        self.bias = None if bias is None else (bias if isinstance(bias, nn.Parameter) else nn.Parameter(bias))

    @classmethod
    @torch.inference_mode(False)  # parameters made under the caller's inference_mode could never train
    def from_linear(cls, linear: nn.Module, rank: int, **options) -> "LowRankLinear":
        """The best rank-``rank`` replacement of ``linear`` by randomized subspace iteration.

        ``linear`` is a ``torch.nn.Linear`` (or a subclass) or transformers' ``Conv1D``;
        ``options`` go to :func:`randla.svd` (``power_iters``, ``oversample``, ``rng``).
        ``linear`` is left as it was. The factors are trainable where its
        weight is (``requires_grad``), the bias (a copy) where its bias is.
        """
        from .factorize import weight_factors

        if not (isinstance(linear, nn.Linear) or is_conv1d(linear)):
            raise TypeError(f"`linear` must be a {LINEAR_KINDS}; got {type(linear).__name__}.")
        weight = linear_weight(linear)
        up, down = weight_factors(weight.detach(), rank, **options)
        trainable = weight.requires_grad
        bias = None
        if linear.bias is not None:
            bias = nn.Parameter(linear.bias.detach().clone(), requires_grad=linear.bias.requires_grad)
        return cls(nn.Parameter(up, requires_grad=trainable), nn.Parameter(down, requires_grad=trainable), bias)

    @property
    def in_features(self) -> int:
        return int(self.down.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.up.shape[0])

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def weight(self) -> torch.Tensor:
        """The dense weight up @ down (out_features x in_features), for inspection."""
        return self.up @ self.down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(nn.functional.linear(x, self.down), self.up, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}, bias={self.bias is not None}"


def replace_module(model: nn.Module, name: str, module: nn.Module):
    """Put ``module`` where ``model``'s submodule ``name`` (dotted) is.

    ``name`` "" is ``model`` itself, which no module can replace in place:
    a ``ValueError`` says so (use ``module`` in its stead).
    """
    if not name:
        raise ValueError(f"cannot replace the model ({type(model).__name__}) itself in place; use the new "
                         f"{type(module).__name__} in its stead.")
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def module_places(model: nn.Module) -> dict:
    """{id(module): every dotted name it has in ``model``}: one module may be used at several places."""
    places = {}
    for name, module in model.named_modules(remove_duplicate=False):
        places.setdefault(id(module), []).append(name)
    return places
