"""Content photos for training, one module per mechanism:

- ``folder``: a dataset of image files that skips unreadable ones;
- ``augment``: resize, crop and flip;
- ``cache``: photos decoded and resized once into a memory-mapped file;
- ``sampler``: a shuffled order that a resumed run continues exactly;
- ``datamodule``: the LightningDataModule that joins them.
"""

from fastnst.data.augment import Augment, train_transform, val_transform
from fastnst.data.cache import ResizedCache
from fastnst.data.datamodule import ContentDataModule, coco_help
from fastnst.data.folder import ImageFolder
from fastnst.data.sampler import ResumableSampler
from fastnst.errors import DataNotFoundError

__all__ = [
    "Augment",
    "ContentDataModule",
    "DataNotFoundError",
    "ImageFolder",
    "ResizedCache",
    "ResumableSampler",
    "coco_help",
    "train_transform",
    "val_transform",
]
