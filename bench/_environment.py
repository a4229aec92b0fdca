"""What the timings depend on: BLAS libraries, thread pools, settings, versions.

Two OpenBLAS copies (NumPy's and SciPy's wheels each ship one) spin-wait for
each other, and how long they spin is set by OPENBLAS_THREAD_TIMEOUT; the
same numbers measured under different settings are not comparable. So every
result records the loaded libraries, their thread counts and the environment
variables that steer them.
"""

from __future__ import annotations

import os
import platform
import sys
import time

# Environment variables that change how BLAS, LAPACK and OpenMP pools behave.
SETTING_PREFIXES = (
    "OPENBLAS_",
    "GOTO",
    "OMP_",
    "GOMP_",
    "KMP_",
    "MKL_",
    "BLIS_",
    "VECLIB_",
    "NUMEXPR_",
    "PYTORCH_",
    "TORCH_",
)

# The settings lesson 1 of PERFORMANCE.md names; listed even when unset so a
# reader sees they were left at their defaults.
KEY_SETTINGS = (
    "OPENBLAS_THREAD_TIMEOUT",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
)


def settings() -> dict[str, str | None]:
    found = {k: v for k, v in sorted(os.environ.items()) if k.startswith(SETTING_PREFIXES)}
    return {**{k: None for k in KEY_SETTINGS}, **found}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def describe() -> dict:
    """Everything a reader needs to judge or reproduce the timings.

    Call after every benchmarked library is imported, so that the thread pools
    they load are all listed.
    """
    import numpy
    import scipy
    import sklearn
    import threadpoolctl
    import torch

    import randla

    try:
        import fbpca  # noqa: F401

        fbpca_version = _dist_version("fbpca")
    except Exception as exc:  # fbpca is optional; its absence is reported, not fatal
        fbpca_version = f"not importable: {type(exc).__name__}: {exc}"
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "load_average_at_start": load_average(),
        "versions": {
            "randla": randla.__version__,
            "numpy": numpy.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
            "torch": torch.__version__,
            "fbpca": fbpca_version,
            "threadpoolctl": threadpoolctl.__version__,
        },
        "settings": settings(),
        "threadpools": [
            {k: info.get(k) for k in ("user_api", "internal_api", "prefix", "version", "num_threads",
                                      "threading_layer", "architecture", "filepath")}
            for info in threadpoolctl.threadpool_info()
        ],
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "torch_blas": "MKL" if torch.backends.mkl.is_available() else "other",
    }


def _dist_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


# -- other processes' CPU use -----------------------------------------------------


def _cpu_seconds():
    """(busy CPU seconds of the whole machine, CPU seconds of this process and its finished children), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    busy = sum(fields) - fields[3] - fields[4]
    t = os.times()
    # A case run in a child process (waited for) is ours, not another process's load.
    return busy / os.sysconf("SC_CLK_TCK"), t.user + t.system + t.children_user + t.children_system


class OtherLoad:
    """Average number of cores other processes kept busy since ``start``.

    The machine is shared: a neighbour's BLAS threads make ours wait, and
    spin-waiting pools slow down many times over when cores are
    oversubscribed. This is the number to read next to a surprising time.
    """

    def __init__(self):
        self.start()

    def start(self):
        self._t0, self._s0 = time.monotonic(), _cpu_seconds()

    def cores(self) -> float | None:
        now = _cpu_seconds()
        wall = time.monotonic() - self._t0
        if now is None or self._s0 is None or wall <= 0:
            return None
        busy, own = now[0] - self._s0[0], now[1] - self._s0[1]
        return max(busy - own, 0.0) / wall


def wait_until_quiet(*, threshold: float = 0.25, window: float = 0.5, max_wait: float = 15.0) -> dict:
    """Wait (at most ``max_wait`` s) for a window in which others use < ``threshold`` cores."""
    t0 = time.monotonic()
    seen = None
    while True:
        probe = OtherLoad()
        time.sleep(window)
        seen = probe.cores()
        waited = time.monotonic() - t0
        if seen is None or seen < threshold or waited >= max_wait:
            return {"waited_s": round(waited, 2), "other_cores_last_window": seen}


def markdown_lines(env: dict, elapsed_s: float) -> list[str]:
    """The "Environment" section of a results file."""
    return ["", "## Environment", "",
            "- " + ", ".join(f"{k} {v}" for k, v in env["versions"].items()),
            f"- CPU {env['cpu_model']}, {env['cpu_affinity']} cores available",
            "- BLAS pools: " + ", ".join(f"{p['internal_api']} {p['num_threads']} threads ({p['prefix']})"
                                         for p in env["threadpools"]),
            "- settings: " + ", ".join(f"{k}={v}" for k, v in env["settings"].items()),
            f"- elapsed {elapsed_s:.0f} s"]
