"""minicnn.data: reading chest X-rays and feeding them to a network.

    images.py      one file -> float32 (C, H, W) in [0, 1] (PNG, JPEG, 16-bit, DICOM)
    synthetic.py   the SYNTHETIC chest X-ray generator (the default data set)
    datasets.py    ImageFolderSplit, MedMNIST .npz, synthetic -> train/val/test in memory;
                   ImageFolder: torchvision's (vision.py), decoded on access
    transforms.py  Resize, CenterCrop, RandomAffine, RandomRotation, RandomHorizontalFlip,
                   Grayscale, ToTensor, Normalize: callable t(image), as torchvision's
    loader.py      DataLoader: reproducible mini-batches as Tensors
    sampling.py    class weights and samplers for class imbalance
    multilabel.py  several findings per image: (N, K) 0/1 labels
    chestxray14.py NIH ChestX-ray14 as published; cache.py its decoded-image cache
    vision.py      torchvision's ImageFolder, decoded on access
"""
from .datasets import (ArrayDataset, ImageFolder, ImageFolderSplit, MedMNIST, Splits,
                       open_splits, synthetic_splits)
from .images import read_image
from .loader import DataLoader
from .sampling import (OverSampler, UnderSampler, WeightedRandomSampler, balanced_sampler,
                       class_weights)
from . import transforms

__all__ = ["ArrayDataset", "ImageFolder", "ImageFolderSplit", "MedMNIST", "Splits",
           "open_splits", "synthetic_splits", "read_image", "DataLoader", "OverSampler", "UnderSampler",
           "WeightedRandomSampler", "balanced_sampler", "class_weights", "transforms"]
