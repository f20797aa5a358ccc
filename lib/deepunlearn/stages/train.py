"""Train stage: the Original and Retrained models of every seed (spec C)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from deepunlearn.data import get_dataset_info, load_device_data
from deepunlearn.errors import UserError
from deepunlearn.references import get_reference
from deepunlearn.stages import register_config, resolve_device
from deepunlearn.store import Store
from deepunlearn.training import Recipe


@register_config("train")
@dataclass
class TrainConfig:
    """Parameters of notebooks/train.py."""

    dataset: str = "fashion_mnist"
    arch: str = "smallresnet"
    seeds: list[int] = field(default_factory=lambda: [0])
    subset: int | None = None  # train on a seeded sample of this many official-train images
    epochs: int | None = None  # None: the dataset's recipe (spec C)
    batch_size: int | None = None  # None: the dataset's recipe (256, UTKFace 128)
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    device: str = "auto"
    store: str = "outputs/store"
    data_root: str | None = None
    download: bool = False
    progress: bool = True


def check(cfg) -> None:
    """Stop with one sentence on a bad dataset, arch or recipe, before anything is read or trained."""
    from deepunlearn.models import list_models

    get_dataset_info(cfg.dataset)
    if cfg.arch not in list_models():
        raise UserError(f"Unknown model {cfg.arch!r}; choose one of {', '.join(list_models())}.")
    for name, low in (("epochs", 1), ("batch_size", 1), ("subset", 1)):
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
            raise UserError(f"Train parameter {name}={value!r} must be an integer ≥ {low} (or null for the default).")
    if not (isinstance(cfg.lr, (int, float)) and cfg.lr > 0):
        raise UserError(f"Train parameter lr={cfg.lr!r} must be a number > 0.")


def recipe_of(cfg) -> Recipe:
    """The spec C recipe, with the config's overrides."""
    info = get_dataset_info(cfg.dataset)
    return Recipe(epochs=cfg.epochs or info.epochs, batch_size=cfg.batch_size or info.batch_size, lr=cfg.lr,
                  momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def load_data(cfg):
    """The config's dataset on its device (the config checked first)."""
    check(cfg)
    return load_device_data(cfg.dataset, resolve_device(cfg.device), store=Store(cfg.store),
                            data_root=cfg.data_root, subset=cfg.subset, download=cfg.download)


def run(cfg: TrainConfig) -> pd.DataFrame:
    """Train (or fetch from the store) O and R for every seed; one row per model with its accuracies."""
    store, recipe = Store(cfg.store), recipe_of(cfg)
    data = load_data(cfg)
    rows = []
    for seed in cfg.seeds:
        for role in ("original", "retrain"):
            _, meta = get_reference(store, data, cfg.arch, seed, role, recipe, progress=cfg.progress)
            acc = meta["accuracy"]  # stored with sorted keys: put the splits back in their usual order
            rows.append({"seed": seed, "model": role, **{k: acc[k] for k in ("retain", "forget", "val", "test")},
                         "train_s": round(meta["time"], 2)})
    return pd.DataFrame(rows)
