"""Reading an .npz file safely: never unpickle, check sizes before inflating, name the file.

Checkpoints and MedMNIST datasets are both .npz files; both are read here, in two steps:

    headers = npz_headers(path, error, what)     # {name: (shape, dtype)}, nothing inflated
    arrays = read_npz(path, error, what, check=...)

npz_headers reads only the zip directory and the few bytes of each member's .npy
header, so a member that declares 3 GB (a "zip bomb" of zeros) or the wrong shape is
refused before a byte of it is inflated. A member that is not a .npy file, holds
Python objects, or declares another size than the zip says is refused by name.
"""
import os
import stat
import zipfile

import numpy as np

from .validate import fits_in_memory

_NPY_MAGIC = b"\x93NUMPY"


def npz_headers(path, error, what, hint=""):
    """{array name: (shape, dtype)} of the .npz at path, read from its headers alone.

    Raises error(message) naming the path for a missing, non-regular, damaged file, a
    member that is not .npy, an object array, or a declared size the zip contradicts.
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except OSError:
        raise error(f"{path}: no such {what} file") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{path}: is a folder, not a {what} file")
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: not a regular file (a pipe, socket or device); give a {what} file")
    headers, total = {}, 0
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if info.is_dir():
                    continue
                if not info.filename.endswith(".npy"):
                    raise error(f"{path}: the member '{info.filename}' is not a .npy array "
                                f"(a {what} holds only numpy arrays); the file was not written "
                                f"by numpy.savez{hint}")
                name = info.filename[:-4]
                with z.open(info) as f:
                    shape, dtype, offset = _npy_header(f, path, info.filename, error)
                if dtype.hasobject:
                    raise error(f"{path}: the member '{name}' holds Python objects ({dtype}); "
                                "minicnn reads plain numeric and text arrays only (never pickle)")
                declared = int(np.prod(shape, dtype=np.float64) * dtype.itemsize)
                if offset + declared != info.file_size:
                    raise error(f"{path}: the member '{name}' declares shape {shape} {dtype} "
                                f"({declared:,} bytes) but holds {info.file_size - offset:,}; "
                                f"the {what} is damaged{hint}")
                headers[name] = (shape, dtype)
                total += declared
    except zipfile.BadZipFile as err:
        raise error(f"{path}: the {what} is damaged or truncated and cannot be read "
                    f"(BadZipFile: {err}){hint}") from None
    except (EOFError, OSError, ValueError, KeyError) as err:
        raise error(f"{path}: the {what} is damaged or truncated and cannot be read "
                    f"({type(err).__name__}: {err}){hint}") from None
    except error:
        raise
    except Exception as err:  # zlib errors from a corrupted member header
        raise error(f"{path}: the {what} is damaged ({type(err).__name__}: {err}){hint}") from None
    try:
        fits_in_memory(f"{path}: its arrays", total, hint=f" (the {what} declares "
                       f"{', '.join(f'{k} {tuple(s)}' for k, (s, _) in list(headers.items())[:4])})")
    except Exception as err:
        raise error(str(err)) from None
    return headers


def _npy_header(f, path, member, error):
    """(shape, dtype, header bytes) of the .npy stream f, reading only its header."""
    magic = f.read(len(_NPY_MAGIC))
    if magic != _NPY_MAGIC:
        raise error(f"{path}: the member '{member}' is not a .npy array (no numpy header); "
                    "the file was not written by numpy.savez")
    version = tuple(f.read(2))
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
        raise error(f"{path}: the member '{member}' has an unknown .npy version {version}")
    return tuple(int(n) for n in shape), np.dtype(dtype), f.tell()


def read_npz(path, error, what, hint="", check=None):
    """{name: array} of the .npz at path, read with allow_pickle=False.

    check(headers), if given, is called with npz_headers(...) before anything is
    inflated (to refuse a wrong shape early). A missing, truncated or damaged file
    raises error(message): the message names the path and calls the file a `what`
    ("checkpoint", "dataset .npz"); hint, if given, is added at the end.
    """
    path = os.fspath(path)
    headers = npz_headers(path, error, what, hint)
    if check is not None:
        check(headers)
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as err:
        raise error(f"{path}: the {what} is damaged or truncated and cannot be read "
                    f"({type(err).__name__}: {err}){hint}") from None
    except MemoryError:
        raise error(f"{path}: the {what} does not fit in memory{hint}") from None
    except Exception as err:  # zlib and CRC errors from a corrupted member
        raise error(f"{path}: the {what} is damaged ({type(err).__name__}: {err}){hint}") from None
