"""Save and load compressed models as safetensors factors plus a JSON description; never pickle."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from .layers import LINEAR_KINDS, LowRankLinear, is_linear, linear_weight, module_places, replace_module

__all__ = ["save_compressed", "load_compressed", "write_atomically", "FACTORS", "DESCRIPTION"]

FACTORS = "factors.safetensors"
DESCRIPTION = "compression.json"
FORMAT = "randla.nn.compressed/1"
REST = "rest/"  # prefix of the state_dict entries saved beside the factors


def write_atomically(path: Path, data: bytes):
    """Readers of ``path`` see its old content or all of ``data``, never a part.

    A new file gets the permissions the process umask gives any new file (as
    :func:`randla.io.save_result`'s), not a fixed mode: under umask 077 the
    weights stay private. A file replaced keeps its permission bits.
    """
    from ..io import _create_temporary

    path = Path(path)
    temporary, handle = _create_temporary(path.parent, path.name)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def save_compressed(model: nn.Module, path, *, report=None, factors_only: bool = False) -> Path:
    """Write the low-rank layers of ``model``, and the rest of its state, to the directory ``path``.

    ``factors.safetensors`` holds each layer's ``up``, ``down`` and ``bias``
    (a shared down-projection once) and, unless ``factors_only``, every
    other entry of the model's ``state_dict`` (embeddings, norms, layers
    left dense), so that training after compression is kept;
    ``compression.json`` names the layers, their shapes and ranks, the
    SHA-256 of the factors file and, if given, the
    :class:`CompressionReport`. Both files are written atomically, the
    description last, so a reader never pairs it with other factors.
    ``factors_only=True`` writes the factors alone, for a model whose other
    weights are the original's: smaller, but what else changed is lost.

    Parameters
    ----------
    model : torch.nn.Module
        A model compressed by :func:`compress` (or holding
        :class:`LowRankLinear` layers), or a single such layer.
    path : str or path-like
        The directory, created if missing.
    report : CompressionReport, optional
        Stored in the description, for the record.
    factors_only : bool, default False

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    save = _safetensors().torch.save
    _check_model(model)
    layers = {name: m for name, m in model.named_modules() if isinstance(m, LowRankLinear)}
    if not layers:
        raise ValueError(
            "the model has no LowRankLinear layer to save. If it came from randla.nn.compress, every layer was "
            "left dense (its report's table says so): the rank or energy asked is at or above each layer's "
            "break-even rank, where the factors would hold as many parameters as the weight; ask for less. "
            "Otherwise, compress it first (randla.nn.compress)."
        )
    tensors, entries, downs = {}, {}, {}
    for name, layer in layers.items():
        down_key = downs.setdefault(id(layer.down), f"{name}.down")
        if down_key == f"{name}.down":
            tensors[down_key] = layer.down.detach().cpu().contiguous()
        tensors[f"{name}.up"] = layer.up.detach().cpu().contiguous()
        if layer.bias is not None:
            tensors[f"{name}.bias"] = layer.bias.detach().cpu().contiguous()
        entries[name] = {
            "shape": [layer.out_features, layer.in_features],
            "rank": layer.rank,
            "down": down_key,
            "bias": layer.bias is not None,
        }
    rest = [] if factors_only else _rest(model, layers)
    for key, value in rest:
        # A copy each: safetensors refuses tensors sharing memory (tied embeddings).
        tensors[REST + key] = value.detach().cpu().clone().contiguous()
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    data = save(tensors)
    write_atomically(path / FACTORS, data)
    description = {"format": FORMAT, "sha256": hashlib.sha256(data).hexdigest(), "layers": entries,
                   "rest": [key for key, _ in rest]}
    if report is not None:
        description["report"] = _report_dict(report)
    write_atomically(path / DESCRIPTION, json.dumps(description, indent=1).encode())
    return path


def _prefixes(model, modules) -> tuple:
    """The prefix ``name.`` of every place of ``modules`` in ``model`` (one module may be used at several);
    "" for ``model`` itself, whose every key is inside it."""
    places = module_places(model)
    return tuple(f"{place}." if place else "" for module in modules for place in places[id(module)])


def _rest(model, layers) -> list:
    """(key, tensor) of the state_dict entries outside the low-rank layers."""
    inside = _prefixes(model, layers.values())
    return [(key, value) for key, value in model.state_dict().items() if not key.startswith(inside)]


def _report_dict(report) -> dict:
    return {
        "method": report.method,
        "allocation": report.allocation,
        "seconds": report.seconds,
        "reduction": report.reduction,
        "layers": [
            {key: value.tolist() if hasattr(value, "tolist") else value for key, value in layer.__dict__.items()}
            for layer in report.layers
        ],
    }


def _check_model(model):
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module; got {type(model).__name__}.")


def _fail(path, why: str):
    raise ValueError(f"{path} is not a compressed model that fits this one: {why}")


def _safetensors():
    try:
        import safetensors.torch
    except ImportError as exc:
        raise ImportError("saving and loading compressed models needs safetensors: pip install 'randla[nn]'") from exc
    return safetensors


def _read(path: Path):
    safetensors = _safetensors()
    SafetensorError, load = safetensors.SafetensorError, safetensors.torch.load

    try:
        description = json.loads((path / DESCRIPTION).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no {DESCRIPTION} in {path}; save with randla.nn.save_compressed.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        _fail(path, f"{DESCRIPTION} is not valid JSON ({exc}).")
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        _fail(path, f"{DESCRIPTION} does not declare format {FORMAT!r}.")
    try:
        data = (path / FACTORS).read_bytes()
    except FileNotFoundError:
        _fail(path, f"{FACTORS} is missing beside {DESCRIPTION}.")
    if hashlib.sha256(data).hexdigest() != description.get("sha256"):
        _fail(path, f"{FACTORS} does not match the checksum in {DESCRIPTION} (corrupt or replaced).")
    try:
        return description, load(data)
    except SafetensorError as exc:
        _fail(path, f"{FACTORS} is not a safetensors file ({exc}).")


def _like(tensor, original) -> nn.Parameter:
    """``tensor`` as a parameter on the device, in the dtype and as trainable as ``original``."""
    return nn.Parameter(tensor.to(device=original.device, dtype=original.dtype), requires_grad=original.requires_grad)


def load_compressed(model: nn.Module, path, *, inplace: bool = False) -> nn.Module:
    """Rebuild a model saved by :func:`save_compressed` from its original, uncompressed ``model``.

    Each saved layer replaces the ``torch.nn.Linear`` or transformers
    ``Conv1D`` of that name (its shape is read out x in either way), and the
    rest of the saved state (unless saved ``factors_only``) overwrites the
    model's. ``model`` gives the architecture: with the whole state saved,
    one built from its config (``AutoModel.from_config``) serves as well.

    Every layer, shape, rank and tensor is checked before anything changes:
    a directory without ``compression.json`` raises ``FileNotFoundError``; a
    corrupt, incomplete or mismatched one raises ``ValueError``; either way
    ``model`` is left untouched. A module used at several places is replaced
    everywhere, as :func:`compress` does, and the factors are trainable
    where the weight was. Returns a copy unless ``inplace``; where ``model``
    is itself the saved linear layer, the new :class:`LowRankLinear`
    (``inplace=True`` raises ``ValueError`` then: a module cannot replace
    itself). Names saved
    from a Hugging Face base model (``AutoModel``, as ``randla compress``
    loads it) fit its model with a head (``AutoModelForCausalLM``) too,
    through ``base_model_prefix``, and the other way round.

    Every tensor takes the dtype and device of what it replaces in ``model``:
    factors that dense weight's, the rest of the state the model's own
    entry. A model trained in float32 after compressing a bfloat16 one
    comes back rounded to bfloat16; convert ``model`` first to keep the
    saved precision.

    Parameters
    ----------
    model : torch.nn.Module
        The original, uncompressed model (or one of its architecture).
    path : str or path-like
        A directory written by :func:`save_compressed`.
    inplace : bool, default False
        Replace the layers of ``model`` itself instead of a copy.

    Returns
    -------
    torch.nn.Module
        The compressed model.
    """
    _check_model(model)
    path = Path(path)
    description, tensors = _read(path)
    layers = description.get("layers")
    if not isinstance(layers, dict) or not layers:
        _fail(path, "it lists no layers.")
    modules = dict(model.named_modules())
    rename = _renaming(model, modules, layers)
    built = {}
    for name, entry in layers.items():
        if not isinstance(entry, dict):
            _fail(path, f"the entry of layer {name!r} is not a JSON object.")
        target = modules.get(rename(name))
        if not is_linear(target):
            _fail(path, f"the model has no linear layer ({LINEAR_KINDS}) named {name!r}.")
        shape = list(linear_weight(target).shape)
        if entry.get("shape") != shape:
            _fail(path, f"layer {name!r} is {shape[0]}x{shape[1]} in the model but {entry.get('shape')} in the file.")
        rank, down = entry.get("rank"), entry.get("down")
        if not (isinstance(rank, int) and rank >= 1 and isinstance(down, str)):
            _fail(path, f"layer {name!r} needs an int rank >= 1 and the name of its down tensor; got {rank!r}, {down!r}.")
        expected = {f"{name}.up": (shape[0], rank), down: (rank, shape[1])}
        if entry.get("bias"):
            expected[f"{name}.bias"] = (shape[0],)
        if (target.bias is not None) != bool(entry.get("bias")):
            _fail(path, f"layer {name!r} has {'a' if target.bias is not None else 'no'} bias in the model but not in the file.")
        for key, want in expected.items():
            tensor = tensors.get(key)
            numbers = tensor is not None and (tensor.is_floating_point() or tensor.is_complex())
            if not numbers or tuple(tensor.shape) != want:
                got = "missing" if tensor is None else f"{tuple(tensor.shape)} {tensor.dtype}"
                _fail(path, f"tensor {key!r} should be a float tensor of shape {want}; it is {got}.")
        built[name] = (down, entry.get("bias"))
    rest = _checked_rest(path, description, tensors, model, [rename(name) for name in built], rename)
    if inplace and any(rename(name) == "" for name in built):
        raise ValueError(
            f"`model` is itself the linear layer ({type(model).__name__}) saved in {path}: a module cannot replace "
            "itself in place. Pass inplace=False and use the returned model, a LowRankLinear."
        )
    model = model if inplace else copy.deepcopy(model)
    places = module_places(model)
    shared = {}
    for name, (down_key, has_bias) in built.items():
        target = model.get_submodule(rename(name))
        if down_key not in shared:
            shared[down_key] = _like(tensors[down_key], target.weight)
        bias = _like(tensors[f"{name}.bias"], target.bias) if has_bias else None
        layer = LowRankLinear(_like(tensors[f"{name}.up"], target.weight), shared[down_key], bias)
        for place in places[id(target)]:
            if place:
                replace_module(model, place, layer)
            else:  # the model is the layer (inplace=False; refused above otherwise)
                model = layer
    state = model.state_dict()
    with torch.no_grad():
        for key in rest:
            state[rename(key)].copy_(tensors[REST + key])
    return model


def _renaming(model, modules: dict, names):
    """Saved names -> the model's: as they are, or across a Hugging Face head (``base_model_prefix``),
    so that factors saved from ``AutoModel`` fit ``AutoModelForCausalLM`` and the other way round."""
    prefix = getattr(model, "base_model_prefix", None)
    options = [lambda name: name]
    if isinstance(prefix, str) and prefix:
        options += [lambda name: f"{prefix}.{name}", lambda name: name.removeprefix(f"{prefix}.")]
    return next((rename for rename in options if all(rename(name) in modules for name in names)), options[0])


def _checked_rest(path, description, tensors, model, layers, rename) -> list:
    """The saved state_dict keys outside the low-rank layers, each checked against ``model``'s."""
    rest = description.get("rest", [])
    if not isinstance(rest, list) or not all(isinstance(key, str) for key in rest):
        _fail(path, "its 'rest' is not a list of state_dict keys.")
    state = model.state_dict()
    inside = _prefixes(model, [model.get_submodule(name) for name in layers])
    for key in rest:
        tensor, mine = tensors.get(REST + key), state.get(rename(key))
        if mine is None or rename(key).startswith(inside):
            _fail(path, f"it holds {key!r}, which the model has no entry of (outside the factored layers).")
        if tensor is None or tuple(tensor.shape) != tuple(mine.shape):
            got = "missing" if tensor is None else f"of shape {tuple(tensor.shape)}"
            _fail(path, f"its {key!r} is {got}; the model's is of shape {tuple(mine.shape)}.")
    return rest
