"""Prepared datasets and the device-resident batch loader.

A dataset is read once from its real files, resized to the model input size with PIL (exactly as
the per-sample torchvision path would) and cached in the store as one uint8 array. Training then
keeps every image on the device as uint8 and normalises / augments whole batches there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from deepunlearn.data import registry, transforms
from deepunlearn.data.splits import make_splits, split_checksum
from deepunlearn.errors import UserError
from deepunlearn.store import Store, file_sha256, read_json, write_json

Split = str | Sequence[str] | torch.Tensor


FINGERPRINTS = ".fingerprints.json"  # in the store: sha256 of source files by (path, size, mtime)


def _file_key(path: Path) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def source_fingerprint(files: list[Path], store: Store) -> tuple[str, dict[str, str]]:
    """sha256 over the source files' contents, and the cache entries it used or made.

    A file's hash is reused while its path, size and modification time are unchanged, so a rerun
    does not rehash 180 MB; an edited or replaced file is hashed again and gives a new dataset key.
    """
    try:
        cache = read_json(store.root / FINGERPRINTS)
    except (OSError, ValueError):
        cache = {}
    entries = {}
    for f in sorted(files):
        key = _file_key(f)
        entries[key] = cache.get(key) or file_sha256(f)
    digest = hashlib.sha256("".join(f"{Path(k.split('|')[0]).name}:{v}\n" for k, v in sorted(entries.items()))
                            .encode()).hexdigest()
    return digest, entries


def _remember(store: Store, entries: dict[str, str]) -> None:
    """Add fingerprint cache entries (only once the dataset was read fine, so a failed run changes nothing)."""
    path = store.root / FINGERPRINTS
    try:
        cache = read_json(path)
    except (OSError, ValueError):
        cache = {}
    if not entries.items() <= cache.items():
        write_json(path, {**cache, **entries})


def prepare_dataset(name: str, store: Store, data_root: str | Path | None = None,
                    download: bool = False) -> Path:
    """Store folder holding `images.npy` (N×c×S×S uint8), `labels.npy` and `meta.json` for `name`."""
    info = registry.get_dataset_info(name)
    folder = registry.require(name, data_root, download)
    digest, entries = source_fingerprint(info.sources(folder), store) if info.sources else ("bundled", {})
    params = {"dataset": name, "source": digest, "img_size": info.img_size, "version": 2}

    def build(out: Path) -> None:
        images, labels, n_train = info.read(folder)
        images = transforms.resize_stack(images, info.img_size)
        np.save(out / "images.npy", transforms.to_nchw(images).numpy())
        np.save(out / "labels.npy", labels)
        write_json(out / "meta.json", {"n_train": int(n_train), "n_test": int(len(labels) - n_train),
                                       "source": str(folder)})

    path = store.get_or_compute("dataset", params, build, label=name)
    _remember(store, entries)
    return path


def load_splits(name: str, store: Store, n_train: int, n_test: int, subset: int | None = None) -> dict:
    """Spec A.3 split indices from the store (built and checksummed on first use)."""
    params = {"dataset": name, "n_train": n_train, "n_test": n_test, "subset": subset, "seed": 123}

    def build(out: Path) -> None:
        splits = make_splits(n_train, n_test, subset)
        for k, v in splits.items():
            np.save(out / f"{k}.npy", v)
        write_json(out / "checksum.json", {"sha256": split_checksum(splits)})

    path = store.get_or_compute("split", params, build, label=name)
    splits = {k: np.load(path / f"{k}.npy") for k in ("retain", "forget", "val", "test")}
    if split_checksum(splits) != read_json(path / "checksum.json")["sha256"]:
        raise UserError(f"Split files in {path} fail their checksum; delete that folder to rebuild them.")
    return splits


@dataclass
class DeviceData:
    """All images of a dataset as one uint8 tensor on the device, plus named index splits."""

    info: registry.DatasetInfo
    images: torch.Tensor  # uint8 N×c×S×S, c = 1 for grey datasets
    labels: torch.Tensor  # int64 N
    splits: dict[str, torch.Tensor]  # name -> int64 indices on the device
    checksum: str = ""

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def indices(self, split: Split) -> torch.Tensor:
        """Indices of a split name, a list of names (concatenated) or an index tensor."""
        if isinstance(split, torch.Tensor):
            return split.to(self.device)
        names = [split] if isinstance(split, str) else list(split)
        for n in names:
            if n not in self.splits:
                raise UserError(f"Unknown split {n!r}; the data has {', '.join(self.splits)}.")
        return torch.cat([self.splits[n] for n in names])

    def size(self, split: Split) -> int:
        """Number of samples in a split."""
        return int(self.indices(split).numel())

    def with_splits(self, **splits: torch.Tensor | np.ndarray) -> DeviceData:
        """A view with other named splits over the same image tensor (no copy)."""
        new = {k: torch.as_tensor(v, dtype=torch.int64).to(self.device) for k, v in splits.items()}
        return replace(self, splits={**self.splits, **new})

    def inputs(self, idx: torch.Tensor, augment: bool = False, generator: torch.Generator | None = None
               ) -> torch.Tensor:
        """Normalised float inputs N×3×S×S for indices `idx`; train-state augmentation if asked."""
        x = self.images[idx]
        if augment and self.info.augment != "none":
            x = transforms.augment(x, self.info.augment, generator)
        return transforms.normalize(x, self._mean(), self._std())

    def _mean(self) -> torch.Tensor:
        return torch.tensor(self.info.mean, device=self.device)

    def _std(self) -> torch.Tensor:
        return torch.tensor(self.info.std, device=self.device)

    def batches(self, split: Split, batch_size: int, *, shuffle: bool = False, augment: bool = False,
                generator: torch.Generator | None = None, drop_last: bool = False, with_index: bool = False
                ) -> Iterator[tuple[torch.Tensor, ...]]:
        """Yield (x, y) or (x, y, idx) batches; shuffling and augmentation draw from `generator`."""
        idx = self.indices(split)
        if shuffle:
            idx = idx[torch.randperm(idx.numel(), device=self.device, generator=generator)]
        n = idx.numel()
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            b = idx[start:start + batch_size]
            x = self.inputs(b, augment, generator)
            yield (x, self.labels[b], b) if with_index else (x, self.labels[b])

    def num_batches(self, split: Split, batch_size: int) -> int:
        """Batches per pass over `split` (drop_last=False)."""
        return -(-self.size(split) // batch_size)


def make_generator(device: torch.device | str, seed: int) -> torch.Generator:
    """A seeded generator on `device` for shuffles and augmentation."""
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(seed)
    return g


def load_device_data(name: str, device: str | torch.device = "cpu", *, store: Store | str = "outputs/store",
                     data_root: str | Path | None = None, subset: int | None = None,
                     download: bool = False) -> DeviceData:
    """Read (or reuse) the prepared dataset and its spec A.3 splits and put them on `device`."""
    store = Store(store) if not isinstance(store, Store) else store
    info = registry.get_dataset_info(name)
    path = prepare_dataset(name, store, data_root, download)
    meta = read_json(path / "meta.json")
    splits = load_splits(name, store, meta["n_train"], meta["n_test"], subset)
    device = torch.device(device)
    images = torch.from_numpy(np.load(path / "images.npy")).to(device)
    labels = torch.from_numpy(np.load(path / "labels.npy")).to(device)
    return DeviceData(info=info, images=images, labels=labels,
                      splits={k: torch.from_numpy(v).to(device) for k, v in splits.items()},
                      checksum=split_checksum(splits))
