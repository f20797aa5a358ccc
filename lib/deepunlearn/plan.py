"""A plan before the spend: per stage and in total, the models, trials, epochs and estimated device-hours.

The counts come from the configs (params/<stage>/<name>.yaml for each (dataset, arch) pair). The
times come from a measurement on the device at hand, a few seconds per (arch, input size): the
seconds per sample of a training step and of an inference pass on synthetic inputs, scaled by the
samples each stage processes. An unlearning trial is costed as the mean epochs of its search range
over the retain set plus one evaluation of every split; methods differ around that (FF does C
backward passes per batch, IU one per retain sample), so the hours are an order of magnitude to size
an allocation with, labelled with the device they were measured on, not a promise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pandas as pd
import torch

from deepunlearn import config, paths, results, search
from deepunlearn.config import AttackConfig, SweepConfig, UnlearnConfig
from deepunlearn.data import get_dataset_info
from deepunlearn.data.splits import make_splits
from deepunlearn.experiment import expand_methods, experiment, resolve_device
from deepunlearn.models import create_model
from deepunlearn.training import Timer, forward, matmul_gflops, to_device

# official (train, test) sizes of spec A.1 / A.3, so a plan needs no data on disk
OFFICIAL = {"mnist": (60000, 10000), "fashion_mnist": (60000, 10000), "cifar10": (50000, 10000),
            "cifar100": (50000, 10000), "utkface": (18967, 4741), "digits": (1500, 297)}


@dataclass(frozen=True)
class Speed:
    """Seconds per sample on one device: a training step (forward, backward, SGD) and an inference pass."""

    train: float
    infer: float
    device: str


_SPEEDS: dict[tuple, Speed] = {}
# A stage costs more than its bare training steps: evaluations of every split after each run, the
# methods' own extra passes (FF's C backward passes per batch, SCRUB's per-epoch evaluations, BT's
# teachers), checkpoints, process start-up. On the CPU demo the four stages took 124 / 412 / 434 /
# 667 s against bare-step estimates of 36 / 108 / 108 / 216 s (3.1x to 4.0x): the plan multiplies by this.
OVERHEAD = 3.5


def measure(arch: str, num_classes: int, img_size: int, device: torch.device, batch: int = 128,
            steps: int = 2) -> Speed:
    """Time `steps` training steps and inference passes of `arch` on synthetic inputs (after one warm-up)."""
    key = (arch, num_classes, img_size, device.type)
    if key in _SPEEDS:
        return _SPEEDS[key]
    # the recipe's batch where that is cheap; 224-px inputs on a CPU cost ~50x the 32-px ones, so a few
    # samples there keep the measurement to seconds (and overstate the per-sample cost somewhat)
    batch = batch if device.type == "cuda" or img_size <= 64 else 2
    model = to_device(create_model(arch, num_classes, img_size, 0), device)
    x = torch.randn(batch, 3, img_size, img_size, device=device)
    y = torch.randint(0, num_classes, (batch,), device=device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(forward(model, x), y).backward()
        opt.step()

    def infer() -> None:
        with torch.inference_mode():
            forward(model, x)

    out = []
    for fn in (step, infer):
        model.train(fn is step)
        fn()  # warm-up (allocations, kernel choice)
        with Timer(device) as t:
            for _ in range(steps):
                fn()
        out.append(t.seconds / (steps * batch))
    label = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU ({torch.get_num_threads()} threads, fp32 matmul {matmul_gflops(device):.0f} GFLOP/s)"
    _SPEEDS[key] = Speed(out[0], out[1], label)
    return _SPEEDS[key]


def sizes(dataset: str, subset: int | None) -> dict[str, int]:
    """The split sizes of a dataset (spec A.3), from its official sizes alone."""
    return {k: len(v) for k, v in make_splits(*OFFICIAL[dataset], subset).items()}


def pairs_of(name: str) -> list[tuple[str, str]]:
    """The (dataset, arch) pairs a protocol covers: its analyze config's attack entries, else its profile's pair."""
    if paths.params_file("analyze", name).is_file():
        out = []
        for entry in config.load("analyze", name).attack:
            cfg = results.attack_config(entry)
            exp = experiment(cfg.profile, dataset=cfg.dataset, arch=cfg.arch)
            out.append((exp.dataset, exp.arch))
        return list(dict.fromkeys(out))
    exp = experiment(name)
    return [(exp.dataset, exp.arch)]


def _rows(name: str, dataset: str, arch: str, device: torch.device) -> list[dict]:
    """The plan of one (dataset, arch): one row per stage."""
    pair = {"dataset": dataset, "arch": arch}

    def stage_cfg(stage: str):
        return config.load(stage, name, **pair) if paths.params_file(stage, name).is_file() else None

    exp = experiment(name, **pair)
    info, rec = get_dataset_info(dataset), exp.recipe
    n = sizes(dataset, exp.train.subset)
    sp = measure(arch, info.num_classes, info.img_size, device, min(rec.batch_size, 128))
    every = sum(n.values())
    rows = []

    def row(stage: str, models: int, trials: int, sample_epochs: float, samples_inferred: float) -> None:
        seconds = OVERHEAD * (sample_epochs * sp.train + samples_inferred * sp.infer)
        rows.append({"pair": f"{dataset}/{arch}", "stage": stage, "models": models, "trials": trials,
                     "epochs": round(sample_epochs / max(1, n["retain"])), "device_hours": seconds / 3600})

    seeds = len(exp.seeds)
    row("train", 2 * seeds, 0, seeds * rec.epochs * (2 * n["retain"] + n["forget"]), 2 * seeds * every)
    e_mean = (1 + search.e_max(rec.epochs)) / 2  # the mean of the searched epochs, int [1, E_max]
    sw: SweepConfig | None = stage_cfg("sweep")
    if sw is not None:
        methods = expand_methods(sw.methods)
        trials = len(methods) * len(sw.seeds) * sw.n_trials
        row("sweep", trials, trials, trials * e_mean * n["retain"], trials * every)
    un: UnlearnConfig | None = stage_cfg("unlearn")
    if un is not None:
        runs = len(expand_methods(un.methods)) * len(un.seeds if un.seeds is not None else exp.seeds)
        row("unlearn", runs, 0, runs * e_mean * n["retain"], runs * every)
    at: AttackConfig | None = stage_cfg("attack")
    if (dataset, arch) == ("cifar10", "resnet18") and paths.params_file("attack", f"{name}-ulira").is_file():
        at = config.load("attack", f"{name}-ulira", **pair)  # the paper's U-LiRA pair (make paper does the same)
    if at is not None:
        rows_scored = (len(expand_methods(at.methods)) + 2) * len(at.seeds if at.seeds is not None else exp.seeds)
        samples, epochs_done, models = rows_scored * every, 0.0, 0
        if at.ulira:
            half = n["retain"] + n["forget"] + n["val"]  # official train, halved per split below
            k = at.ulira_splits * at.ulira_forget_sets
            originals = at.ulira_splits if at.ulira_share_original else k
            e_ul = at.ulira_epochs or rec.epochs
            targets = len(expand_methods(at.ulira_methods) if at.ulira_methods is not None else
                          expand_methods(at.methods))
            models = originals + k + targets * k
            epochs_done = (originals + k) * e_ul * half / 2 + targets * k * e_mean * half / 2 * 0.9
            samples += models * half  # each shadow's statistic on the whole pool
        row("attack", models, 0, epochs_done, samples)
        if at.ulira and at.ulira_best and paths.params_file("sweep", at.ulira_best).is_file():
            # spec G.2: the U-LiRA methods' own search, one study per split on forget set 0's shadows
            lira: SweepConfig = config.load("sweep", at.ulira_best, **pair)
            trials = len(expand_methods(lira.methods)) * lira.ulira_splits * lira.n_trials
            e_lira = (1 + search.e_max(lira.ulira_epochs or rec.epochs)) / 2
            row("ulira-sweep", trials, trials, trials * e_lira * half / 2 * 0.9, trials * (half + n["val"]))
    return rows


def plan(name: str, device: str = "auto") -> tuple[pd.DataFrame, str]:
    """The plan of protocol `name` over its pairs (one row per pair and stage, then totals) and the device it was timed on."""
    dev = resolve_device(device)
    t0 = time.time()
    rows = [r for d, a in pairs_of(name) for r in _rows(name, d, a, dev)]
    table = pd.DataFrame(rows)
    totals = table.groupby("stage", sort=False)[["models", "trials", "epochs", "device_hours"]].sum().reset_index()
    totals.insert(0, "pair", "all pairs")
    total = pd.DataFrame([{"pair": "all pairs", "stage": "total",
                           **table[["models", "trials", "epochs", "device_hours"]].sum().to_dict()}])
    out = pd.concat([table, totals, total], ignore_index=True)
    label = next(iter(_SPEEDS.values())).device if _SPEEDS else str(dev)
    return out, f"timed on {label} in {time.time() - t0:.0f} s"
