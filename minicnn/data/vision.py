"""torchvision's ImageFolder over minicnn's image reader: root/CLASS/image, decoded on access.

    from minicnn.data import datasets, transforms
    train = datasets.ImageFolder("chest_xray/train", transform=transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor()]))
    image, label = train[0]          # label: the index of its class folder

As torchvision's: `classes` (the sorted folder names), `class_to_idx`, `samples`
[(path, class index)], `targets`, `transform` and `target_transform`, and a `loader`
that gives a Pillow image, RGB by default. Files are read when an item is asked for
(cache=True keeps each decoded image in memory after its first read). Every file goes
through minicnn's reader (minicnn.data.images.read_image), so DICOM works, a named
pipe is refused without being opened and a decompression bomb is refused by its
header; a bad file is a UserError naming it, never a silent skip.

minicnn's trainer uses minicnn.data.datasets.ImageFolderSplit instead: it decodes a
whole split once, at one size, for fast epochs.
"""
import os

import numpy as np
from PIL import Image

from ..errors import UserError
from . import images as imagefiles

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp",
                  ".dcm", ".dicom")


def pil_loader(path, mode="RGB"):
    """The image in `path` as a Pillow image in `mode` ("RGB" or "L"), read and checked by
    minicnn's reader (8 bits a channel, as torchvision's default loader gives)."""
    chw = imagefiles.read_image(path, 3 if mode == "RGB" else 1)
    pixels = np.clip(np.rint(chw * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels.transpose(1, 2, 0) if mode == "RGB" else pixels[0],
                           mode=mode)


def gray_loader(path):
    return pil_loader(path, "L")


class ImageFolder:
    """root/CLASS/xxx.png -> (transform(image), target_transform(class index))."""

    def __init__(self, root, transform=None, target_transform=None, loader=pil_loader,
                 is_valid_file=None, allow_empty=False, cache=False):
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise UserError(f"{self.root}: no such folder")
        self.classes = sorted(e.name for e in os.scandir(self.root)
                              if e.is_dir() and not e.name.startswith("."))
        if not self.classes:
            raise UserError(f"{self.root}: no class folders inside; expected root/CLASS/image, "
                            "e.g. train/NORMAL/x.jpeg and train/PNEUMONIA/y.jpeg")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        valid = is_valid_file or (lambda p: p.lower().endswith(IMG_EXTENSIONS))
        self.samples, empty = [], []
        for name in self.classes:
            folder = os.path.join(self.root, name)
            found = sorted(os.path.join(dirpath, f) for dirpath, _, files in
                           os.walk(folder, followlinks=True) for f in files
                           if not f.startswith(".") and valid(os.path.join(dirpath, f)))
            if not found:
                empty.append(name)
            self.samples += [(path, self.class_to_idx[name]) for path in found]
        if empty and not allow_empty:
            raise UserError(f"{self.root}: no image files in the class folder(s) "
                            f"{', '.join(empty)} (files ending {', '.join(IMG_EXTENSIONS)}); "
                            "every class needs images, or pass allow_empty=True")
        self.imgs = self.samples
        self.targets = [t for _, t in self.samples]
        self.transform, self.target_transform, self.loader = transform, target_transform, loader
        self._cache = {} if cache else None

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, target = self.samples[index]
        if self._cache is not None and index in self._cache:
            image = self._cache[index].copy()
        else:
            image = self.loader(path)
            if self._cache is not None:
                self._cache[index] = image.copy() if hasattr(image, "copy") else image
        if self.transform is not None:
            image = self.transform(image)
        if self.target_transform is not None:
            target = self.target_transform(target)
        return image, target

    def __repr__(self):
        return (f"ImageFolder({self.root!r}, {len(self)} images, classes "
                f"{', '.join(self.classes)})")
