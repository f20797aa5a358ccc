"""Unlearn stage: apply methods to the Original model of each seed; store model, time and accuracies."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
import yaml
from torch import nn

from deepunlearn.data.loader import DeviceData
from deepunlearn.errors import UserError
from deepunlearn.methods import get_method, list_methods, load_plugins, run_method
from deepunlearn.references import get_reference, load_weights, reference_params, split_accuracies
from deepunlearn.stages import make_config, register_config
from deepunlearn.stages import train as train_stage
from deepunlearn.store import Store, read_json, write_json
from deepunlearn.training import Recipe, matmul_gflops

RUN_SEED = 123


@register_config("unlearn")
@dataclass
class UnlearnConfig:
    """Parameters of notebooks/unlearn.py."""

    train: str = "demo"  # name of the params/train/<name>.yaml that made the Original and Retrained models
    methods: list[str] = field(default_factory=lambda: ["ft"])  # method ids, or ["all"] for the 18
    plugins: list[str] = field(default_factory=list)  # .py files (or modules) defining your own methods
    hparams: dict = field(default_factory=dict)  # {method: {hyperparameter: value}}; missing: defaults
    best: str | None = None  # sweep config whose outputs/sweeps/<best>/best.yaml gives the hyperparameters
    seeds: list[int] | None = None  # None: the train config's seeds
    device: str = "auto"
    store: str = "outputs/store"
    progress: bool = True


def load_train_config(name: str, **overrides) -> train_stage.TrainConfig:
    """The TrainConfig of params/train/<name>.yaml (the Original/Retrained recipe), with overrides."""
    path = Path("params") / "train" / f"{name}.yaml"
    if not path.is_file():
        have = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise UserError(f"No train config {path}; set `train` to one of {have or 'none'}.")
    params = yaml.safe_load(path.read_text()) or {}
    return make_config("train", **{**params, **overrides})


def expand_methods(methods: list[str]) -> list[str]:
    """["all"] → every registered method; otherwise the ids, checked against the registry."""
    if methods == ["all"]:
        return list_methods(include_references=False)
    for m in methods:
        get_method(m)
    return list(methods)


def best_hparams(best: str | None) -> dict:
    """{method: hp} from a sweep's best.yaml, or {} when no sweep is named."""
    if not best:
        return {}
    path = Path("outputs") / "sweeps" / best / "best.yaml"
    if not path.is_file():
        raise UserError(f"No sweep results at {path}; run `make sweep CONFIG={best}` first or set best: null.")
    return {m: v["params"] for m, v in (yaml.safe_load(path.read_text()) or {}).items()}


def unlearned_params(data: DeviceData, arch: str, seed: int, recipe: Recipe, method: str, hp) -> dict:
    """Store key of one unlearned model: its Original's key, the method and its hyperparameters."""
    return {"original": reference_params(data, arch, seed, "original", recipe), "method": method,
            "hp": dataclasses.asdict(hp), "run_seed": RUN_SEED}


def get_unlearned(store: Store, data: DeviceData, arch: str, seed: int, recipe: Recipe, method: str,
                  hp: dict | None = None, *, progress: bool = False) -> tuple[nn.Module, dict]:
    """The unlearned model of (method, hp) from seed's Original, computed once; with meta (time, accuracy)."""
    spec = get_method(method)
    params_hp = spec.make_hp(**(hp or {}))
    if spec.reference:
        role = "original" if method == "original" else "retrain"
        model, meta = get_reference(store, data, arch, seed, role, recipe, progress=progress)
        return model, {**meta, "time": meta["time"] if role == "retrain" else 0.0, "method": method, "hp": {}}
    original, _ = get_reference(store, data, arch, seed, "original", recipe, progress=progress)
    params = unlearned_params(data, arch, seed, recipe, method, params_hp)

    def build(out: Path) -> None:
        before = matmul_gflops(data.device)  # the machine's speed beside the time (spec E.4, RTE)
        model, seconds = run_method(method, original, data, params_hp, seed=RUN_SEED)
        speed = {"before": before, "after": matmul_gflops(data.device)}
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / "weights.pt")
        write_json(out / "meta.json", {"time": seconds, "gflops": speed, "method": method,
                                       "hp": dataclasses.asdict(params_hp), "accuracy": split_accuracies(model, data)})

    path = store.get_or_compute("unlearned", params, build, label=f"{data.info.name}-{arch}-{method}-s{seed}")
    model = load_weights(path, arch, data.num_classes, data.info.img_size, data.device)
    return model, read_json(path / "meta.json")


def run(cfg: UnlearnConfig) -> pd.DataFrame:
    """Unlearn with every method on every seed; one row per (method, seed) with RA/FA/VA/TA and time."""
    load_plugins(cfg.plugins)
    tcfg = load_train_config(cfg.train, device=cfg.device, store=cfg.store, progress=cfg.progress)
    hps = {**best_hparams(cfg.best), **cfg.hparams}
    methods = expand_methods(cfg.methods)
    for m in methods:  # every hyperparameter is checked before anything is loaded or trained
        get_method(m).make_hp(**hps.get(m, {}))
    data, store, recipe = train_stage.load_data(tcfg), Store(cfg.store), train_stage.recipe_of(tcfg)
    rows = []
    for seed in cfg.seeds if cfg.seeds is not None else tcfg.seeds:
        for method in ["original", "retrain"] + methods:
            _, meta = get_unlearned(store, data, tcfg.arch, seed, recipe, method, hps.get(method),
                                    progress=cfg.progress)
            acc = meta["accuracy"]
            rows.append({"method": get_method(method).display, "id": method, "seed": seed,
                         "RA": acc["retain"], "FA": acc["forget"], "VA": acc["val"], "TA": acc["test"],
                         "time_s": round(meta["time"], 3)})
    return pd.DataFrame(rows)
