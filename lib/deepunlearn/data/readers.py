"""Readers for the real file formats; each returns (images uint8 N×H×W[×C], labels int64)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from deepunlearn.errors import UserError


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def find_file(folder: Path, stem: str) -> Path | None:
    """The file `stem` or `stem.gz` in `folder`, or None."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format), gzipped or not."""
    with _open(path) as f:
        head = f.read(4)
        if len(head) != 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
            raise UserError(f"{path} is not an unsigned-byte IDX file; delete it and fetch the dataset again.")
        ndim = head[3]
        shape = struct.unpack(">" + "I" * ndim, f.read(4 * ndim))
        data = np.frombuffer(f.read(), dtype=np.uint8)
    if data.size != int(np.prod(shape)):
        raise UserError(f"{path} is truncated ({data.size} of {int(np.prod(shape))} bytes); fetch the dataset again.")
    return data.reshape(shape)


def idx_length(path: Path) -> int:
    """Number of items in an IDX file, read from its header only."""
    with _open(path) as f:
        head = f.read(8)
    return struct.unpack(">I", head[4:8])[0]


def read_idx_pair(folder: Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one IDX split (`train` or `t10k`)."""
    images = read_idx(find_file(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(find_file(folder, f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    if len(images) != len(labels):
        raise UserError(f"{folder}: {prefix} has {len(images)} images but {len(labels)} labels; fetch it again.")
    return images, labels


def read_cifar_pickle(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch: images N×32×32×3 uint8 and labels."""
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels = np.asarray(batch[label_key.encode()], dtype=np.int64)
    except (pickle.UnpicklingError, KeyError, EOFError, ValueError) as e:
        raise UserError(f"{path} is not a readable CIFAR batch ({e}); delete it and fetch the dataset again.") from e
    return np.ascontiguousarray(data), labels


def utkface_label(name: str) -> int:
    """Age group of a UTKFace file name `age_gender_race_date.jpg`: min(age // 20, 4)."""
    try:
        age = int(name.split("_", 1)[0])
    except ValueError as e:
        raise UserError(f"UTKFace file name {name!r} does not start with an age; remove the file.") from e
    return min(age // 20, 4)


def utkface_files(folder: Path) -> list[Path]:
    """UTKFace JPEGs sorted by name (DESIGN §8: sorted before the seeded permutation)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))


def read_images_resized(paths: list[Path], size: int) -> np.ndarray:
    """Load JPEGs as RGB and resize to size×size with PIL's bilinear filter (torchvision's Resize)."""
    from PIL import Image

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            out[i] = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
    return out
