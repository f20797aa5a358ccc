"""Spec A.3 splits: val 15% of the official train set, forget 10% of the rest, official test set."""

from __future__ import annotations

import hashlib

import numpy as np
from sklearn.model_selection import train_test_split

from deepunlearn.errors import UserError

SPLIT_SEED = 123  # spec A.3: random_state=123 everywhere, shared by all model seeds
SPLIT_NAMES = ("retain", "forget", "val", "test")


def make_splits(n_train: int, n_test: int, subset: int | None = None, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Index arrays into the concatenation [official train, official test], exactly as spec A.3.

    `subset` (demo) first keeps a seeded sample of `subset` official-train indices and a
    proportional sample of the test indices, then splits as usual.
    """
    dev = np.arange(n_train)
    test = np.arange(n_train, n_train + n_test)
    if subset is not None:
        if not 20 <= subset <= n_train:
            raise UserError(f"subset={subset} must lie between 20 and the {n_train} training samples; change it.")
        rng = np.random.default_rng(seed)
        dev = np.sort(rng.choice(dev, size=subset, replace=False))
        n_sub_test = max(1, round(subset * n_test / n_train))
        test = np.sort(rng.choice(test, size=min(n_sub_test, n_test), replace=False))
    # sklearn returns (kept part, test_size part) and takes ceil(test_size * n) for the latter.
    train, val = train_test_split(dev, test_size=0.15, random_state=seed)
    retain, forget = train_test_split(train, test_size=0.10, random_state=seed)
    return {"retain": np.asarray(retain, np.int64), "forget": np.asarray(forget, np.int64),
            "val": np.asarray(val, np.int64), "test": np.asarray(test, np.int64)}


def split_checksum(splits: dict[str, np.ndarray]) -> str:
    """sha256 over the split names and their int64 indices, in a fixed order."""
    h = hashlib.sha256()
    for name in sorted(splits):
        h.update(name.encode())
        h.update(np.ascontiguousarray(splits[name], dtype=np.int64).tobytes())
    return h.hexdigest()


def split_sizes(splits: dict[str, np.ndarray]) -> dict[str, int]:
    """Number of samples per split, in the canonical order."""
    return {k: len(splits[k]) for k in SPLIT_NAMES if k in splits}
