"""Readers for the real file formats; each returns (images uint8 N×H×W[×C], labels int64)."""

from __future__ import annotations

import gzip
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np

from deepunlearn.errors import UserError

REFETCH = "delete it and fetch the dataset again"


def _read_bytes(path: Path, limit: int = -1) -> bytes:
    """The (decompressed) bytes of a file, or its first `limit` of them; a damaged gzip is one sentence."""
    try:
        if path.suffix != ".gz":
            with open(path, "rb") as f:
                return f.read(limit)
        with gzip.open(path, "rb") as f:  # reading to the end also checks the gzip CRC and length
            return f.read(limit)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise UserError(f"{path} is a damaged gzip file ({e}); {REFETCH}.") from None


def find_file(folder: Path, stem: str) -> Path | None:
    """The file `stem` or `stem.gz` in `folder`, or None."""
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _idx_shape(path: Path, head: bytes, ndim: int | None) -> tuple[int, ...]:
    """The item shape an IDX header announces, after checking its magic number and dimension count."""
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] != 0x08:
        raise UserError(f"{path} is not an unsigned-byte IDX file (magic number {head[:4].hex() or 'missing'}); "
                        f"{REFETCH}.")
    if ndim is not None and head[3] != ndim:
        raise UserError(f"{path} holds {head[3]}-dimensional data where {ndim} dimensions are expected; {REFETCH}.")
    if len(head) < 4 + 4 * head[3]:
        raise UserError(f"{path} is truncated inside its IDX header; {REFETCH}.")
    return struct.unpack(">" + "I" * head[3], head[4:4 + 4 * head[3]])


def read_idx(path: Path, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (MNIST format), gzipped or not, checking magic number, dimensions and length."""
    raw = _read_bytes(path)
    shape = _idx_shape(path, raw, ndim)
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * len(shape))
    expected = int(np.prod(shape))
    if data.size < expected:
        raise UserError(f"{path} is truncated ({data.size} of the {expected} data bytes its header announces); "
                        f"{REFETCH}.")
    if data.size > expected:
        raise UserError(f"{path} has {data.size - expected} bytes more than its header announces; {REFETCH}.")
    return data.reshape(shape)


def idx_length(path: Path) -> int:
    """Number of items in an IDX file, read from its header only."""
    return _idx_shape(path, _read_bytes(path, 64), None)[0]


def read_idx_pair(folder: Path, prefix: str, num_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Images and labels of one IDX split (`train` or `t10k`), checked against each other."""
    images_path = find_file(folder, f"{prefix}-images-idx3-ubyte")
    labels_path = find_file(folder, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1).astype(np.int64)
    if images.shape[1:] != (28, 28):
        raise UserError(f"{images_path} holds {images.shape[1]}×{images.shape[2]} images, not 28×28; {REFETCH}.")
    if len(images) != len(labels):
        raise UserError(f"{folder}: {prefix} has {len(images)} images but {len(labels)} labels; fetch it again.")
    if labels.size and labels.max() >= num_classes:
        raise UserError(f"{labels_path} holds label {labels.max()}, beyond the {num_classes} classes; {REFETCH}.")
    return images, labels


def read_cifar_pickle(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR python batch: images N×32×32×3 uint8 and labels, checked for keys, shapes and classes."""
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError, IndexError) as e:
        raise UserError(f"{path} is not a readable CIFAR batch ({type(e).__name__}: {e}); {REFETCH}.") from None
    keys = [b"data", label_key.encode()]
    if not isinstance(batch, dict) or any(k not in batch for k in keys):
        have = ", ".join(sorted(k.decode(errors="replace") for k in batch)) if isinstance(batch, dict) else "none"
        raise UserError(f"{path} lacks the CIFAR keys data and {label_key} (it has {have}); {REFETCH}.")
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[label_key.encode()])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UserError(f"{path} holds data of shape {data.shape} ({data.dtype}), not N×3072 uint8; {REFETCH}.")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer) \
            or (labels.size and (labels.min() < 0 or labels.max() >= num_classes)):
        raise UserError(f"{path} holds {labels.shape} labels for {len(data)} images, or labels outside 0..{num_classes - 1}; "
                        f"{REFETCH}.")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels.astype(np.int64)


def utkface_label(name: str) -> int:
    """Age group of a UTKFace file name `age_gender_race_date.jpg`: min(age // 20, 4)."""
    try:
        age = int(name.split("_", 1)[0])
    except ValueError as e:
        raise UserError(f"UTKFace file name {name!r} does not start with an age; remove the file.") from e
    if not 0 <= age <= 130:
        raise UserError(f"UTKFace file name {name!r} gives age {age}; rename or remove the file.")
    return min(age // 20, 4)


def utkface_files(folder: Path) -> list[Path]:
    """UTKFace JPEGs sorted by name (DESIGN §8: sorted before the seeded permutation)."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))


def read_images_resized(paths: list[Path], size: int) -> np.ndarray:
    """Load JPEGs as RGB and resize to size×size with PIL's bilinear filter (torchvision's Resize)."""
    from PIL import Image

    out = np.empty((len(paths), size, size, 3), dtype=np.uint8)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as im:
                out[i] = np.asarray(im.convert("RGB").resize((size, size), Image.BILINEAR))
        except (OSError, ValueError, SyntaxError) as e:  # PIL's UnidentifiedImageError and truncated-file errors
            raise UserError(f"{p} is not a decodable JPEG ({e}); delete it or fetch UTKFace again.") from None
    return out
