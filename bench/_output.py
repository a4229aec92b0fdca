"""Writing results: JSON with non-finite numbers as null, files replaced atomically."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np


def finite(x):
    return None if x is None or (isinstance(x, float) and not math.isfinite(x)) else x


def write_atomic(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        # mkstemp makes the file private (0600); results are ordinary files.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def jsonable(x):
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return finite(float(x))
    if isinstance(x, np.integer):
        return int(x)
    return x


def write_results(folder: Path, stem: str, results: dict, markdown: str):
    """``stem``.json (every raw number) and ``stem``.md (the report) in ``folder``, each atomically."""
    write_atomic(folder / f"{stem}.json", json.dumps(jsonable(results), indent=1) + "\n")
    write_atomic(folder / f"{stem}.md", markdown)
