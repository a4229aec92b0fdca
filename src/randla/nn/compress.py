"""Compress a model: replace its linear layers by low-rank factors under a parameter budget.

The layers are ``torch.nn.Linear`` and transformers' ``Conv1D`` (GPT-2).
"""

from __future__ import annotations

import copy
import fnmatch
import numbers
import time
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .._validate import check_choice, check_int, check_power_iters, check_rng, child_rng
from .allocation import check_budget, energy_ranks, global_ranks, summed_error, uniform_ranks
from .calibration import collect
from .factorize import METHODS, SOLVERS, break_even_rank, spectrum
from .layers import LINEAR_KINDS, LowRankLinear, is_linear, linear_weight, module_places, replace_module

__all__ = ["compress", "check_target", "CompressionReport", "LayerReport", "ALLOCATIONS"]

ALLOCATIONS = ("global", "uniform")


@dataclass(frozen=True)
class LayerReport:
    """One selected layer after compression; ``rank`` is None where it was left dense.

    ``singular_values`` are the sizes of the method's components up to the
    rank cap, relative to the layer's norm in the method's error measure
    (for ``exact`` without calibration: sigma_i / ||W||_F), and ``errors[r]``
    the relative error at rank r; None where the layer was not factored. ``group`` names the layers that share one
    down-projection with it (itself alone when none do); the shared factor's
    parameters are counted at the first of them.
    """

    name: str
    shape: tuple
    rank: int | None
    params_before: int
    params_after: int
    weight_error: float
    output_error: float | None
    seconds: float
    singular_values: np.ndarray | None = None
    errors: np.ndarray | None = None
    group: tuple = ()


@dataclass(frozen=True)
class CompressionReport:
    """What :func:`compress` did, layer by layer.

    ``weight_error`` is ||W - W_hat||_F / ||W||_F; ``output_error`` is
    ||(W - W_hat) X||_F / ||W X||_F on the calibration inputs X (None without
    calibration). Parameter counts are of the weights (biases are kept as
    they are). ``objective`` is the summed error the rank allocation
    approximately minimised (with ``reduction``; see :func:`compress`).
    """

    layers: tuple
    method: str
    allocation: str
    seconds: float
    objective: float | None = None

    @property
    def params_before(self) -> int:
        return sum(layer.params_before for layer in self.layers)

    @property
    def params_after(self) -> int:
        return sum(layer.params_after for layer in self.layers)

    @property
    def reduction(self) -> float:
        """Fraction of the selected layers' weight parameters removed."""
        return 1.0 - self.params_after / self.params_before

    def table(self) -> str:
        """The per-layer table as aligned text."""
        header = ("layer", "shape", "rank", "rel. error", "output error", "params saved")
        rows = [
            (
                layer.name,
                "x".join(map(str, layer.shape)),
                "dense" if layer.rank is None else str(layer.rank),
                f"{layer.weight_error:.4f}",
                "-" if layer.output_error is None else f"{layer.output_error:.4f}",
                f"{layer.params_before - layer.params_after:,}",
            )
            for layer in self.layers
        ]
        rows.append(
            ("total", "", "", "", "", f"{self.params_before - self.params_after:,} ({100 * self.reduction:.1f}%)")
        )
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in [header, *rows]]
        lines.insert(1, "-" * len(lines[0]))
        return "\n".join(lines)


def _select(model, include, exclude) -> dict:
    """{name: (layer, every name it is used under)} for the selected layers, by their first name.

    A module used at several places is one layer, selected unless one of its
    names is excluded. A layer holding a parameter that another module also
    holds (tied weights) is left out: factoring it would break the tie.
    """
    include = (include,) if isinstance(include, str) else tuple(include)
    exclude = (exclude,) if isinstance(exclude, str) else tuple(exclude)
    places = module_places(model)
    holders = Counter(id(p) for module in model.modules() for p in module.parameters(recurse=False))
    chosen, tied = {}, []
    for module in model.modules():
        names = places[id(module)]
        if (
            is_linear(module)
            and any(fnmatch.fnmatchcase(name, p) for name in names for p in include)
            and not any(fnmatch.fnmatchcase(name, p) for name in names for p in exclude)
        ):
            if all(holders[id(p)] == 1 for p in module.parameters()):
                chosen[names[0]] = (module, tuple(names))
            else:
                tied.append(names[0])
    if tied and not chosen:
        raise ValueError(
            f"every linear layer ({LINEAR_KINDS}) matching include={include!r} and exclude={exclude!r} shares a parameter "
            f"with another module (tied weights, e.g. {tied[0]!r}); factoring one would break the tie."
        )
    if not chosen:
        raise ValueError(
            f"no linear layer ({LINEAR_KINDS}) of the model matches include={include!r} and exclude={exclude!r}."
        )
    return chosen


def check_target(reduction, rank, energy):
    given = [name for name, value in (("reduction", reduction), ("rank", rank), ("energy", energy)) if value is not None]
    if len(given) != 1:
        raise ValueError(f"pass exactly one of `reduction`, `rank` or `energy`; got {given or 'none'}.")
    for name, value in (("reduction", reduction), ("energy", energy)):
        if value is not None and not (
            isinstance(value, numbers.Real) and not isinstance(value, bool) and 0.0 < float(value) < 1.0
        ):
            raise ValueError(f"`{name}` must be a float in (0, 1); got {value!r}.")
    if rank is not None:
        check_int("rank", rank, 1)


@dataclass
class _Unit:
    """What one factorisation covers: a layer, or layers reading one input stacked as [W_1; W_2; ...]."""

    names: tuple
    weight: torch.Tensor
    gram: torch.Tensor | None
    row_importance: torch.Tensor | None
    output_weights: torch.Tensor | None

    @property
    def shape(self) -> tuple:
        return tuple(self.weight.shape)

    @classmethod
    def of(cls, layers, stats, names):
        def stacked(field):
            parts = [getattr(stats[n], field) for n in names] if names[0] in stats else [None]
            return None if parts[0] is None else torch.cat(parts)

        weights = [linear_weight(layers[n]) for n in names]
        weight = torch.cat([w.detach() for w in weights]) if len(names) > 1 else weights[0]
        gram = stats[names[0]].gram if names[0] in stats else None
        output_weights = stacked("output_sensitivity")
        if output_weights is not None and not bool(output_weights.any()):
            # Unmeasured (off the output's path), not free: its errors are the unweighted output errors.
            output_weights = None
        return cls(tuple(names), weight, gram, stacked("row_importance"), output_weights)


def _cap(shape, rank, reduction, allocation) -> int:
    """The rank to factor a unit to (0: leave it dense)."""
    cap = break_even_rank(shape)
    if rank is not None:
        return rank if rank <= cap else 0
    if reduction is not None and allocation == "uniform":
        r = uniform_ranks([shape], reduction, [cap])[0]
        return 0 if r is None else r
    return cap


def _share(units, caps, spectra, layers, stats, reduction, allocation, tolerance, factor):
    """Merge the layers that read one input into one unit where its predicted error stays low.

    Stacked layers [W_1; W_2; W_3] ~ U D share the down-projection D, and each
    keeps its block of U (concatenated SVD): the group is merged when, with
    the parameters every layer keeps under uniform allocation, its predicted
    error is at most (1 + tolerance) times the separate layers' summed error.
    """
    by_input = {}
    for index, unit in enumerate(units):
        by_input.setdefault(stats[unit.names[0]].input_key, []).append(index)
    merged = set()
    out = ([], [], [])
    for members in by_input.values():
        if len(members) < 2 or any(spectra[i] is None for i in members):
            continue
        group = _Unit.of(layers, stats, tuple(n for i in members for n in units[i].names))
        cap = _cap(group.shape, None, reduction, allocation)
        if not cap:
            continue
        together = factor(group, cap)
        r_group = uniform_ranks([group.shape], reduction, [cap])[0]
        r_each = uniform_ranks([units[i].shape for i in members], reduction, [caps[i] for i in members])
        separate = sum(0.0 if r is None else spectra[i].squared_errors()[r] for i, r in zip(members, r_each))
        if r_group is not None and together.squared_errors()[r_group] <= (1.0 + tolerance) * separate:
            merged.update(members)
            for seq, value in zip(out, (group, cap, together)):
                seq.append(value)
    for i, unit in enumerate(units):
        if i not in merged:
            for seq, value in zip(out, (unit, caps[i], spectra[i])):
                seq.append(value)
    return out


def _blind_message(names, reduction, allocation, method) -> str:
    """What happens to the layers off the measured output's path (zero sensitivity), and how to change it."""
    shown = ", ".join(repr(n) for n in names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    if reduction is not None and allocation == "global":
        what = ("Their error cannot be weighed against the other layers', so global allocation leaves them dense "
                "(it would otherwise count destroying them as free)")
    elif reduction is not None:
        what = ("Uniform allocation compresses them at the same fraction as the other layers; their weight_error and "
                "output_error in the report are measured, but report.objective leaves them out")
    else:
        what = "They are compressed like the other layers"
    if method == "fisher":
        what += ", and fisher weighs their rows equally (a plain SVD of the weight)"
    return (
        f"the model's output does not depend on {len(names)} selected layer(s) on the calibration data ({shown}): "
        f"the gradient of their output is zero, as a BERT pooler's is for last_hidden_state. {what}. To compress "
        "them by their effect, pass a `loss` whose value depends on their output (as on a BERT model's "
        "pooler_output); to silence this, exclude them (and compress them in a separate call if you wish)."
    )


def _errors(W, up, down, gram):
    wide = torch.complex128 if W.is_complex() else torch.float64
    Wd = W.detach().to(wide)
    E = Wd - up.to(wide) @ down.to(wide)
    weight_error = float(torch.linalg.norm(E) / max(float(torch.linalg.norm(Wd)), np.finfo(float).tiny))
    if gram is None:
        return weight_error, None
    lost = float(((E @ gram) * E).sum())
    whole = float(((Wd @ gram) * Wd).sum())
    return weight_error, float(np.sqrt(max(lost, 0.0) / max(whole, np.finfo(float).tiny)))


# Tensors made under the caller's torch.inference_mode could never be trained, nor
# take part in the calibration's gradient pass.
@torch.inference_mode(False)
def compress(
    model: nn.Module,
    *,
    reduction: float | None = None,
    rank: int | None = None,
    energy: float | None = None,
    method: str = "rsi",
    solver: str | None = None,
    allocation: str = "global",
    calibration=None,
    loss=None,
    include=("*",),
    exclude=(),
    power_iters="auto",
    oversample: int = 10,
    share_inputs: float | None = None,
    inplace: bool = False,
    progress=None,
    rng=None,
):
    """Replace linear layers of ``model`` by :class:`LowRankLinear` factors.

    The layers are ``torch.nn.Linear`` and transformers' ``Conv1D`` (the
    projections of GPT-2 and its family, weight stored transposed); both are
    factored as their out x in weight W and replaced alike.

    Parameters
    ----------
    model : torch.nn.Module
    reduction : float in (0, 1), optional
        Fraction of the selected layers' weight parameters to remove: they
        keep at most (1 - reduction) of them. Where even rank 1 everywhere
        (dense for the layers too small to factor) keeps more, a
        ``ValueError`` names the largest reduction possible.
    rank : int, optional
        One rank for every selected layer.
    energy : float in (0, 1), optional
        Per layer, the smallest rank keeping this fraction of the squared norm
        in the method's norm: the weight's Frobenius norm for ``rsi``,
        ``rsvd`` and ``exact`` (with calibration too), the whitened output
        norm ||W X||_F for ``whitened``, FWSVD's row-weighted ||D W||_F for
        ``fisher``. Exactly one of ``reduction``, ``rank`` and ``energy`` is
        given.
    method : {"rsi", "rsvd", "exact", "whitened", "fisher"}, default "rsi"
        How each weight is truncated (see :mod:`randla.nn.factorize`):
        randomized subspace iteration, randomized SVD without power
        iterations, LAPACK's SVD, activation-whitened (SVD-LLM) or
        Fisher-weighted (FWSVD). The last two need ``calibration``.
    solver : {"rsi", "rsvd", "exact"}, optional
        The SVD inside ``whitened`` and ``fisher`` (default ``"rsi"``); the
        other methods are themselves the solver and take none.
    allocation : {"global", "uniform"}, default "global"
        With ``reduction``: ``"uniform"`` removes the same fraction from
        every layer; ``"global"`` chooses per-layer ranks that approximately
        minimise a summed error within the total budget (a Lagrangian
        relaxation plus a greedy pass; no optimality is guaranteed). Without
        calibration that is the sum of the layers' squared relative weight
        errors. With calibration it is the sum of their squared output
        errors, each output unit weighted by the mean squared gradient of the
        model's output (or of ``loss``) with respect to it (one extra
        backward pass per batch), which puts the layers on one scale: an
        error counts as much as it moves the model's output. A layer the
        output does not depend on (zero gradient, as a BERT pooler's for
        last_hidden_state) cannot be weighed so: global allocation leaves it
        dense, and a ``UserWarning`` names it. (Uniform allocation measures
        no gradients unless ``method="fisher"`` and compresses it as any
        other layer; with ``fisher`` it warns too, and ``report.objective``
        leaves such layers out.) Global allocation is never worse than
        uniform on that sum: when the uniform ranks have the smaller sum,
        they are kept (``report.objective``).
        Both stay within the budget: where layers held at rank 1 or dense
        take more than their share, uniform allocation lowers the fraction
        that every layer keeps until the total fits.
    calibration : iterable of batches, optional
        Model inputs (a mapping is passed as ``model(**batch)``, or whole to
        a forward taking one dict as sentence-transformers' does; a tuple as
        ``model(*batch)``). A single batch given as a mapping (a tokenizer's
        ``BatchEncoding``, a dict) or as one tensor is taken as one batch,
        as ``[batch]`` would be. Padding is skipped where a batch has an
        ``attention_mask``: by that key in a mapping, or at the position of
        the forward's argument of that name in a tuple.
    loss : callable(output, batch) -> scalar tensor, optional
        The loss whose squared gradients weigh rows for ``fisher``, and the
        output units in global allocation's summed error; default a
        random Gaussian projection of the output, whose expected squared
        gradient is the Gauss-Newton diagonal and needs no labels.
    include, exclude : str or sequence of str
        Shell-style patterns on module names (``"encoder.layer.*.attention.*"``).
    power_iters, oversample :
        As in :func:`randla.svd`, for the randomized methods.
    share_inputs : float >= 0, optional
        Let layers that read the same input (found on the calibration data,
        e.g. attention's query, key and value) share one down-projection: an
        SVD of the stacked weights, whose factor costs r n parameters once
        instead of per layer. A group is merged when its predicted error, at
        the parameters uniform allocation would give it, is at most
        ``1 + share_inputs`` times that of its layers factored separately.
        Needs ``calibration`` and ``reduction``.
    inplace : bool
        Modify ``model`` itself instead of a copy.
    progress : callable(name, index, count), optional
        Called before each layer is factored.
    rng : None, int or numpy Generator

    Returns
    -------
    model : torch.nn.Module
        The compressed model (a copy unless ``inplace``). Where ``model`` is
        itself a linear layer, the :class:`LowRankLinear` replacing it where
        it is factored (``inplace=True`` raises ``ValueError`` then: a module cannot replace
        itself).
    report : CompressionReport

    Notes
    -----
    A layer is factored only where that saves parameters, r (m + n) < m n.
    A module used at several places in the model is one layer, reported
    under its first name and replaced everywhere by one
    :class:`LowRankLinear`. A linear layer with a parameter tied to another
    module (an output layer sharing the embedding matrix) is not selected:
    factoring it would break the tie. The factors are trainable where the
    weight was (``requires_grad``), and the bias is kept as it is.
    Each layer costs one factorisation of its weight, plus, with calibration,
    one forward pass over the data, and a backward pass for ``fisher`` and
    for global allocation.

    Examples
    --------
    >>> import torch
    >>> from randla.nn import compress
    >>> net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 8))
    >>> small, report = compress(net, reduction=0.5, rng=0)
    >>> round(report.reduction, 2) >= 0.5
    True
    """
    check_target(reduction, rank, energy)
    method = check_choice("method", method, METHODS)
    allocation = check_choice("allocation", allocation, ALLOCATIONS)
    if solver is not None and method in SOLVERS:
        raise ValueError(f"`solver` is for method='whitened' or 'fisher'; method={method!r} is itself the solver.")
    solver = method if method in SOLVERS else check_choice("solver", "rsi" if solver is None else solver, SOLVERS)
    power_iters = check_power_iters(power_iters)
    if solver == "rsvd" and power_iters not in ("auto", 0):
        raise ValueError(f"the 'rsvd' solver makes no power iterations; got power_iters={power_iters}. "
                         "Use 'rsi' for power iterations.")
    oversample = check_int("oversample", oversample, 0)
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module; got {type(model).__name__}.")
    if method in ("whitened", "fisher") and calibration is None:
        raise ValueError(f"method={method!r} needs `calibration` data (an iterable of model inputs).")
    if share_inputs is not None:
        if not (isinstance(share_inputs, numbers.Real) and not isinstance(share_inputs, bool) and share_inputs >= 0):
            raise ValueError(f"`share_inputs` must be None or a float >= 0; got {share_inputs!r}.")
        if calibration is None or reduction is None:
            raise ValueError("`share_inputs` needs `calibration` (to find layers reading one input) and `reduction`.")
    rng = check_rng(rng)
    start = time.perf_counter()
    if inplace and is_linear(model) and "" in _select(model, include, exclude):
        raise ValueError(
            f"`model` is itself a linear layer ({type(model).__name__}), selected for compression: a module cannot "
            "replace itself in place. Pass inplace=False and use the returned model, a LowRankLinear."
        )
    model = model if inplace else copy.deepcopy(model)
    selected = _select(model, include, exclude)
    layers = {name: layer for name, (layer, _) in selected.items()}
    complex_layers = [name for name, layer in layers.items() if linear_weight(layer).is_complex()]
    if complex_layers and (calibration is not None or method in ("whitened", "fisher")):
        raise TypeError(f"layers {complex_layers} have complex weights, which are factored by their values alone: "
                        "use method 'rsi', 'rsvd' or 'exact' without calibration, or exclude them.")
    # Gradients weigh each layer's output error by how much the model's output moves with it.
    gradients = method == "fisher" or (reduction is not None and allocation == "global")
    stats = collect(model, layers, calibration, gradients=gradients, loss=loss) if calibration is not None else {}
    blind = [name for name, s in stats.items() if s.output_sensitivity is not None and not s.output_sensitivity.any()]
    if blind:
        # stacklevel 3: past torch's inference_mode decorator, at the caller.
        warnings.warn(_blind_message(blind, reduction, allocation, method), UserWarning, stacklevel=3)

    def factor(unit, cap):
        return spectrum(
            unit.weight, cap, method, gram=unit.gram, row_importance=unit.row_importance,
            output_weights=unit.output_weights, solver=solver, power_iters=power_iters, oversample=oversample,
            rng=child_rng(rng),
        )

    units = [_Unit.of(layers, stats, (name,)) for name in layers]
    caps = [_cap(u.shape, rank, reduction, allocation) for u in units]
    dense = [u.names[0] for u, c in zip(units, caps) if rank is not None and not c]
    if dense:
        warnings.warn(
            f"rank={rank} leaves {len(dense)} of {len(units)} selected layers dense ({', '.join(dense[:5])}"
            f"{', ...' if len(dense) > 5 else ''}): a layer is factored only below its break-even rank "
            "r < m n / (m + n), where the factors hold fewer numbers than the weight.",
            UserWarning, stacklevel=3,
        )
    if reduction is not None and allocation == "global":
        # A zero weighted error at every rank would make such a layer look free to destroy: keep it dense.
        caps = [0 if u.names[0] in blind else c for u, c in zip(units, caps)]
    budget = None if reduction is None else int((1.0 - reduction) * sum(u.weight.numel() for u in units))
    if budget is not None and share_inputs is None:  # sharing could lower the least cost; else fail early
        check_budget([u.shape for u in units], caps, budget)
    spectra = []
    for index, (unit, cap) in enumerate(zip(units, caps)):
        if progress is not None:
            progress(unit.names[0], index, len(units))
        spectra.append(factor(unit, cap) if cap else None)
    if share_inputs is not None:
        units, caps, spectra = _share(units, caps, spectra, layers, stats, reduction, allocation, share_inputs, factor)

    shapes = [u.shape for u in units]
    errors = [s.relative_errors() if s is not None else np.zeros(1) for s in spectra]
    objective = None
    if stats and reduction is not None:
        # With calibration, errors are the model's sensitivity-weighted output errors, in one unit
        # across layers (a share of their sum at rank 0) rather than each layer's own scale.
        # Layers of unmeasured sensitivity (uniform allocation) are left out: their errors are on another scale.
        measured = [s is not None and not all(n in blind for n in u.names) for u, s in zip(units, spectra)]
        scale = sum(s.total for s, m in zip(spectra, measured) if m) or 1.0
        errors = [s.squared_errors() / scale if m else np.zeros(1 if s is None else s.cap + 1)
                  for s, m in zip(spectra, measured)]
    if rank is not None:
        ranks = [c if c else None for c in caps]
    elif energy is not None:
        # In the method's own norm, whatever ``errors`` weighs (the output, with calibration).
        own = [s.norm_relative_errors() if s is not None else np.zeros(1) for s in spectra]
        ranks = energy_ranks(own, energy, caps)
    else:
        ranks = uniform_ranks(shapes, reduction, caps, budget)
        if allocation == "global":
            best = global_ranks(shapes, errors, budget, caps)
            if summed_error(errors, best) <= summed_error(errors, ranks):
                ranks = best
        objective = summed_error(errors, ranks)

    reports = {}
    for unit, spec, r in zip(units, spectra, ranks):
        up, down = (None, None) if r is None else spec.factors(r)
        trainable = any(layers[name].weight.requires_grad for name in unit.names)
        shared = None if r is None else nn.Parameter(down, requires_grad=trainable)
        offset = 0
        for name in unit.names:
            linear = layers[name]
            weight = linear_weight(linear)
            m, n = weight.shape
            gram = stats[name].gram if name in stats else None
            first = name == unit.names[0]
            if r is None:
                layer_errors, after = (0.0, None if gram is None else 0.0), m * n
            else:
                part = up[offset : offset + m].clone()
                layer_errors = _errors(weight, part, down, gram)
                after = m * r + (n * r if first else 0)
                # The factors are as trainable as the weight was; the bias stays the same parameter.
                up_part = nn.Parameter(part, requires_grad=linear.weight.requires_grad)
                low_rank = LowRankLinear(up_part, shared, linear.bias).to(linear.weight.device)
                for place in selected[name][1]:
                    if place:
                        replace_module(model, place, low_rank)
                    else:  # the model is the layer (inplace=False; refused above otherwise)
                        model = low_rank
            curves = (None, None)
            if spec is not None:
                curves = (np.sqrt(spec.sizes / max(spec.total, 1e-300)), np.sqrt(spec.relative_errors()))
            seconds = spec.seconds if spec is not None and first else 0.0
            reports[name] = LayerReport(name, (m, n), r, m * n, after, *layer_errors, seconds, *curves, unit.names)
            offset += m
    report = CompressionReport(tuple(reports[name] for name in layers), method, allocation, time.perf_counter() - start, objective)
    return model, report
