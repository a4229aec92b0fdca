"""Truncation of one weight matrix in the norm a compression method minimises.

Every method here keeps W_hat = L^-1 P L W, where P = U U^T projects onto the
leading left singular vectors U of a reweighted matrix M = L W R:

- ``rsvd``, ``rsi``, ``exact``: M = W (the Frobenius error of the weight);
- ``whitened``: M = W G^(1/2), G = X X^T the Gram matrix of the layer's
  calibration inputs, so ||(W - W_hat) X||_F, the error of the layer's
  outputs, is minimal (SVD-LLM, Wang et al. 2024, Thm. 3.2);
- ``fisher``: M = D W with D = diag(sqrt(row Fisher information)) (FWSVD,
  Hsu et al. 2022, eq. 4).

Writing W_hat as (L^-1 U)(U^T L W) needs no inverse of the whitening: a
singular Gram matrix is as safe as a regular one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from ..svd import svd as randomized_svd

__all__ = ["METHODS", "SOLVERS", "Spectrum", "spectrum", "weight_factors", "break_even_rank"]

SOLVERS = ("rsi", "rsvd", "exact")
METHODS = (*SOLVERS, "whitened", "fisher")


def break_even_rank(shape) -> int:
    """The largest rank whose factors, r (m + n) numbers, are fewer than the m n of the weight."""
    m, n = shape
    return (m * n - 1) // (m + n)


def _work_dtype(W: torch.Tensor) -> torch.dtype:
    # bf16/fp16 weights are factored in float32, as randla.svd does.
    if W.is_complex():
        return W.dtype
    return torch.float64 if W.dtype == torch.float64 else torch.float32


def _left_basis(M: torch.Tensor, rank: int, solver: str, power_iters, oversample: int, rng):
    """The leading ``rank`` left singular vectors and values of M."""
    if solver == "exact":
        U, S, _ = torch.linalg.svd(M, full_matrices=False)
        return U[:, :rank], S[:rank]
    power = 0 if solver == "rsvd" else power_iters
    result = randomized_svd(M, rank, method="rsi", power_iters=power, oversample=oversample, rng=rng)
    return result.U, result.S


def weight_factors(W: torch.Tensor, rank: int, *, power_iters="auto", oversample: int = 10, rng=None):
    """(up, down) with W ~ up @ down of rank ``rank``, by randomized subspace iteration."""
    spec = spectrum(W, rank, "rsi", power_iters=power_iters, oversample=oversample, rng=rng)
    return spec.factors(rank)


@dataclass(frozen=True)
class Spectrum:
    """A weight truncated at rank ``cap``; any smaller rank is a prefix.

    Attributes
    ----------
    up, down : (m, cap) and (cap, n) tensors
        W_hat(r) = up[:, :r] @ down[:r] is the method's rank-r truncation.
    sizes : (cap,) float64 ndarray
        Each component's own squared norm in the method's error measure.
    errors : (cap + 1,) float64 ndarray
        The method's squared error at ranks 0..cap (index r).
    total : float
        The method's squared error at rank 0 (its norm of W, squared).
    seconds : float
        Time the factorisation took.
    norm_errors : (cap + 1,) float64 ndarray, optional
        The squared error at ranks 0..cap in the norm the method truncates
        in, ||M - U_r U_r^T M||_F^2 of its reweighted M (see the module
        docstring): the weight's Frobenius norm for rsvd, rsi and exact,
        also with calibration; the whitened output norm for whitened; FWSVD's
        ||D (W - W_hat)||_F for fisher. ``errors`` where None.
    """

    up: torch.Tensor
    down: torch.Tensor
    sizes: np.ndarray
    errors: np.ndarray
    total: float
    seconds: float = 0.0
    norm_errors: np.ndarray | None = None

    @property
    def cap(self) -> int:
        return int(self.sizes.shape[0])

    def squared_errors(self) -> np.ndarray:
        """The method's squared error at ranks 0..cap (index r), never negative."""
        return np.clip(self.errors, 0.0, None)

    def relative_errors(self) -> np.ndarray:
        """Squared relative error at ranks 0..cap (index r)."""
        return self.squared_errors() / max(self.total, np.finfo(float).tiny)

    def norm_relative_errors(self) -> np.ndarray:
        """Squared relative error at ranks 0..cap (index r) in the method's own norm (``norm_errors``)."""
        if self.norm_errors is None:
            return self.relative_errors()
        errors = np.clip(self.norm_errors, 0.0, None)
        return errors / max(float(self.norm_errors[0]), np.finfo(float).tiny)

    def factors(self, rank: int):
        return self.up[:, :rank].contiguous(), self.down[:rank].contiguous()


def _sqrt_psd(G: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a PSD matrix; negative rounding in eigenvalues is clipped."""
    w, Q = torch.linalg.eigh(G)
    return (Q * w.clamp(min=0).sqrt()) @ Q.T


def spectrum(
    W: torch.Tensor,
    cap: int,
    method: str,
    *,
    gram: torch.Tensor | None = None,
    row_importance: torch.Tensor | None = None,
    output_weights: torch.Tensor | None = None,
    solver: str = "rsi",
    power_iters="auto",
    oversample: int = 10,
    rng=None,
) -> Spectrum:
    """Factor W (out x in) to rank ``cap`` by ``method`` (see the module docstring).

    ``gram`` (in x in, float64) is the input Gram matrix of the calibration
    data, required by ``whitened``; with it, ``energies`` measure what the
    layer's outputs lose, each output unit weighted by ``output_weights``
    (out,) if given: how much the model's output moves with that unit.
    ``row_importance`` (out,) is required by ``fisher``. ``solver`` (rsi,
    rsvd or exact) computes the SVD of the reweighted matrix for
    ``whitened`` and ``fisher``; the other methods name their own.
    """
    start = time.perf_counter()
    if W.is_complex() and (gram is not None or row_importance is not None):
        raise TypeError("a complex weight is factored by its values alone: calibration (whitened, fisher, "
                        "output-weighted errors) needs real weights.")
    dtype = _work_dtype(W)
    Wd = W.detach().to(dtype)
    left = None
    if method == "whitened":
        M = (Wd.double() @ _sqrt_psd(gram)).to(dtype)
    elif method == "fisher":
        importance = row_importance.double().sqrt()
        if float(importance.max()) == 0.0:
            importance = torch.ones_like(importance)
        # A row nobody's gradient reached keeps a small weight instead of none,
        # so that its entries are not amplified by 1 / 0 when mapped back.
        left = importance.clamp(min=1e-3 * float(importance.mean())).to(dtype)
        M = Wd * left[:, None]
    else:
        M, solver = Wd, method
    U, S = _left_basis(M, cap, solver, power_iters, oversample, rng)
    U = U.to(dtype)
    down = U.mH @ (M if method == "fisher" else Wd)
    up = U if left is None else U / left[:, None]
    # The truncation's own measure, whatever ``errors`` weighs: what ``energy`` ranks count in.
    own_total = float(M.abs().double().square().sum())
    norm_errors = np.concatenate([[own_total], (own_total - torch.cumsum(S.double().square(), 0)).cpu().numpy()])
    if gram is None:
        sizes = S.double().square()
        total = own_total
        errors = total - torch.cumsum(sizes, 0)
    else:
        # Output error of W_hat(k) = sum_{i<=k} a_i b_i^T (a_i = up[:, i], b_i = down[i]), with
        # D = diag(output weights):
        #   E_k = tr(D W G W^T) - 2 sum_{i<=k} a_i^T D W G b_i + sum_{i,j<=k} (a_i^T D a_j)(b_i^T G b_j).
        # The cross terms vanish only when D = I and the a_i are orthonormal; weighted
        # outputs (and fisher's columns) need them all.
        weights = torch.ones(W.shape[0], dtype=torch.float64, device=W.device) if output_weights is None else output_weights
        A, B = up.double(), down.double()
        WG = Wd.double() @ gram
        DA = A * weights[:, None]
        linear = (DA * (WG @ B.T)).sum(dim=0)
        cross = (A.T @ DA) * (B @ gram @ B.T)
        total = float((weights * (WG * Wd.double()).sum(dim=1)).sum())
        errors = total - torch.cumsum(2 * linear - 2 * torch.tril(cross, -1).sum(dim=1) - cross.diagonal(), 0)
        sizes = cross.diagonal().clamp(min=0)  # >= 0 but for rounding
    errors = np.concatenate([[total], errors.cpu().numpy()])
    seconds = time.perf_counter() - start
    return Spectrum(up.to(W.dtype), down.to(W.dtype), sizes.cpu().numpy(), errors, total, seconds, norm_errors)
