"""Ingest from an image folder with one sub-folder per class, decoded in parallel by Dask.

``root/cat/001.png``, ``root/dog/7.jpg``, ...: the sorted sub-folder names are the
classes. Each Dask task decodes its own list of files with Pillow (only the paths
travel), converts them to one channel (``"L"``) or three (``"RGB"``) and resizes them.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import dask
import dask.array as da
import numpy as np

from bptdask.data.arrays import ingest
from bptdask.data.dataset import Dataset
from bptdask.data.location import PathOrStore
from bptdask.errors import ConfigurationError, ShapeError, SourceError

#: File name suffixes taken as images; other files are skipped.
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"})
#: Pillow modes decoded as one channel.
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
#: Files decoded by one Dask task.
DECODE_BLOCK = 256


def _pillow() -> ModuleType:
    try:
        return importlib.import_module("PIL.Image")
    except ImportError as exc:
        raise ConfigurationError(
            "ingest_folder decodes images with Pillow, which is not installed; "
            "install it with `pip install bptdask[images]`"
        ) from exc


def list_image_folder(root: str | os.PathLike) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """The image files under ``root/<class>/``, sorted by class then file name.

    Hidden entries and files without an image suffix are skipped.

    Returns
    -------
    files : list of Path, length N
    labels : int64 array, shape (N,), the index of each file's class
    classes : tuple of str, the sorted sub-folder names

    Raises
    ------
    SourceError
        When ``root`` is not a folder, has no class sub-folders, or holds no images.
    """
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"image folder {str(root)!r} does not exist or is not a folder; check the path")
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if not classes:
        raise SourceError(
            f"image folder {str(root)!r} has no sub-folders; put each class's images in its own sub-folder, "
            "e.g. root/cat/001.png and root/dog/001.png"
        )
    files, labels = [], []
    for index, name in enumerate(classes):
        found = sorted(
            p
            for p in (root / name).iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
        )
        files += found
        labels += [index] * len(found)
    if not files:
        raise SourceError(
            f"the class folders {list(classes)} of {str(root)!r} hold no images "
            f"(looked for {sorted(IMAGE_SUFFIXES)}); add images or check the path"
        )
    return files, np.array(labels, dtype=np.int64), classes


def decode_images(files: Sequence[Path], *, size: tuple[int, int], channels: int, resize: bool) -> np.ndarray:
    """Decode ``files`` into one uint8 array.

    Parameters
    ----------
    files : sequence of Path, length n
    size : (H, W)
    channels : 1 or 3
    resize : bool
        Resize images of another size (bilinear); otherwise they are an error.

    Returns
    -------
    uint8 array, shape (n, channels, H, W)

    Raises
    ------
    SourceError
        When a file cannot be decoded.
    ShapeError
        When an image has another size and ``resize`` is false.
    """
    image_module = _pillow()
    height, width = size
    out = np.empty((len(files), channels, height, width), dtype=np.uint8)
    for i, path in enumerate(files):
        try:
            with image_module.open(path) as image:
                image = image.convert("L" if channels == 1 else "RGB")
        except (OSError, SyntaxError, ValueError) as exc:
            raise SourceError(f"cannot decode image {str(path)!r} ({exc}); remove or replace the file") from exc
        if image.size != (width, height):
            if not resize:
                raise ShapeError(
                    f"image {str(path)!r} is {image.size[1]}×{image.size[0]} (H×W) but the first image is "
                    f"{height}×{width}; pass size=(H, W) to resize every image"
                )
            image = image.resize((width, height), image_module.Resampling.BILINEAR)
        pixels = np.asarray(image)
        out[i] = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return out


def _probe(path: Path) -> tuple[tuple[int, int], int]:
    image_module = _pillow()
    try:
        with image_module.open(path) as image:
            return (image.size[1], image.size[0]), 1 if image.mode in GRAY_MODES else 3
    except (OSError, SyntaxError, ValueError) as exc:
        raise SourceError(f"cannot decode image {str(path)!r} ({exc}); remove or replace the file") from exc


def ingest_folder(
    root: str | os.PathLike,
    path_or_store: PathOrStore,
    *,
    size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    shuffle: bool = True,
    seed: int = 0,
    progress: bool = True,
    **options: Any,
) -> Dataset:
    """Ingest an image folder with one sub-folder per class.

    Parameters
    ----------
    root : path
        ``root/<class name>/<image file>``; the sorted sub-folder names become
        ``classes``.
    path_or_store : str, path, URL or zarr.storage store
    size : int or (H, W), optional
        Resize every image to this size; by default all images must have the size of
        the first one.
    channels : {1, 3}, optional
        Convert to grayscale or RGB (alpha is dropped); by default 1 when the first
        image is grayscale, else 3.
    shuffle : bool
        Store the samples in an order drawn with ``seed`` (sorted by class otherwise,
        which chunk-wise training cannot use well).
    seed : int
        Seeds the order and the train/test split.
    progress : bool
        Show a progress bar.
    **options
        Other keyword options of :func:`bptdask.ingest` (``chunk_size``, ``test_size``,
        ``overwrite``, ...).

    Returns
    -------
    Dataset
        Images uint8 ``(N, channels, H, W)``.

    Raises
    ------
    SourceError
        When the folder has no classes or images, or a file cannot be decoded (then
        nothing is kept).
    ShapeError
        When images differ in size and ``size`` is not given.
    """
    files, labels, classes = list_image_folder(root)
    if channels not in (None, 1, 3):
        raise ConfigurationError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    first_size, first_channels = _probe(files[0])
    channels = channels or first_channels
    if size is not None:
        size = (size, size) if isinstance(size, int) else tuple(size)
        if len(size) != 2 or not all(isinstance(v, int) and v >= 1 for v in size):
            raise ConfigurationError(f"size must be a positive int or (H, W), got {size!r}")
    if shuffle:
        order = np.random.default_rng(seed).permutation(len(files))
        files, labels = [files[i] for i in order], labels[order]
    decode = dask.delayed(decode_images, pure=True)
    height, width = size or first_size
    blocks = []
    for start in range(0, len(files), DECODE_BLOCK):
        block = files[start : start + DECODE_BLOCK]
        pixels = decode(block, size=(height, width), channels=channels, resize=size is not None)
        blocks.append(da.from_delayed(pixels, shape=(len(block), channels, height, width), dtype=np.uint8))
    options.setdefault("source", f"folder:{Path(root).name}")
    return ingest(
        da.concatenate(blocks), labels, path_or_store, classes=classes, seed=seed, progress=progress, **options
    )
