"""Store-backed models: the Original (retain ∪ forget) and Retrained (retain) of spec C, and the unlearned ones.

Each getter builds its model once, whichever stage or worker asks first, and returns it with its
meta (time, the machine's speed beside it, accuracies). A timed run the speed probes show loaded is
re-timed (`training.retime`): `time` stays the first run's wall seconds and `attempts` holds every
timing, so the RTE can rest on the fastest (`metrics.run_timing`). Hyperparameters arrive as the method's dataclass.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deepunlearn.data.loader import DeviceData
from deepunlearn.data.splits import split_checksum
from deepunlearn.methods import get_method, run_method
from deepunlearn.models import create_model
from deepunlearn.store import Store, read_json, write_json
from deepunlearn.training import (
    TRIES,
    Recipe,
    accuracy,
    epochs_attempt,
    fastest,
    fit,
    machine_id,
    matmul_gflops,
    quiet_gflops,
    retime,
    timed_attempt,
    timing_epoch,
    to_device,
)

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


def stored_quiet(meta: dict, device: torch.device) -> float:
    """The fastest probe a stored run took on this machine (0 if it ran elsewhere or stored none)."""
    if meta.get("machine") != machine_id(device):
        return 0.0
    return max((g for a in meta.get("attempts", []) for g in a["gflops"].values()), default=0.0)


def _label(data: DeviceData, arch: str, role: str, seed: int) -> str:
    return f"{data.info.name}-{arch}-{role}-s{seed}"


def _original_quiet(store: Store, data: DeviceData, arch: str, seed: int, recipe: Recipe) -> float:
    """`stored_quiet` of the Original of `seed` if it is already stored (the Retrained model's sibling)."""
    params = reference_params(data, arch, seed, "original", recipe)
    label = _label(data, arch, "original", seed)
    if not store.is_done("model", params, label):
        return 0.0
    return stored_quiet(read_json(store.path("model", params, label) / "meta.json"), data.device)


def get_reference(store: Store, data: DeviceData, arch: str, seed: int, role: str, recipe: Recipe,
                  *, progress: bool = True, desc: str | None = None, retime_load: bool = True
                  ) -> tuple[nn.Module, dict]:
    """The trained Original or Retrained model of `seed` and its meta (time, accuracies, history).

    `desc` labels its progress line (U-LiRA's shadows say which split they are). The Retrained model's
    time is the T_R of RTE: besides the raw wall `time` its meta holds `attempts`, the first being
    epochs × the median epoch of those whose probes show no load (`training.epochs_attempt`) and, if none
    did, throwaway epochs re-timed (`training.retime`); `retime_load=False` skips those (U-LiRA's shadows,
    whose times nothing reads).
    """
    params = reference_params(data, arch, seed, role, recipe)

    def build(work) -> None:
        model = to_device(create_model(arch, data.num_classes, data.info.img_size, seed), data.device)
        ckpt = work / "ckpt"
        ckpt.mkdir(exist_ok=True)
        probe = partial(matmul_gflops, data.device)
        # what is known of the machine's quiet speed before this run's own probes
        quiet = max(quiet_gflops(data.device), _original_quiet(store, data, arch, seed, recipe))
        split = list(ROLES[role])
        # the machine's speed beside the time, around every epoch (spec E.4, RTE)
        result = fit(model, data, split, recipe, seed=RUN_SEED, ckpt_dir=ckpt, progress=progress,
                     desc=desc or f"{ROLE_NAMES[role]} {arch} seed {seed}", probe=probe)
        if all("gflops" in h for h in result["history"]):
            first = epochs_attempt(result["history"], recipe.epochs, quiet)
        else:  # resumed from a checkpoint written before epochs were probed: the wall time is all there is
            first = {"seconds": result["time"], "gflops": result["gflops"]}
        tries = TRIES if role == "retrain" and retime_load else 1  # only T_R enters an RTE

        def one_more() -> tuple[None, float]:
            return None, recipe.epochs * timing_epoch(model, data, split, recipe, seed=RUN_SEED)

        result["attempts"] = retime(one_more, probe, first, quiet=quiet, tries=tries)
        result.update(quiet_gflops=quiet, machine=machine_id(data.device))
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, work / "weights.pt")
        write_json(work / "meta.json", {**result, "accuracy": split_accuracies(model, data)})
        (ckpt / "checkpoint.pt").unlink(missing_ok=True)
        ckpt.rmdir()

    path = store.get_or_compute("model", params, build, label=_label(data, arch, role, seed))
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
    original, o_meta = get_reference(store, data, arch, seed, "original", recipe, progress=progress)
    params = unlearned_params(data, arch, seed, recipe, method, hp)
    label = f"{data.info.name}-{arch}-{method}-s{seed}"

    def build(out: Path) -> None:
        probe = partial(matmul_gflops, data.device)
        # the machine's quiet speed: this process's fastest probe, or the Original's if it ran here
        quiet = max(quiet_gflops(data.device), stored_quiet(o_meta, data.device))

        def unlearn() -> tuple[nn.Module, float]:
            return run_method(method, original, data, hp, seed=RUN_SEED)

        model, first = timed_attempt(unlearn, probe)  # the machine's speed beside the time (spec E.4, RTE)
        # a run the probes show loaded is run again (deterministic: the same model), its fastest time kept
        attempts = retime(unlearn, probe, first, quiet=quiet)
        seconds = first["seconds"]
        torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, out / "weights.pt")
        write_json(out / "meta.json", {"time": seconds, "gflops": first["gflops"], "attempts": attempts,
                                       "quiet_gflops": quiet, "machine": machine_id(data.device), "method": method,
                                       "hp": dataclasses.asdict(hp), "accuracy": split_accuracies(model, data)})
        if progress:
            again = f", re-timed under load: fastest of {len(attempts)} {fastest(attempts)['seconds']:.1f}s" \
                if len(attempts) > 1 else ""
            print(f"[{time.strftime('%H:%M:%S')}] unlearned {spec.display} on {label}: {seconds:.1f}s{again}",
                  flush=True)

    path = store.get_or_compute("unlearned", params, build, label=label)
    model = load_weights(path, arch, data.num_classes, data.info.img_size, data.device)
    return model, read_json(path / "meta.json")
