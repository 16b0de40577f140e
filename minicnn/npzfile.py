"""Reading an .npz file safely: never unpickle, and name the file in any error.

Checkpoints and MedMNIST datasets are both .npz files; both are read here.
"""
import os
import zipfile

import numpy as np


def read_npz(path, error, what, hint=""):
    """{name: array} of the .npz at path, read with allow_pickle=False.

    A missing, truncated or damaged file raises error(message): the message names
    the path and calls the file a `what` ("checkpoint", "dataset .npz"); hint, if
    given, is added at the end (what to do about it).
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise error(f"{path}: no such {what} file")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, KeyError) as err:
        raise error(f"{path}: the {what} is damaged or truncated and cannot be read "
                    f"({type(err).__name__}: {err}){hint}") from None
    except Exception as err:  # zlib and CRC errors from a corrupted member
        raise error(f"{path}: the {what} is damaged ({type(err).__name__}: {err}){hint}") from None
