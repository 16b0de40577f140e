"""Atomic file writes: a crash or a full disk never leaves half a file under the real name.

The bytes go to a temporary file beside the target (".NAME.*.tmp"), are flushed to
disk (fsync), then renamed over the target (os.replace, atomic on POSIX), and the
folder is synced so the rename itself survives a power cut.
"""
import os
import tempfile


def atomic_write(path, write):
    """Call write(f) on a binary file that becomes `path` only once it is complete.

    Raises OSError (the target, if it existed, is unchanged); the temporary file is
    always removed on failure.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        _sync_folder(folder)
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def _sync_folder(folder):
    try:
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
