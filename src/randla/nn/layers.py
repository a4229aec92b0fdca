"""LowRankLinear: a drop-in replacement for ``torch.nn.Linear`` that holds W ~ up @ down."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["LowRankLinear", "replace_module", "module_places"]


class LowRankLinear(nn.Module):
    """y = x @ down^T @ up^T + bias: a linear layer whose weight has rank ``rank``.

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
    def from_linear(cls, linear: nn.Linear, rank: int, **options) -> "LowRankLinear":
        """The best rank-``rank`` replacement of ``linear`` by randomized subspace iteration.

        ``options`` go to :func:`randla.svd` (``power_iters``, ``oversample``, ``rng``).
        """
        from .factorize import weight_factors

        up, down = weight_factors(linear.weight.detach(), rank, **options)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(up, down, bias)

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
    """Put ``module`` where ``model``'s submodule ``name`` (dotted) is."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def module_places(model: nn.Module) -> dict:
    """{id(module): every dotted name it has in ``model``}: one module may be used at several places."""
    places = {}
    for name, module in model.named_modules(remove_duplicate=False):
        places.setdefault(id(module), []).append(name)
    return places
