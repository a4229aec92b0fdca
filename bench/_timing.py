"""Round-robin timing of several tasks in one process.

On a small, shared machine the speed drifts over seconds (other processes,
frequency changes), so timing one method in a block and the next one later
compares them under different conditions. Here every round runs each task
once, the starting task rotates from round to round, and each task's
statistic is the median over rounds.

Between two timed calls the process sleeps ``pause`` seconds: OpenBLAS workers
spin for about 2^28 cycles (0.1 s at 2.6 GHz, OPENBLAS_THREAD_TIMEOUT unset)
after each call, and without the pause a method would be charged for the
spinning threads of whichever library ran just before it. Spinning inside a
method (NumPy products next to SciPy LAPACK) is still charged to it.
"""

from __future__ import annotations

import gc
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Task:
    """A callable to time. ``repeats`` timed calls; ``warmup``: one untimed call first."""

    name: str
    run: Callable[[], object]
    repeats: int = 5
    warmup: bool = True


@dataclass
class Timings:
    times: dict[str, list[float]] = field(default_factory=dict)
    first: dict[str, object] = field(default_factory=dict)  # result of each task's first call
    failures: dict[str, str] = field(default_factory=dict)

    def median(self, name: str) -> float | None:
        t = self.times.get(name)
        return statistics.median(t) if t else None


def _describe_failure(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:160]}" if text else type(exc).__name__


def _call(task: Task, out: Timings, pause: float, log: Callable[[str], None]) -> float | None:
    """One call after a settle; its wall time, or None (reason recorded and logged) if it raised."""
    _settle(pause)
    try:
        t0 = time.perf_counter()
        result = task.run()
        elapsed = time.perf_counter() - t0
    except Exception as exc:  # a failing peer is a result to report, not a crash
        out.failures[task.name] = _describe_failure(exc)
        log(f"  {task.name}: fails ({out.failures[task.name]})")
        return None
    out.first.setdefault(task.name, result)
    return elapsed


def _settle(pause: float):
    gc.collect()
    time.sleep(pause)


def round_robin(tasks: list[Task], *, pause: float, log: Callable[[str], None],
                slow_after: float = 2.0, slow_repeats: int = 3, budget: float | None = None,
                min_rounds: int = 3) -> Timings:
    """Warm up each task once, then time them in rotating rounds.

    A task whose warm-up took longer than ``slow_after`` seconds is timed
    ``min(repeats, slow_repeats)`` times, and no new round starts once
    ``budget`` seconds have passed and ``min_rounds`` are done: on a busy
    machine everything is slower, and the suite must still finish in its
    time. The runs actually made are in the results.
    """
    deadline = None if budget is None else time.perf_counter() + budget
    out = Timings()
    repeats = {t.name: t.repeats for t in tasks}
    for task in tasks:
        if not task.warmup:
            continue
        elapsed = _call(task, out, pause, log)
        if elapsed is None:
            continue
        if elapsed > slow_after:
            repeats[task.name] = min(repeats[task.name], slow_repeats)
        log(f"  warm-up {task.name}: {elapsed:.3f} s")
    rounds = max(repeats.values(), default=0)
    for r in range(rounds):
        shift = r % len(tasks)
        for task in tasks[shift:] + tasks[:shift]:
            if task.name in out.failures or len(out.times.get(task.name, ())) >= repeats[task.name]:
                continue
            elapsed = _call(task, out, pause, log)
            if elapsed is None:
                continue
            out.times.setdefault(task.name, []).append(elapsed)
            if not task.warmup:
                log(f"  {task.name}: {elapsed:.3f} s")
        log(f"  round {r + 1}/{rounds} done")
        if deadline is not None and r + 1 >= min_rounds and r + 1 < rounds and time.perf_counter() > deadline:
            log(f"  time budget of {budget:.0f} s used up: stopping after {r + 1} rounds")
            break
    return out


def add_arguments(parser, results: Path, repeats: int = 5):
    """--repeats, --pause and --out, as the round-robin benchmarks take them."""
    parser.add_argument("--repeats", type=int, default=repeats, help=f"timed runs of each method (default {repeats})")
    parser.add_argument("--pause", type=float, default=0.15, help="idle seconds before each timed call")
    parser.add_argument("--out", type=Path, default=results, help="output folder")
