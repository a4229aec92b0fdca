"""Principal-component initialisation of LoRA adapters (PiSSA)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
from torch import nn

from .._results import Unpackable
from .._validate import check_int, check_power_iters, check_rank, check_rng
from ..svd import svd as randomized_svd
from .layers import LINEAR_KINDS, is_conv1d, linear_weight

__all__ = ["pissa_init", "PissaInit"]


@dataclass(frozen=True, repr=False)
class PissaInit(Unpackable):
    """W = scaling * B @ A + residual; unpacks as ``A, B, residual``.

    Attributes
    ----------
    A : (rank, in_features) tensor, sqrt(S / scaling) V^T
    B : (out_features, rank) tensor, U sqrt(S / scaling)
    residual : (out_features, in_features) tensor, the frozen base weight
    error : float
        ||residual||_F / ||W||_F, what the adapter leaves out at initialisation.
    scaling : float
        The adapter's factor s.
    """

    A: torch.Tensor
    B: torch.Tensor
    residual: torch.Tensor
    error: float
    scaling: float = 1.0
    _unpack = ("A", "B", "residual")

    @property
    def rank(self) -> int:
        return int(self.A.shape[0])

    def factors(self):
        """(L, R) = (s B, A): the principal part of W is L @ R."""
        return self.scaling * self.B, self.A

    def reconstruct(self) -> torch.Tensor:
        """The principal part s B @ A, W's rank-``rank`` approximation (W = it + ``residual``)."""
        L, R = self.factors()
        return L @ R


@torch.inference_mode(False)  # factors made under the caller's inference_mode could never train
def pissa_init(linear, rank: int, *, scaling: float = 1.0, oversample: int = 10, power_iters="auto",
               rng=None) -> PissaInit:
    """Split a layer's weight into its principal rank-``rank`` part, as adapter factors, and the rest.

    Parameters
    ----------
    linear : torch.nn.Linear, transformers' Conv1D or (out, in) tensor
        A ``Conv1D`` (GPT-2) is split as its out x in weight W, the
        transpose of what it stores, like a ``Linear``: put the residual
        back into it as ``residual.T``.
    rank : int
        Rank of the adapter.
    scaling : float > 0, default 1
        The factor s of the adapter's forward, ``residual @ x + s * B @ A @ x``:
        PEFT's ``lora_alpha / r`` (``lora_alpha / sqrt(r)`` with rsLoRA). A
        and B are divided by sqrt(s), so the adapted layer starts from W
        whatever s is.
    oversample, power_iters, rng :
        As in :func:`randla.svd`; the top singular triplets come from
        randomized subspace iteration.

    Returns
    -------
    PissaInit
        Unpacks as ``A, B, residual``; also ``error`` (the relative
        Frobenius norm of the residual), ``scaling``, ``factors()`` and
        ``reconstruct()`` (the principal part s B @ A).

    Notes
    -----
    PiSSA (Meng, Wang & Zhang 2024, eq. 2-3) trains A and B initialised from
    the top singular triplets and freezes the residual, so fine-tuning starts
    from the exact weight and updates its principal subspace. The weight is
    read, never changed. Factors keep its dtype (real or complex; float64 for an integer
    weight) and device.

    Examples
    --------
    >>> import torch
    >>> from randla.nn import pissa_init
    >>> A, B, residual = pissa_init(torch.nn.Linear(64, 32), rank=4, rng=0)
    >>> A.shape, B.shape, residual.shape
    (torch.Size([4, 64]), torch.Size([32, 4]), torch.Size([32, 64]))
    """
    W = linear_weight(linear) if isinstance(linear, nn.Linear) or is_conv1d(linear) else linear
    if not isinstance(W, torch.Tensor) or W.ndim != 2:
        raise TypeError(f"`linear` must be a {LINEAR_KINDS} or a 2-D tensor; got {type(linear).__name__}.")
    rank = check_rank(rank, tuple(W.shape))
    if isinstance(scaling, bool) or not isinstance(scaling, numbers.Real) or not 0 < scaling < math.inf:
        raise ValueError(f"`scaling` must be a finite float > 0 (lora_alpha / r); got {scaling!r}.")
    oversample = check_int("oversample", oversample, 0)
    power_iters = check_power_iters(power_iters)
    W = W.detach()
    # Half precisions are computed in single and returned in their dtype; integers are promoted to float64.
    dtype = W.dtype if W.is_floating_point() or W.is_complex() else torch.float64
    full = (torch.float32, torch.float64, torch.complex64, torch.complex128)
    work = W.to(dtype if dtype in full else torch.complex64 if W.is_complex() else torch.float32)
    U, S, Vh = randomized_svd(work, rank, oversample=oversample, power_iters=power_iters, rng=check_rng(rng))
    root = (S / scaling).sqrt()
    B = U * root[None, :]
    A = root[:, None] * Vh
    residual = work - scaling * (B @ A)
    error = float(torch.linalg.norm(residual) / torch.linalg.norm(work).clamp_min(torch.finfo(work.dtype).tiny))
    return PissaInit(A.to(dtype), B.to(dtype), residual.to(dtype), error, float(scaling))
