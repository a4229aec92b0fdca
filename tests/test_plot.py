"""randla.plot: pictures of a compression report."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")

from randla.nn.compress import CompressionReport, LayerReport  # noqa: E402
from randla.plot import plot_compression  # noqa: E402


def report() -> CompressionReport:
    s = np.array([0.8, 0.5, 0.3, 0.1])
    errors = np.sqrt(np.concatenate([np.cumsum((s**2)[::-1])[::-1], [0.0]]))
    layer = LayerReport("fc", (8, 6), 2, 48, 28, float(errors[2]), None, 0.0, s, errors)
    return CompressionReport((layer,), "exact", "global", 0.0)


def test_writes_a_png(tmp_path):
    path = plot_compression(report(), tmp_path / "spectra.png")
    assert path == tmp_path / "spectra.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["spectra.png"]


def test_leaves_the_matplotlib_backend_alone(tmp_path):
    # It used to switch the caller's backend to Agg for good (global state):
    # in a notebook, plt.show() showed nothing afterwards.
    previous = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        plot_compression(report(), tmp_path / "spectra.png")
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(previous)


def test_file_permissions_follow_the_umask(tmp_path):
    # A temporary file from tempfile.mkstemp is private to the owner (0600);
    # the picture should get the permissions of any ordinary new file.
    old = os.umask(0o022)
    try:
        path = plot_compression(report(), tmp_path / "spectra.png")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_nothing_to_plot(tmp_path):
    dense = LayerReport("fc", (8, 6), None, 48, 48, 0.0, None, 0.0)
    with pytest.raises(ValueError, match="no factored layer"):
        plot_compression(CompressionReport((dense,), "exact", "global", 0.0), tmp_path / "x.png")


def test_a_missing_matplotlib_names_the_extra(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'randla\[plot\]'"):
        plot_compression(report(), tmp_path / "spectra.png")
    assert not list(tmp_path.iterdir())
