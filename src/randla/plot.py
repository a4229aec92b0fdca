"""Pictures of decompositions (needs matplotlib: pip install 'randla[plot]')."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .io import _create_temporary

__all__ = ["plot_compression"]


def plot_compression(report, path) -> Path:
    """Save a PNG of each compressed layer's spectrum and its error against rank.

    Left: the size of each layer's components in the method's error measure
    (singular values, for plain SVD), relative to the layer's norm. Right: relative error against the fraction of the break-even
    rank, with a dot at the rank chosen. ``report`` is the
    :class:`randla.nn.CompressionReport` of :func:`randla.nn.compress`.
    """
    # A Figure of its own, not pyplot: the caller's backend and figures are left alone.
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError("plotting needs matplotlib: pip install 'randla[plot]'") from exc

    path = Path(path)
    layers = [layer for layer in report.layers if layer.singular_values is not None and layer.singular_values[:1].sum() > 0]
    if not layers:
        raise ValueError("the report has no factored layer to plot.")
    figure = Figure(figsize=(11, 4.2), layout="constrained")
    spectra, errors = figure.subplots(1, 2)
    colours = matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(layers)))
    for layer, colour in zip(layers, colours):
        s = layer.singular_values
        spectra.semilogy(np.arange(1, s.size + 1), s, color=colour, lw=0.8)
        m, n = layer.shape
        break_even = (m * n - 1) // (m + n)
        errors.plot(np.arange(layer.errors.size) / break_even, layer.errors, color=colour, lw=0.8)
        if layer.rank is not None:
            errors.plot(layer.rank / break_even, layer.errors[layer.rank], "o", color=colour, ms=3)
    spectra.set(xlabel="index i", ylabel="component size / layer norm", title=f"spectra ({report.method}, {len(layers)} layers)")
    errors.set(
        xlabel="rank / break-even rank",
        ylabel="relative error",
        title=f"error against rank; dots: chosen ({report.allocation}, {100 * report.reduction:.0f}% removed)",
        ylim=(0, 1.02),
    )
    for axis in (spectra, errors):
        axis.grid(alpha=0.3)
    # Written atomically, with the permissions of any new file (see randla.io).
    temporary, handle = _create_temporary(path.parent, path.name)
    try:
        with os.fdopen(handle, "wb") as stream:
            figure.savefig(stream, format="png", dpi=110)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path
