"""The README's Python examples run as written, in order, in one namespace.

Names the README leaves to the reader (a model, batches of activations, a
file of them, one head's queries and keys) are made real here, just before
the first block that uses them without defining them.
"""

from __future__ import annotations

import pathlib
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def defines(block: str, name: str) -> bool:
    """Whether the block binds ``name`` itself (assignment, loop or import)."""
    binding = rf"(^|\n)\s*([\w, ]*\b{name}\b[\w, ]*=[^=]|for\s+{name}\b|import .*\b{name}\b)"
    return re.search(binding, block) is not None


def uses(block: str, name: str) -> bool:
    return re.search(rf"\b{name}\b", block) is not None


def test_readme_python_examples_run(minilm, sentences, tmp_path, monkeypatch):
    model, tokenizer = minilm
    monkeypatch.chdir(tmp_path)  # the examples write files (out/)
    rng = np.random.default_rng(0)
    np.save("activations.npy", rng.standard_normal((3000, 80)))
    generator = torch.Generator().manual_seed(0)
    placeholders = {
        "model": model,
        "batches": [tokenizer(sentences["calibration"][:16], padding=True, return_tensors="pt")],
        "activation_batches": [rng.standard_normal((400, 80)) for _ in range(3)],
        "new_rows": rng.standard_normal((5, 80)),
        "Q": torch.randn(512, 32, generator=generator),
        "K": torch.randn(512, 32, generator=generator),
        "V": torch.randn(512, 16, generator=generator),
    }
    blocks = python_blocks()
    assert len(blocks) >= 10
    namespace: dict = {}
    for number, block in enumerate(blocks):
        for name, value in placeholders.items():
            if uses(block, name) and not defines(block, name):
                namespace[name] = value
        try:
            exec(compile(block, f"README.md python block {number}", "exec"), namespace)
        except Exception as exc:
            pytest.fail(f"README python block {number} raised {type(exc).__name__}: {exc}\n{block}")


def test_the_placeholder_rule():
    assert defines("K = f(X)\n", "K") and defines("Q, K = f()\n", "K") and defines("for K in ks:\n", "K")
    assert not defines("P = attention_operator(Q, K)\n", "K") and not defines("x == K\n", "K")
    assert uses("f(Q, K)", "K") and not uses("KV = 1", "K")
