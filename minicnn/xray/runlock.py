"""One run per output folder: an exclusive lock that the operating system holds for us.

    with RunLock(out, "--out"):
        ...  # train, evaluate or predict writing into out

The lock is `out/.minicnn.lock`, taken with fcntl.flock: the kernel releases it when
the process ends, however it ends (even SIGKILL), so a killed run never leaves a stale
lock behind. The file holds the holder's pid, so a second run into the same folder is
refused with words that say who holds it. Taking the lock also sweeps the temporary
files (".NAME.*.tmp") that an atomic write killed half-way left in the folder: while
we hold the lock no other minicnn run can be writing them.

The lock is re-entrant within one process (the command takes it, then fit() asks again).
"""
import fcntl
import os

from minicnn.errors import UserError

LOCK_NAME = ".minicnn.lock"
_held = {}  # real path of the folder -> [file object, depth]


def prepare_folder(path, flag):
    """Create the output folder `path` (given by `flag`) or say plainly why it cannot be."""
    path = os.fspath(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"{flag} {path}: is a file, not a folder; give a folder name")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise UserError(f"{flag} {path}: cannot create this folder ({err.strerror or err}); "
                        "give a folder you can write to") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{flag} {path}: this folder is not writable; give a folder you can "
                        "write to")
    return path


def sweep_temporary_files(folder):
    """Remove the ".NAME.*.tmp" files left by atomic writes that were killed; returns them."""
    removed = []
    for sub in (folder, os.path.join(folder, "figures")):
        try:
            names = os.listdir(sub)
        except OSError:
            continue
        for name in names:
            if name.startswith(".") and name.endswith(".tmp"):
                path = os.path.join(sub, name)
                try:
                    if os.path.isfile(path):
                        os.remove(path)
                        removed.append(path)
                except OSError:
                    pass
    return removed


class RunLock:
    """Context manager: hold the exclusive lock of `folder` (see the module docstring)."""

    def __init__(self, folder, flag="--out"):
        self.folder, self.flag = os.fspath(folder), flag
        self.key = None

    def __enter__(self):
        prepare_folder(self.folder, self.flag)
        self.key = os.path.realpath(self.folder)
        if self.key in _held:
            _held[self.key][1] += 1
            return self
        path = os.path.join(self.folder, LOCK_NAME)
        try:
            f = open(path, "a+")
        except OSError as err:
            raise UserError(f"{self.flag} {self.folder}: cannot create its lock file {path} "
                            f"({err.strerror or err})") from None
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            f.close()
            raise UserError(f"{self.flag} {self.folder}: another minicnn run (pid {holder}) is "
                            "using this folder; wait for it to finish, or choose another "
                            f"{self.flag} folder") from None
        except OSError as err:
            f.close()
            raise UserError(f"{self.flag} {self.folder}: cannot lock this folder "
                            f"({err.strerror or err})") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        _held[self.key] = [f, 1]
        self.swept = sweep_temporary_files(self.folder)
        return self

    def __exit__(self, *exc):
        entry = _held.get(self.key)
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                del _held[self.key]
                entry[0].close()  # closing releases the flock
        return False
