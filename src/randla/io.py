"""Matrices from files, results to files; never by pickle.

:func:`load_matrix` reads one matrix from a NumPy ``.npy`` or ``.npz`` file,
a Matrix Market ``.mtx`` file (optionally ``.gz`` or ``.bz2`` compressed) or
a ``.safetensors`` file of model weights. :func:`save_result` writes arrays to
an ``.npz`` file atomically: readers see the old file or the complete new one,
never a partial write.

Pickled data can run arbitrary code when loaded, so every NumPy read here
checks the file's signature and passes ``allow_pickle=False``, and every
write refuses object arrays.

Examples
--------
>>> import os, tempfile, numpy as np
>>> from randla.io import load_matrix, save_result
>>> folder = tempfile.mkdtemp()
>>> np.save(os.path.join(folder, "A.npy"), np.eye(3))
>>> load_matrix(os.path.join(folder, "A.npy")).shape
(3, 3)
>>> save_result(os.path.join(folder, "out.npz"), S=np.ones(2), rank=2)
>>> sorted(np.load(os.path.join(folder, "out.npz")).files)
['S', 'rank']
"""

from __future__ import annotations

import bz2
import errno
import gzip
import math
import os
import secrets
import stat
import tokenize
import zipfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["load_matrix", "save_result", "SUPPORTED_SUFFIXES"]

SUPPORTED_SUFFIXES = (".npy", ".npz", ".mtx", ".mtx.gz", ".mtx.bz2", ".safetensors")

# safetensors dtypes that safetensors.numpy returns as NumPy arrays; the others
# (bfloat16, float8 variants) exist in NumPy only through extensions.
_NUMPY_SAFETENSORS_DTYPES = {
    "BOOL", "U8", "I8", "U16", "I16", "U32", "I32", "U64", "I64", "F16", "F32", "F64", "C64"
}

_NPY_SIGNATURE = b"\x93NUMPY"
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")  # a zip with members, an empty zip

# An error message lists at most this many names, so that a model file with
# hundreds of tensors still gives a readable line.
_MAX_LISTED = 20

# The largest .npy header read. numpy.load refuses headers over 10,000 bytes (a
# guard for ast.literal_eval); a valid one of a dtype with thousands of fields
# is larger, and no pickle is involved.
_MAX_HEADER_SIZE = 2**20


def load_matrix(path, key: str | None = None, *, mmap: bool = False):
    """Read one 2-D matrix from a file, chosen by the file's extension.

    Parameters
    ----------
    path : str or os.PathLike
        ``.npy``; ``.npz`` (a NumPy archive); ``.mtx``, ``.mtx.gz`` or
        ``.mtx.bz2`` (Matrix Market); or ``.safetensors``. The extension is
        matched case-insensitively.
    key : str, optional
        Which array of an ``.npz`` or tensor of a ``.safetensors`` file to
        read. Without it, an ``.npz`` must hold exactly one array (or be a
        sparse matrix written by ``scipy.sparse.save_npz``) and a
        ``.safetensors`` file exactly one 2-D tensor.
    mmap : bool, default False
        Map a ``.npy`` file's array read-only instead of reading it, so a
        matrix larger than memory can be read a block of rows at a time
        (other formats are read whole).

    Returns
    -------
    numpy.ndarray or scipy.sparse.csr_array
        Dense files give an ndarray in the file's dtype; sparse Matrix Market
        files, and ``.npz`` files of ``scipy.sparse.save_npz``, a CSR array. bfloat16 and float8 tensors are converted to
        float32 (through torch, which is needed for them).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    IsADirectoryError
        If ``path`` is a directory.
    ValueError
        For an unsupported extension, an array that is not 2-D, a missing or
        ambiguous ``key`` (or one given for a file without names), a file that holds pickled Python objects
        (which are never loaded), or a corrupt or truncated file (one whose header declares more data than
        it holds is refused before any memory is allocated for it).
    ImportError
        For ``.safetensors`` without the ``safetensors`` package, or a
        bfloat16/float8 tensor without torch.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from randla.io import load_matrix
    >>> path = os.path.join(tempfile.mkdtemp(), "pair.npz")
    >>> np.savez(path, A=np.ones((4, 2)), b=np.zeros(4))
    >>> load_matrix(path, key="A").shape
    (4, 2)
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    if path.is_dir():
        # Each reader would say it differently, some without the path ("No such device").
        raise IsADirectoryError(errno.EISDIR, "Is a directory, not a matrix file", str(path))
    suffix = _suffix(path)
    if key is not None and suffix not in (".npz", ".safetensors"):
        # A file of one matrix has no names: a key given for it is a mistake, not a choice.
        raise ValueError(f"{path}: a key ({key!r}) applies only to .npz and .safetensors files, which hold named arrays.")
    if suffix == ".npy":
        matrix = _load_npy(path, mmap)
    elif suffix == ".npz":
        key, matrix = _load_npz(path, key)
    elif suffix == ".safetensors":
        key, matrix = _load_safetensors(path, key)
    else:
        matrix = _load_mtx(path)
    if matrix.ndim != 2:
        name = f" {key!r}" if key is not None else ""
        raise ValueError(
            f"{path}: array{name} must be 2-D (a matrix); got {matrix.ndim} dimensions, "
            f"shape {tuple(matrix.shape)}. Reshape it before saving, e.g. x.reshape(len(x), -1)."
        )
    return matrix


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(SUPPORTED_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    raise ValueError(
        f"{path}: unsupported file type; randla reads {', '.join(SUPPORTED_SUFFIXES)}. "
        "Convert the matrix to one of these, e.g. numpy.save('A.npy', A)."
    )


def _check_signature(path: Path, signatures: tuple[bytes, ...], kind: str, hint: str):
    """Refuse a file that is not of its extension's format before NumPy reads it.

    NumPy falls back to unpickling files it does not recognise; checking the
    signature first turns that into a clear error.
    """
    with open(path, "rb") as stream:
        head = stream.read(max(len(s) for s in signatures))
    if not any(head.startswith(s) for s in signatures):
        raise ValueError(f"{path} is not {kind} file (randla never unpickles files); {hint}")


def _numpy_error(path: Path, exc: ValueError) -> ValueError:
    """A clear error for a ValueError of ``numpy.load`` on a file of the right format."""
    if "pickle" not in str(exc):
        return ValueError(f"{path}: cannot read it: {exc}")
    return ValueError(
        f"{path} holds an array of Python objects, stored by pickle, which randla never "
        "loads (unpickling can run arbitrary code). Save a numeric array instead, e.g. "
        "numpy.save(path, A.astype(float))."
    )


# What numpy.load raises for a corrupt file beside ValueError: a garbled header
# (SyntaxError, tokenize.TokenError), a cut file (EOFError), a damaged archive.
_CORRUPT = (SyntaxError, tokenize.TokenError, EOFError, zipfile.BadZipFile, zlib.error)


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    _check_signature(path, (_NPY_SIGNATURE,), "a NumPy .npy", "write one with numpy.save(path, A).")
    with open(path, "rb") as stream:
        _check_declared_size(path, stream, path.stat().st_size)
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False, max_header_size=_MAX_HEADER_SIZE)
    except ValueError as exc:
        raise _numpy_error(path, exc) from exc
    except _CORRUPT as exc:
        raise ValueError(f"{path}: cannot read it as a NumPy .npy file: {exc}") from exc


def _check_declared_size(path: Path, stream, size: int, what: str = "its array"):
    """Refuse an .npy header that cannot be read, or that declares more bytes than the file (``size`` in all) holds.

    Checked before numpy.load allocates the array: a corrupt or cut header
    could otherwise ask for terabytes (MemoryError) for a file of a few bytes.
    ``stream`` is at the start of the .npy data; ``what`` names the array.
    """
    try:
        version = np.lib.format.read_magic(stream)
        if version not in ((1, 0), (2, 0)):  # version 3 (UTF-8 field names) has no public reader; numpy.load checks
            return
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(stream, max_header_size=_MAX_HEADER_SIZE)
    except (ValueError, *_CORRUPT) as exc:
        if "max_header_size" in str(exc):  # numpy's own words span three lines and suggest allow_pickle
            raise ValueError(
                f"{path}: the .npy header of {what} is over the {_MAX_HEADER_SIZE:,} bytes randla reads (a dtype of "
                "very many fields?); randla reads numeric matrices: save one, e.g. numpy.save(path, A)."
            ) from exc
        raise ValueError(f"{path}: cannot read the .npy header of {what}, which is corrupt: {exc}") from exc
    if dtype.hasobject:  # pickled data, whose size says nothing; numpy.load refuses it
        return
    declared, held = math.prod(shape) * dtype.itemsize, size - stream.tell()
    if declared > held:
        raise ValueError(
            f"{path}: cannot read it: {what} declares shape {shape} of {dtype}, {math.prod(shape)} elements "
            f"({declared:,} bytes), but the file holds only {held:,} bytes of data: it is truncated or corrupt. "
            "Write it again, e.g. numpy.save(path, A)."
        )


def _listing(names) -> str:
    names = [repr(n) for n in names]
    more = len(names) - _MAX_LISTED
    shown = ", ".join(names[:_MAX_LISTED])
    return shown + (f", ... ({more} more)" if more > 0 else "")


def _load_npz(path: Path, key: str | None) -> tuple[str, np.ndarray]:
    _check_signature(path, _ZIP_SIGNATURES, "a NumPy .npz", "write one with numpy.savez(path, A=A).")
    # numpy.load leaves the file open when the zip directory is unreadable;
    # opening it here closes it on every path.
    with open(path, "rb") as stream:
        try:
            archive = np.load(stream, allow_pickle=False, max_header_size=_MAX_HEADER_SIZE)
        except (zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"{path}: cannot read it as a NumPy .npz archive: {exc}") from exc
        with archive:
            names = list(archive.files)
            if key is None and _SPARSE_NPZ <= set(names):
                _check_members(path, archive, names)
                return None, _sparse_npz(path)
            if key is None:
                if len(names) != 1:
                    raise ValueError(
                        f"{path} holds {len(names)} arrays: {_listing(names)}; choose one with "
                        "key=NAME (--key NAME on the command line)."
                    )
                key = names[0]
            elif key not in names:
                raise ValueError(f"{path} has no array {key!r}; its arrays are {_listing(names)}.")
            _check_members(path, archive, [key])
            try:
                return key, archive[key]
            except _CORRUPT as exc:
                raise ValueError(f"{path}: cannot read array {key!r}: {exc}") from exc
            except ValueError as exc:
                raise _numpy_error(path, exc) from exc


def _check_members(path: Path, archive, keys):
    """:func:`_check_declared_size` for arrays ``keys`` of an open .npz ``archive``, against each member's size."""
    members = set(archive.zip.namelist())
    for key in keys:
        member = key + ".npy" if key + ".npy" in members else key
        size = archive.zip.getinfo(member).file_size  # uncompressed, from the archive's directory
        try:
            with archive.zip.open(member) as stream:
                if stream.read(len(_NPY_SIGNATURE)) != _NPY_SIGNATURE:
                    continue  # not an .npy member; numpy.load says what it is
                stream.seek(0)
                _check_declared_size(path, stream, size, f"array {key!r}")
        except _CORRUPT as exc:
            raise ValueError(f"{path}: cannot read array {key!r}: {exc}") from exc


# The arrays every file of scipy.sparse.save_npz holds, beside its index arrays.
_SPARSE_NPZ = {"format", "shape", "data"}


def _sparse_npz(path: Path):
    """A matrix written by scipy.sparse.save_npz, as a CSR array; SciPy reads it
    with allow_pickle=False."""
    import scipy.sparse as sp

    try:
        matrix = sp.load_npz(path)
        _check_compressed(matrix)
        if hasattr(matrix, "check_format"):
            # load_npz checks only the index arrays' lengths; an index out of range would make later products
            # read outside the arrays (a crash, or garbage). O(nnz). COO checks its indices when built.
            matrix.check_format(full_check=True)
        return sp.csr_array(matrix)
    except (KeyError, ValueError, NotImplementedError, *_CORRUPT) as exc:
        raise ValueError(f"{path}: cannot read it as a sparse matrix of scipy.sparse.save_npz: {exc}") from exc


def _check_compressed(matrix):
    """Refuse a CSR, CSC or BSR ``matrix`` whose index arrays do not describe its shape.

    SciPy's ``check_format(full_check=True)`` checks indptr and the index range
    only where ``nnz`` (``indptr[-1]``) is above 0, and BSR not against its
    block shape: a file with indptr ``[0, 10**8, 0]`` passed, and the product
    that followed read outside the arrays (a crash).
    """
    if matrix.format not in ("csr", "csc", "bsr"):
        return
    rows, columns = matrix.shape
    if matrix.format == "bsr":
        block_rows, block_columns = matrix.blocksize
        if rows % block_rows or columns % block_columns:
            raise ValueError(f"its shape {matrix.shape} is not a multiple of its block shape {matrix.blocksize}")
        rows, columns = rows // block_rows, columns // block_columns
    major, minor = (columns, rows) if matrix.format == "csc" else (rows, columns)
    indptr, indices, stored = matrix.indptr, matrix.indices, len(matrix.data)
    if len(indptr) != major + 1 or indptr[0] != 0 or np.any(indptr[1:] < indptr[:-1]):
        raise ValueError(f"its indptr must be {major + 1} non-decreasing offsets from 0; it is not")
    if not indptr[-1] == len(indices) == stored:
        raise ValueError(f"its indptr ends at {indptr[-1]}, but it holds {len(indices)} indices and {stored} values")
    if len(indices) and indices.min() < 0:
        raise ValueError(f"its indices must be >= 0; found {indices.min()}")
    if len(indices) and indices.max() >= minor:
        raise ValueError(f"its indices must be < {minor}; found {indices.max()}")


def _load_mtx(path: Path):
    import scipy.io
    import scipy.sparse as sp

    # SciPy picks decompression by a case-sensitive suffix; open the stream here so A.MTX.GZ reads too.
    opener = {".mtx.gz": gzip.open, ".mtx.bz2": bz2.open}.get(_suffix(path))
    try:
        if opener is None:
            info = scipy.io.mminfo(path)
            _check_mtx_size(path, info)
        else:
            with opener(path, "rb") as stream:
                info = scipy.io.mminfo(stream)
        if info[3] == "array" and info[0] * info[1] == 0:
            # SciPy's reader divides by the row count: a 0-row array (as scipy.io.mmwrite writes one) killed the
            # interpreter (SIGFPE). The header says all there is.
            return np.zeros(info[:2], dtype={"integer": np.int64, "complex": np.complex128}.get(info[4], np.float64))
        if opener is None:
            matrix = _mmread(path)
        else:
            with opener(path, "rb") as stream:
                matrix = _mmread(stream)
    except (PermissionError, _DeclaredTooMuch):
        raise
    except (ValueError, EOFError, OSError) as exc:  # OSError: a corrupt .gz or .bz2 stream
        raise ValueError(f"{path}: cannot read it as a Matrix Market file: {exc}") from exc
    if matrix is None:
        # A compressed file's size says little of what it holds: the declared size is only known too big here.
        raise ValueError(
            f"{path} declares a {info[0]} x {info[1]} matrix ({info[2]:,} entries), more than this machine can "
            "allocate; if the file is not that big, its header is corrupt."
        )
    return sp.csr_array(matrix) if sp.issparse(matrix) else matrix


def _mmread(source):
    """``scipy.io.mmread(source)``, or None where the matrix it declares cannot be allocated.

    The MemoryError is let go here, with the reader its traceback holds,
    while a stream ``source`` is still open: the reader touches the stream
    when it is freed, and on a closed one aborts the interpreter.
    """
    import scipy.io

    try:
        return scipy.io.mmread(source)
    except MemoryError:
        return None


class _DeclaredTooMuch(ValueError):
    """A Matrix Market header that declares more entries than its file can hold."""


def _check_mtx_size(path: Path, info):
    """Refuse a header that declares more entries than the file can hold, before SciPy allocates for them.

    Every entry stored takes two bytes at least (a digit and a separator); a
    symmetric or skew array stores only one triangle.
    """
    rows, _, entries, layout, _, symmetry = info
    stored = entries if layout == "coordinate" or symmetry == "general" else (entries - rows) // 2
    if 2 * stored > path.stat().st_size:
        raise _DeclaredTooMuch(
            f"{path}: its header declares {info[0]} x {info[1]} with {entries:,} entries, more than its "
            f"{path.stat().st_size:,} bytes can hold: it is truncated or corrupt."
        )


def _load_safetensors(path: Path, key: str | None) -> tuple[str, np.ndarray]:
    try:
        from safetensors import SafetensorError, safe_open
    except ImportError:
        raise ImportError(
            f"reading {path} needs the safetensors package: pip install 'randla[io]'."
        ) from None

    # The header alone gives names, shapes and dtypes: choose and check the
    # tensor before reading any of its data.
    try:
        handle = safe_open(path, framework="np")
    except SafetensorError as exc:
        raise ValueError(f"{path} is not a valid safetensors file: {exc}") from exc
    with handle:
        names = list(handle.keys())
        shapes = {name: handle.get_slice(name).get_shape() for name in names}
        if key is None:
            matrices = [name for name in names if len(shapes[name]) == 2]
            if len(matrices) != 1:
                raise ValueError(
                    f"{path} holds {len(matrices)} 2-D tensors"
                    + (f": {_listing(matrices)}" if matrices else f" (tensors: {_listing(names)})")
                    + "; choose one with key=NAME (--key NAME on the command line)."
                )
            key = matrices[0]
        elif key not in names:
            raise ValueError(f"{path} has no tensor {key!r}; its tensors are {_listing(names)}.")
        if len(shapes[key]) != 2:
            raise ValueError(
                f"{path}: tensor {key!r} must be 2-D (a matrix); got shape {tuple(shapes[key])}."
            )
        dtype = handle.get_slice(key).get_dtype()
        if dtype in _NUMPY_SAFETENSORS_DTYPES:
            return key, handle.get_tensor(key)
    return key, _load_safetensors_torch(path, key, dtype)


def _load_safetensors_torch(path: Path, key: str, dtype: str) -> np.ndarray:
    """A tensor NumPy has no dtype for, read by torch and widened to float32."""
    try:
        import torch  # noqa: F401  (safetensors' torch backend needs it)
    except ImportError:
        raise ImportError(
            f"{path}: tensor {key!r} is {dtype}, which NumPy cannot hold; install torch "
            "(pip install 'randla[torch]') to read it as float32."
        ) from None
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        tensor = handle.get_tensor(key)
    try:
        return tensor.float().numpy()
    except (NotImplementedError, TypeError, RuntimeError) as exc:  # packed types (float4) torch cannot widen
        raise ValueError(
            f"{path}: tensor {key!r} is {dtype}, which randla cannot convert to float32 (torch: {exc}). "
            "Save it in a wider dtype (float16, bfloat16, float32)."
        ) from exc


def save_result(path, /, **arrays) -> None:
    """Write named arrays to an ``.npz`` file, atomically and without pickle.

    The arrays go to a temporary file in the same directory, which is flushed
    to disk and then renamed over ``path`` (:func:`os.replace`), so ``path``
    always holds either its previous content or the complete new archive.

    Parameters
    ----------
    path : str or os.PathLike
        Destination; must end in ``.npz``. An existing file is replaced, keeping its permission bits.
    **arrays
        Name -> array. NumPy arrays, torch tensors (any device; bfloat16 and
        float8 are widened to float32), CuPy arrays, and Python or NumPy
        scalars are accepted. Read them back with
        ``numpy.load(path, allow_pickle=False)``.

    Raises
    ------
    ValueError
        If ``path`` does not end in ``.npz`` or no array is given.
    TypeError
        For a sparse matrix or anything that would need pickling.
    FileNotFoundError
        If the directory of ``path`` does not exist.
    IsADirectoryError
        If ``path`` is a directory.

    Examples
    --------
    >>> import os, tempfile, numpy as np
    >>> from randla.io import save_result
    >>> path = os.path.join(tempfile.mkdtemp(), "factors.npz")
    >>> save_result(path, U=np.eye(3, 2), S=np.array([2.0, 1.0]), rank=2)
    >>> int(np.load(path)["rank"])
    2
    """
    path = Path(path)
    if not path.name.lower().endswith(".npz"):
        raise ValueError(f"results are saved as .npz files; got {str(path)!r}. Use a name ending in .npz.")
    if not arrays:
        raise ValueError("save_result needs at least one array, e.g. save_result(path, S=S).")
    if path.is_dir():
        # Refused before any work; os.replace would fail only at the end, naming the temporary file.
        raise IsADirectoryError(errno.EISDIR, "Is a directory; give a file name ending in .npz", str(path))
    converted = {name: _to_numpy(name, value) for name, value in arrays.items()}
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(errno.ENOENT, "no such directory", str(folder))
    temporary, handle = _create_temporary(folder, path.name)
    try:
        with os.fdopen(handle, "wb") as stream:
            with zipfile.ZipFile(stream, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
                for name, value in converted.items():
                    with archive.open(name + ".npy", mode="w", force_zip64=True) as member:
                        np.lib.format.write_array(member, value, allow_pickle=False)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _create_temporary(folder: Path, name: str) -> tuple[Path, int]:
    """A new hidden file beside the destination ``folder / name``, with its permissions.

    ``os.open`` with mode 0o666 lets the process umask decide the
    permissions, as for any ordinary new file (``tempfile`` would make it
    private to the owner). Where the destination exists, the file takes its
    permission bits instead: renamed over it, it must not make a file the
    user made private readable by others (``numpy.savez``, which writes into
    the existing file, keeps them too).
    """
    try:
        mode = stat.S_IMODE(os.stat(folder / name).st_mode)
    except OSError:  # a new file (or one that cannot be inspected): the umask decides
        mode = None
    while True:
        candidate = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            handle = os.open(candidate, flags, 0o666)
        except FileExistsError:
            continue
        if mode is not None:
            try:
                os.chmod(candidate, mode)
            except BaseException:
                os.close(handle)
                candidate.unlink(missing_ok=True)
                raise
        return candidate, handle


def _to_numpy(name: str, value) -> np.ndarray:
    import scipy.sparse as sp

    if sp.issparse(value):
        raise TypeError(
            f"array {name!r} is a sparse matrix; save_result writes dense arrays only. "
            "Save sparse matrices with scipy.sparse.save_npz."
        )
    library = type(value).__module__.split(".")[0]
    if library == "torch":
        # Lazy conj() and neg views (A.mH, ...) have no NumPy form until resolved.
        value = value.detach().cpu().resolve_conj().resolve_neg()
        try:
            value = value.numpy()
        except TypeError:  # bfloat16 and float8 have no NumPy dtype
            value = value.float().numpy()
    elif library == "cupy":
        value = value.get()
    array = np.asarray(value)
    if array.dtype.hasobject:
        raise TypeError(
            f"array {name!r} holds Python objects ({type(value).__name__}), which could only "
            "be saved by pickle; pass numeric arrays."
        )
    return array
