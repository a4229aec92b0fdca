"""Statistics of the selected layers on calibration data: input Gram matrices and Fisher row importances."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .layers import is_conv1d, linear_weight

__all__ = ["LayerStatistics", "collect", "output_tensor", "call_model", "attention_mask", "is_encoder_decoder"]


@dataclass
class LayerStatistics:
    """What one linear layer (``nn.Linear`` or ``Conv1D``) saw: G = sum x x^T over its input rows and,
    from gradients, per output unit: ``row_importance`` (sum of squared gradients of its row of the
    out x in weight) and ``output_sensitivity`` (mean squared gradient of its output per token)."""

    gram: torch.Tensor
    rows: int = 0
    row_importance: torch.Tensor | None = None
    output_sensitivity: torch.Tensor | None = None
    input_key: int = -1


def call_model(model, batch):
    """model(**batch) for a mapping (a tokenizer's output), model(*batch) for a tuple, else model(batch).

    A mapping goes whole to a forward whose one required argument it does not
    name: sentence-transformers' ``forward(input, **kwargs)`` takes the dict.
    """
    if isinstance(batch, Mapping):
        return model(batch) if _takes_the_mapping(model, batch) else model(**batch)
    if isinstance(batch, (tuple, list)):
        return model(*batch)
    return model(batch)


def _forward_parameters(model):
    try:
        return inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # a forward without a signature to read
        return None


def _takes_the_mapping(model, batch) -> bool:
    parameters = _forward_parameters(model)
    if parameters is None:
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = [p.name for p in parameters.values() if p.kind in positional and p.default is p.empty]
    return len(required) == 1 and required[0] not in batch


def attention_mask(model, batch):
    """The batch's ``attention_mask``: by name in a mapping, by the forward's
    argument of that name in a tuple, or inside a tuple's one mapping."""
    if isinstance(batch, (tuple, list)):
        if len(batch) == 1 and isinstance(batch[0], Mapping):
            return attention_mask(model, batch[0])
        parameters = _forward_parameters(model)
        names = [] if parameters is None else list(parameters)
        if "attention_mask" in names[: len(batch)]:
            batch = {"attention_mask": batch[names.index("attention_mask")]}
    mask = batch.get("attention_mask") if isinstance(batch, Mapping) else None
    return mask if isinstance(mask, torch.Tensor) else None


def is_encoder_decoder(model) -> bool:
    """Whether ``model`` is a Hugging Face encoder-decoder (T5, BART), by its config."""
    return bool(getattr(getattr(model, "config", None), "is_encoder_decoder", False))


def _calibration_call(model, batch):
    """``call_model``, with the fix named where an encoder-decoder refuses a batch without decoder inputs."""
    try:
        return call_model(model, batch)
    except ValueError as exc:
        given = isinstance(batch, Mapping) and any(key.startswith("decoder_") or key == "labels" for key in batch)
        if given or not is_encoder_decoder(model):
            raise
        raise ValueError(
            f"the encoder-decoder model ({model.config.model_type}) refused a calibration batch without decoder "
            f"inputs ({exc}). Give each batch decoder_input_ids: randla.nn.text.with_decoder_inputs(model, batches) "
            "adds each sentence shifted by one token."
        ) from exc


def output_tensor(output) -> torch.Tensor:
    """The main tensor of a model's output: itself, its ``last_hidden_state``
    or ``sentence_embedding``, else its first floating-point tensor (a
    sentence-transformers dict starts with the integer ``input_ids``)."""
    if isinstance(output, torch.Tensor):
        return output
    for name in ("last_hidden_state", "sentence_embedding"):
        found = output.get(name) if isinstance(output, Mapping) else getattr(output, name, None)
        if isinstance(found, torch.Tensor):
            return found
    values = output.values() if isinstance(output, Mapping) else output if isinstance(output, (tuple, list)) else ()
    found = next((v for v in values if isinstance(v, torch.Tensor) and v.is_floating_point()), None)
    if found is None:
        raise TypeError(f"cannot find a floating-point output tensor in a model's {type(output).__name__} output.")
    return found


def _token_mask(mask, x: torch.Tensor):
    """Rows of x that are real tokens: ``mask`` where its shape matches x's leading axes."""
    if mask is not None and tuple(mask.shape) == tuple(x.shape[:-1]):
        return mask.reshape(-1).to(torch.bool)
    return None


def _random_projection_loss(output, mask, generator):
    """<g, y> with g ~ N(0, I) per output entry: its squared gradient estimates the Gauss-Newton diagonal E||dy/dW||^2."""
    y = output_tensor(output)
    g = torch.randn(y.shape, generator=generator, dtype=y.dtype, device="cpu").to(y.device)
    mask = _token_mask(mask, y)
    if mask is not None:
        g = g * mask.reshape(y.shape[:-1]).unsqueeze(-1).to(y.dtype)
    return (g * y).sum()


def _without_inference_tensors(batch):
    """``batch`` with clones of its inference tensors, which autograd cannot save; itself if it has none.

    Call outside inference mode, where a clone is a normal tensor.
    """
    if isinstance(batch, torch.Tensor):
        return batch.clone() if batch.is_inference() else batch
    if isinstance(batch, Mapping):
        values = {key: _without_inference_tensors(value) for key, value in batch.items()}
        return values if any(values[key] is not batch[key] for key in values) else batch
    if isinstance(batch, (tuple, list)):
        values = [_without_inference_tensors(value) for value in batch]
        changed = any(a is not b for a, b in zip(values, batch))
        return batch if not changed else tuple(values) if isinstance(batch, tuple) else values
    return batch


def collect(model, modules: dict, calibration, *, gradients: bool = False, loss=None, seed: int = 0) -> dict:
    """Run ``model`` over every batch of ``calibration`` and gather :class:`LayerStatistics` per module name.

    Gram matrices are accumulated in float64 over real tokens only (padding
    is skipped where the batch has an ``attention_mask``: see
    :func:`attention_mask`). With
    ``gradients``, each batch is also back-propagated through
    ``loss(output, batch)`` (default: a random projection of the output,
    which needs no labels), and two sums are kept per output unit: the
    squared weight gradients of its row (FWSVD's row importance) and the
    squared gradients of the unit's output (how much the model's output
    moves when the unit's output does).

    ``calibration`` is an iterable of batches; a single batch given as a
    mapping (a tokenizer's ``BatchEncoding``, a dict) or as one tensor is
    taken as one batch, as ``[batch]`` would be (iterating it would give its
    keys or its rows).

    Layers that receive the very same input tensor in the first batch get the
    same ``input_key``: they read one input (attention's query, key, value).

    The gradient pass turns gradients on, whatever the caller's grad mode
    (``torch.no_grad()`` or ``torch.inference_mode()`` around it). Weights
    made under ``torch.inference_mode()`` cannot take part in it (a copy made
    outside it can: :func:`randla.nn.compress` makes one). If every selected
    layer's gradient is zero, no sensitivity can be measured and a
    ``ValueError`` says so.
    """
    if gradients and any(m.weight.is_inference() for m in modules.values()):
        raise ValueError(
            "the selected layers' weights were made under torch.inference_mode(), so no gradient can reach "
            "them; build the model outside it, or let randla.nn.compress copy it (inplace=False)."
        )
    if isinstance(calibration, (Mapping, torch.Tensor)):
        calibration = [calibration]
    stats = {name: None for name in modules}
    current = {}
    first_inputs = []  # held through the first batch, so that no address is reused

    def real_rows(x):
        keep = _token_mask(current.get("mask"), x)
        x = x.reshape(-1, x.shape[-1])
        return x if keep is None else x[keep]

    def pre_hook_for(name):
        def hook(module, inputs):
            x = real_rows(inputs[0].detach()).double()
            if stats[name] is None:
                stats[name] = LayerStatistics(torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device))
                seen = next((i for i, t in enumerate(first_inputs) if t is inputs[0]), None)
                if seen is None:
                    first_inputs.append(inputs[0])
                stats[name].input_key = len(first_inputs) - 1 if seen is None else seen
            stats[name].gram += x.T @ x
            stats[name].rows += x.shape[0]

        return hook

    def output_hook_for(name):
        def hook(module, inputs, output):
            if output.requires_grad:
                output.register_hook(lambda g: _add(sensitivity, name, real_rows(g).double().square().sum(dim=0)))

        return hook

    handles = [module.register_forward_pre_hook(pre_hook_for(name)) for name, module in modules.items()]
    if gradients:
        handles += [module.register_forward_hook(output_hook_for(name)) for name, module in modules.items()]
    modes = {module: module.training for module in model.modules()}  # restored one by one: eval() sets all
    grad_flags = {p: p.requires_grad for p in model.parameters()}
    generator = torch.Generator().manual_seed(seed)
    importance, sensitivity = {}, {}
    try:
        model.eval()
        if gradients:
            for p in model.parameters():
                p.requires_grad_(False)
            for module in modules.values():
                module.weight.requires_grad_(True)
        batches = 0
        for batch in calibration:
            current["mask"] = attention_mask(model, batch)
            batches += 1
            if batches == 2:
                # Release the tensors but keep the count: a layer first reached
                # later must not get the key of one from the first batch.
                first_inputs[:] = [None] * len(first_inputs)
            if not gradients:
                with torch.no_grad():
                    _calibration_call(model, batch)
                continue
            # The caller's no_grad or inference_mode would leave no graph, and every gradient zero.
            with torch.inference_mode(False), torch.enable_grad():
                batch = _without_inference_tensors(batch)
                current["mask"] = attention_mask(model, batch)
                output = _calibration_call(model, batch)
                if loss is not None:
                    value = loss(output, batch)
                else:
                    value = _random_projection_loss(output, current["mask"], generator)
                weights = [m.weight for m in modules.values()]
                # A loss that no selected weight reaches (layers off the output's path) has no graph.
                grads = [None] * len(weights)
                if value.requires_grad:
                    grads = torch.autograd.grad(value, weights, allow_unused=True)
            for name, grad in zip(modules, grads):
                if grad is not None:
                    _add(importance, name, _row_sums_of_squares(modules[name], grad))
        if batches == 0:
            raise ValueError("`calibration` yielded no batches; pass an iterable of model inputs.")
    finally:
        for handle in handles:
            handle.remove()
        for p, flag in grad_flags.items():
            if p.requires_grad != flag:  # an inference tensor refuses even a setting it has
                p.requires_grad_(flag)
        for module, mode in modes.items():
            module.training = mode
    unused = [name for name, s in stats.items() if s is None]
    if unused:
        raise ValueError(
            f"the calibration data never reached {len(unused)} selected layer(s) (e.g. {unused[0]!r}); "
            "exclude them or pass inputs that run through them."
        )
    if gradients:
        for name, module in modules.items():
            zeros = torch.zeros(linear_weight(module).shape[0], dtype=torch.float64, device=module.weight.device)
            stats[name].row_importance = importance.get(name, zeros)
            stats[name].output_sensitivity = sensitivity.get(name, zeros) / max(stats[name].rows, 1)
        if not any(bool(s.row_importance.any() or s.output_sensitivity.any()) for s in stats.values()):
            # All-zero weights would make every rank allocation look free, silently.
            raise ValueError(
                f"the gradient of the {'loss' if loss is not None else 'model output'} is zero at every one of the "
                f"{len(stats)} selected layer(s) on the calibration data, so their sensitivities cannot be measured. "
                "Select layers that the output depends on (a BERT pooler is off the path of last_hidden_state), "
                "pass a `loss` that depends on them, and do not disable gradients inside the model's forward."
            )
    return stats


def _row_sums_of_squares(module, grad: torch.Tensor) -> torch.Tensor:
    """Per output unit, the sum of squared gradients of its weights; Conv1D stores a unit's weights as a column."""
    return grad.double().square().sum(dim=0 if is_conv1d(module) else 1)


def _add(totals: dict, name: str, value):
    totals[name] = totals[name] + value if name in totals else value
