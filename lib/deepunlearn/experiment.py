"""One resolved experiment: data, recipe, arch, seeds, store and methods' hyperparameters, built once from a config.

Every stage starts from an `Experiment`: the train stage from its own config, the later stages
from the profile they name (params/train/<profile>.yaml) with their dataset and arch on top. The
data is loaded on first use only, so what needs only the store's keys or saved results never reads it.
Hyperparameters are method dataclasses from here on (`hparams`), never dicts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
import yaml

from deepunlearn import config, paths, training
from deepunlearn.config import TrainConfig
from deepunlearn.data import get_dataset_info, load_device_data
from deepunlearn.data.loader import DeviceData
from deepunlearn.errors import UserError
from deepunlearn.methods import get_method, list_methods, load_plugins
from deepunlearn.store import Store
from deepunlearn.training import Recipe


def resolve_device(device: str) -> torch.device:
    """'auto' → CUDA if present, else CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_train(cfg: TrainConfig) -> None:
    """Stop with one sentence on a bad dataset, arch or recipe, before anything is read or trained."""
    from deepunlearn.models import list_models

    get_dataset_info(cfg.dataset)
    if cfg.arch not in list_models():
        raise UserError(f"Unknown model {cfg.arch!r}; choose one of {', '.join(list_models())}.")
    for name, low in (("epochs", 1), ("batch_size", 1), ("subset", 1)):
        value = getattr(cfg, name)
        if value is not None and value < low:
            raise UserError(f"Train parameter {name}={value!r} must be an integer ≥ {low} (or null for the default).")
    if cfg.lr <= 0:
        raise UserError(f"Train parameter lr={cfg.lr!r} must be a number > 0.")
    if cfg.device not in ("auto", "cpu") and not cfg.device.startswith("cuda"):
        raise UserError(f"device={cfg.device!r}; choose auto, cpu or cuda.")


def recipe_of(cfg: TrainConfig) -> Recipe:
    """The spec C recipe, with the config's overrides."""
    info = get_dataset_info(cfg.dataset)
    return Recipe(epochs=cfg.epochs or info.epochs, batch_size=cfg.batch_size or info.batch_size, lr=cfg.lr,
                  momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def expand_methods(methods: list[str]) -> list[str]:
    """["all"] → every registered method; otherwise the ids, checked against the registry."""
    if methods == ["all"]:
        return list_methods(include_references=False)
    for m in methods:
        get_method(m)
    return list(methods)


@dataclass
class Experiment:
    """What a stage works on, resolved once: the train config behind it, its store, recipe and device."""

    train: TrainConfig
    profile: str = ""  # the params/train/<profile>.yaml it came from ("" for a train config built in code)

    def __post_init__(self) -> None:
        check_train(self.train)

    @property
    def dataset(self) -> str:
        return self.train.dataset

    @property
    def arch(self) -> str:
        return self.train.arch

    @property
    def seeds(self) -> list[int]:
        return list(self.train.seeds)

    @property
    def progress(self) -> bool:
        return self.train.progress

    @cached_property
    def store(self) -> Store:
        return Store(self.train.store)

    @cached_property
    def device(self) -> torch.device:
        return resolve_device(self.train.device)

    @cached_property
    def recipe(self) -> Recipe:
        return recipe_of(self.train)

    @cached_property
    def info(self):
        return get_dataset_info(self.dataset)

    @cached_property
    def data(self) -> DeviceData:
        """The dataset and its splits on the device (read on first use, then kept)."""
        t = self.train
        if self.device.type == "cpu":
            training.hold_freed_memory()  # this process computes on the CPU from here on: reuse freed memory
        return load_device_data(t.dataset, self.device, store=self.store,
                                data_root=str(paths.resolve(t.data_root)) if t.data_root else None,
                                subset=t.subset, download=t.download)

    def label(self) -> str:
        """`dataset/arch` for messages and progress lines."""
        return f"{self.dataset}/{self.arch}"


def experiment(profile: str, *, dataset: str | None = None, arch: str | None = None, **overrides: Any) -> Experiment:
    """The experiment of params/train/<profile>.yaml, with this stage's dataset, arch, device, store on top."""
    pair = {k: v for k, v in (("dataset", dataset), ("arch", arch)) if v is not None}
    return Experiment(config.load("train", profile, **pair, **overrides), profile)


def stage_experiment(cfg: Any) -> Experiment:
    """The experiment a sweep, unlearn or attack config works on (its profile, pair, device, store)."""
    load_plugins([str(paths.resolve(p)) if p.endswith(".py") else p for p in cfg.plugins])
    return experiment(cfg.profile, dataset=cfg.dataset, arch=cfg.arch, device=cfg.device, store=cfg.store,
                      progress=cfg.progress)


def best_hparams(exp: Experiment, best: str | None, key: str = "best") -> dict[str, dict]:
    """{method: chosen hyperparameters} from sweep `best`'s best.yaml for this (dataset, arch); {} if none."""
    if not best:
        return {}
    path = paths.best_file(exp.train.store, best, exp.dataset, exp.arch)
    if not path.is_file():
        raise UserError(f"No sweep results at {path}; run the sweep `{best}` on {exp.label()} first "
                        f"(make sweep CONFIG={best}) or set {key}: null.")
    return {m: v["params"] for m, v in (yaml.safe_load(path.read_text()) or {}).items()}


def method_hparams(exp: Experiment, methods: list[str], best: str | None, hand: dict[str, dict],
                   key: str = "best") -> dict[str, Any]:
    """{method: its hyperparameter dataclass}: defaults, then the sweep's choice, then hand-set values; all checked."""
    for m in hand:
        if m not in methods:
            get_method(m)  # an unknown id is an error even if the method is not run
    chosen = best_hparams(exp, best, key)
    return {m: get_method(m).make_hp(**{**chosen.get(m, {}), **hand.get(m, {})}) for m in methods}


def hp_dict(hp: Any) -> dict:
    """A hyperparameter dataclass as a plain dict (store keys, tables)."""
    return dataclasses.asdict(hp) if dataclasses.is_dataclass(hp) else dict(hp or {})
