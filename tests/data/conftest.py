"""Fixtures for the data room: small real images and helpers that write source files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from bptdask.datasets import mnist_sample


@pytest.fixture(scope="session")
def mnist():
    """The first 600 images of the shuffled MNIST sample: uint8 (600, 1, 28, 28), int64 (600,)."""
    images, labels = mnist_sample(random_state=0)
    return images[:600], labels[:600]


@pytest.fixture
def small():
    """Random uint8 images (300, 1, 8, 8) and labels 0..9, enough for several chunks."""
    rng = np.random.default_rng(7)
    return rng.integers(0, 256, size=(300, 1, 8, 8), dtype=np.uint8), rng.integers(0, 10, size=300)


def _write_idx(path: Path, values: np.ndarray, *, compress: bool = False) -> Path:
    """Write ``values`` (uint8) as an IDX file by the format's definition, independent of bptdask."""
    header = bytes([0, 0, 0x08, values.ndim]) + struct.pack(f">{values.ndim}I", *values.shape)
    data = header + values.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def _write_png_folder(root: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """Write each ``(1, H, W)`` or ``(3, H, W)`` image as ``root/<label>/<index>.png``."""
    image_module = pytest.importorskip("PIL.Image")
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
        image_module.fromarray(pixels).save(folder / f"{index:05d}.png")
    return root


@pytest.fixture
def write_idx():
    """``write_idx(path, values, compress=False)`` writes an IDX file by the format's definition."""
    return _write_idx


@pytest.fixture
def write_png_folder():
    """``write_png_folder(root, images, labels)`` writes ``root/<label>/<index>.png`` with Pillow."""
    return _write_png_folder
