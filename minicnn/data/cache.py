"""A decoded-image cache: every file read once, at one size, into a memory-mapped uint8 array.

A data set of 112,120 1024x1024 PNGs does not fit in memory as float32 (at 224 px it
would take 22 GB). The cache decodes each file once, frames it (centre square) and
resizes it to `image_size`, and stores it as uint8 in

    CACHE/<key>/images.u8    (N, C, S, S) uint8, memory-mapped: pages come and go as
                             batches need them, so memory does not grow with N
    CACHE/<key>/done.u8      (N,) 1 where image i is decoded: an interrupted build
                             resumes where it stopped
    CACHE/<key>/meta.json    what the key was made from, written when complete

The key hashes the size, the channels and every file's path, byte size and
modification time: a changed, added or removed file makes a new cache, never a stale
one. CACHE is $MINICNN_CACHE, else ~/.cache/minicnn.
"""
import hashlib
import json
import os

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_write
from ..errors import UserError
from . import images as imagefiles
from .transforms import CenterSquare, Resize


def cache_root():
    return os.environ.get("MINICNN_CACHE") or os.path.join(os.path.expanduser("~"), ".cache",
                                                           "minicnn")


def cache_key(files, image_size, channels):
    """A hash of what the decoded array depends on (see the module docstring)."""
    digest = hashlib.sha256(f"v1 {int(image_size)} {int(channels)}\n".encode())
    for path in files:
        try:
            st = os.stat(path)
        except OSError as err:
            raise UserError(f"{path}: cannot be read ({err.strerror})") from None
        digest.update(f"{os.path.abspath(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def decode_one(path, image_size, channels):
    """One file -> (C, S, S) uint8: read, centre square, resize, round."""
    image = imagefiles.read_image(path, channels)
    framed = Resize(image_size)(CenterSquare()(image))
    return np.clip(np.rint(framed * 255.0), 0, 255).astype(np.uint8)


class DecodedImages:
    """The cache of `files` at image_size: `.array` (N, C, S, S) uint8, memory-mapped.

    build(progress) decodes whatever is not done yet and returns self; a file that
    cannot be read stops the build with a UserError naming it (the files decoded so
    far stay done, so a rerun after fixing it goes on from there).
    """

    def __init__(self, files, image_size, channels=1, root=None):
        self.files = [os.fspath(f) for f in files]
        self.image_size, self.channels = int(image_size), int(channels)
        self.key = cache_key(self.files, image_size, channels)
        self.folder = os.path.join(root or cache_root(), self.key)
        shape = (len(self.files), self.channels, self.image_size, self.image_size)
        try:
            os.makedirs(self.folder, exist_ok=True)
            self.array = self._open("images.u8", shape)
            self.done = self._open("done.u8", (len(self.files),))
        except OSError as err:
            raise UserError(f"{self.folder}: cannot make the image cache here "
                            f"({err.strerror or err}); set MINICNN_CACHE to a writable folder "
                            "with room for it") from None

    def _open(self, name, shape):
        path = os.path.join(self.folder, name)
        size = int(np.prod(shape))
        mode = "r+" if os.path.exists(path) and os.path.getsize(path) == size else "w+"
        if size == 0:
            return np.zeros(shape, np.uint8)
        return np.memmap(path, dtype=np.uint8, mode=mode, shape=shape)

    @property
    def complete(self):
        return bool(len(self.files) == 0 or self.done.all())

    def build(self, progress=False, log=print):
        todo = np.flatnonzero(self.done == 0)
        if todo.size == 0:
            return self
        if todo.size < len(self.files):
            log(f"image cache {self.folder}: resuming, {len(self.files) - todo.size} of "
                f"{len(self.files)} already decoded")
        iterator = todo
        if progress:
            iterator = tqdm(todo, desc=f"decoding to {self.image_size}px", unit="img",
                            leave=False)
        for n, i in enumerate(iterator):
            try:
                self.array[i] = decode_one(self.files[i], self.image_size, self.channels)
            except UserError:
                self._flush()
                raise
            except (MemoryError, ValueError, TypeError, IndexError, RuntimeError) as err:
                self._flush()
                raise UserError(f"{self.files[i]}: could not be read "
                                f"({type(err).__name__}: {err})") from None
            self.done[i] = 1
            if n % 1024 == 1023:
                self._flush()
        self._flush()
        meta = {"files": len(self.files), "image_size": self.image_size,
                "channels": self.channels, "key": self.key}
        atomic_write(os.path.join(self.folder, "meta.json"),
                     lambda f: f.write(json.dumps(meta).encode()))
        return self

    def _flush(self):
        for a in (self.array, self.done):
            if isinstance(a, np.memmap):
                a.flush()
