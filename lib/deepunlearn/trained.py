"""Store-backed models: the Original (retain ∪ forget) and Retrained (retain) of spec C, and the unlearned ones.

Each getter builds its model once, whichever stage or worker asks first, and returns it with its
meta (time, the machine's speed beside it, accuracies). Hyperparameters arrive as the method's dataclass.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepunlearn.data.loader import DeviceData
from deepunlearn.data.splits import split_checksum
from deepunlearn.methods import get_method, run_method
from deepunlearn.models import create_model
from deepunlearn.store import Store, read_json, write_json
from deepunlearn.training import Recipe, accuracy, fit, matmul_gflops, to_device

ROLES = {"original": ("retain", "forget"), "retrain": ("retain",)}
ROLE_NAMES = {"original": "Original", "retrain": "Retrained"}
RUN_SEED = 123  # spec B.3: data order and augmentation are the same for every model seed


def data_key(data: DeviceData) -> dict:
    """What identifies the data a model saw: dataset name and a checksum of the split indices."""
    splits = {k: v.cpu().numpy() for k, v in data.splits.items()}
    return {"dataset": data.info.name, "splits": split_checksum(splits)}


def split_accuracies(model: nn.Module, data: DeviceData) -> dict[str, float]:
    """Accuracy on each standard split present: retain, forget, val, test."""
    return {k: accuracy(model, data, k) for k in ("retain", "forget", "val", "test") if k in data.splits}


def reference_params(data: DeviceData, arch: str, seed: int, role: str, recipe: Recipe) -> dict:
    """Store key of one reference model."""
    return {**data_key(data), "arch": arch, "seed": seed, "role": role, "recipe": asdict(recipe),
            "device": data.device.type}


def load_weights(path, arch: str, num_classes: int, img_size: int, device: torch.device) -> nn.Module:
    """A model of `arch` with the weights stored at `path/weights.pt`, on `device`."""
    model = create_model(arch, num_classes, img_size)
    model.load_state_dict(torch.load(path / "weights.pt", map_location="cpu", weights_only=True))
    return to_device(model, device)


def get_reference(store: Store, data: DeviceData, arch: str, seed: int, role: str, recipe: Recipe,
                  *, progress: bool = True, desc: str | None = None) -> tuple[nn.Module, dict]:
    """The trained Original or Retrained model of `seed` and its meta (time, accuracies, history).

    `desc` labels its progress line (U-LiRA's shadows say which split they are).
    """
    params = reference_params(data, arch, seed, role, recipe)

    def build(work) -> None:
        model = to_device(create_model(arch, data.num_classes, data.info.img_size, seed), data.device)
        ckpt = work / "ckpt"
        ckpt.mkdir(exist_ok=True)
        before = matmul_gflops(data.device)  # the machine's speed beside the time (spec E.4, RTE)
        result = fit(model, data, list(ROLES[role]), recipe, seed=RUN_SEED, ckpt_dir=ckpt, progress=progress,
                     desc=desc or f"{ROLE_NAMES[role]} {arch} seed {seed}")
        result["gflops"] = {"before": before, "after": matmul_gflops(data.device)}
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, work / "weights.pt")
        write_json(work / "meta.json", {**result, "accuracy": split_accuracies(model, data)})
        (ckpt / "checkpoint.pt").unlink(missing_ok=True)
        ckpt.rmdir()

    path = store.get_or_compute("model", params, build, label=f"{data.info.name}-{arch}-{role}-s{seed}")
    model = load_weights(path, arch, data.num_classes, data.info.img_size, data.device)
    return model, read_json(path / "meta.json")


def unlearned_params(data: DeviceData, arch: str, seed: int, recipe: Recipe, method: str, hp: Any) -> dict:
    """Store key of one unlearned model: its Original's key, the method and its hyperparameters."""
    return {"original": reference_params(data, arch, seed, "original", recipe), "method": method,
            "hp": dataclasses.asdict(hp), "run_seed": RUN_SEED}


def get_unlearned(store: Store, data: DeviceData, arch: str, seed: int, recipe: Recipe, method: str,
                  hp: Any = None, *, progress: bool = False) -> tuple[nn.Module, dict]:
    """The unlearned model of (method, hp dataclass) from seed's Original, computed once; with meta (time, accuracy).

    The references are served as methods too: `original` (time 0) and `retrain` (its training time).
    """
    spec = get_method(method)
    if spec.reference:
        role = "original" if method == "original" else "retrain"
        model, meta = get_reference(store, data, arch, seed, role, recipe, progress=progress)
        return model, {**meta, "time": meta["time"] if role == "retrain" else 0.0, "method": method, "hp": {}}
    hp = spec.make_hp() if hp is None else spec.check_hp(hp)
    original, _ = get_reference(store, data, arch, seed, "original", recipe, progress=progress)
    params = unlearned_params(data, arch, seed, recipe, method, hp)
    label = f"{data.info.name}-{arch}-{method}-s{seed}"

    def build(out: Path) -> None:
        before = matmul_gflops(data.device)  # the machine's speed beside the time (spec E.4, RTE)
        model, seconds = run_method(method, original, data, hp, seed=RUN_SEED)
        speed = {"before": before, "after": matmul_gflops(data.device)}
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / "weights.pt")
        write_json(out / "meta.json", {"time": seconds, "gflops": speed, "method": method,
                                       "hp": dataclasses.asdict(hp), "accuracy": split_accuracies(model, data)})
        if progress:
            print(f"[{time.strftime('%H:%M:%S')}] unlearned {spec.display} on {label}: {seconds:.1f}s", flush=True)

    path = store.get_or_compute("unlearned", params, build, label=label)
    model = load_weights(path, arch, data.num_classes, data.info.img_size, data.device)
    return model, read_json(path / "meta.json")
