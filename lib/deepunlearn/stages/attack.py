"""Attack stage: every spec E metric per (dataset, arch, method, seed), and U-LiRA (spec G) on shadow models."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from deepunlearn.attacks import ulira as ul
from deepunlearn.data.loader import DeviceData
from deepunlearn.errors import UserError
from deepunlearn.methods import get_method, run_method
from deepunlearn.metrics import evaluate, model_distances, versus_retrain
from deepunlearn.references import get_reference, reference_params
from deepunlearn.stages import make_config, register_config
from deepunlearn.stages.train import load_data, recipe_of
from deepunlearn.store import Store, read_json, write_json
from deepunlearn.training import Recipe

VERSION = 1  # bump when a stored row changes meaning
COLUMNS = ("dataset", "arch", "method", "display", "seed", "ra", "fa", "va", "ta", "val_mia", "test_mia", "indisc",
           "val_indisc", "rr", "fr", "tr", "retdev", "rte", "unlearn_s", "retrain_s", "sape_ra", "sape_fa", "sape_ta",
           "dist_norm", "dist_l2", "dist_scaled", "hp")  # the table's column order (U-LiRA columns last)
ULIRA_COLUMNS = ("auc", "tpr_at_1pct_fpr", "tpr_at_01pct_fpr", "balanced_acc", "mean_score")


@register_config("attack")
@dataclass
class AttackConfig:
    """Parameters of notebooks/attack.py."""

    dataset: str = "fashion_mnist"
    arch: str = "smallresnet"
    seeds: list[int] = field(default_factory=lambda: [0])
    subset: int | None = None  # as the train stage: a seeded sample of this many official-train images
    epochs: int | None = None  # O/R recipe, as the train stage (None: the dataset's)
    batch_size: int | None = None
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    methods: list[str] = field(default_factory=lambda: ["ft"])  # method ids; Original and Retrained are always added
    hp: dict[str, dict] = field(default_factory=dict)  # method -> hyperparameters (missing: the method's defaults)
    ulira: bool = False  # also run U-LiRA
    ulira_methods: list[str] | None = None  # methods U-LiRA attacks (None: `methods`); O and R always
    ulira_splits: int = 8  # shadow train/held-out splits (the paper: 64)
    ulira_forget_sets: int = 2  # forget sets per split (the paper: 10)
    ulira_seed: int = 0  # model initialisation seed of every shadow (the paper: 0); its rows get U-LiRA columns
    ulira_epochs: int | None = None  # shadow O/R epochs (None: the recipe's; the paper: 91 on CIFAR-10)
    ulira_statistic: str = "logit"  # "logit" (logit-scaled confidence) or "correct" (the reference's 0/1)
    ulira_share_original: bool = True  # one Original per split (False: one per (split, forget set), as the paper)
    device: str = "auto"
    store: str = "outputs/store"
    data_root: str | None = None
    download: bool = False
    progress: bool = True


def _check(cfg: AttackConfig) -> None:
    for m in [*cfg.methods, *(cfg.ulira_methods or [])]:
        spec = get_method(m)
        if spec.reference:
            raise UserError(f"{m!r} is a reference model; Original and Retrained rows are always included, "
                            f"so drop it from `methods`.")
    for m in cfg.hp:
        get_method(m).make_hp(**cfg.hp[m])
    if cfg.ulira:
        if cfg.ulira_seed not in cfg.seeds:
            raise UserError(f"ulira_seed={cfg.ulira_seed} is not among seeds {cfg.seeds}; add it to `seeds`.")
        if cfg.ulira_statistic not in ul.STATISTICS:
            raise UserError(f"ulira_statistic={cfg.ulira_statistic!r}; choose one of {', '.join(ul.STATISTICS)}.")


def _hp(cfg: AttackConfig, method: str) -> dict:
    """The method's full hyperparameters: its defaults updated with the config's."""
    return asdict(get_method(method).make_hp(**cfg.hp.get(method, {})))


def _reference_row(store: Store, data: DeviceData, arch: str, seed: int, role: str, recipe: Recipe,
                   progress: bool) -> tuple[dict, Path]:
    """Metrics of a reference model (cached); also the path of its losses."""
    params = {"model": reference_params(data, arch, seed, role, recipe), "version": VERSION}

    def build(work: Path) -> None:
        model, meta = get_reference(store, data, arch, seed, role, recipe, progress=progress)
        row, losses = evaluate(model, data, return_losses=True)
        np.savez(work / "losses.npz", **losses)
        write_json(work / "row.json", {**row, "train_s": meta["time"]})

    path = store.get_or_compute("attack-metrics", params, build, label=f"{data.info.name}-{arch}-{role}-s{seed}")
    return read_json(path / "row.json"), path


def method_row(cfg: AttackConfig, data: DeviceData, store: Store, recipe: Recipe, seed: int, method: str
               ) -> tuple[dict, dict[str, np.ndarray]]:
    """One tidy row (every spec E metric) and the per-sample losses of `method` on `seed` (cached)."""
    r_row, r_path = _reference_row(store, data, cfg.arch, seed, "retrain", recipe, cfg.progress)
    base = {"dataset": cfg.dataset, "arch": cfg.arch, "method": method, "display": get_method(method).display,
            "seed": seed}
    if method == "retrain":
        row = {**r_row, **versus_retrain(r_row, r_row, r_row["train_s"], r_row["train_s"]),
               "unlearn_s": r_row["train_s"], "dist_norm": 0.0, "dist_l2": 0.0, "dist_scaled": 0.0}
        path = r_path
    else:
        hp = {} if method == "original" else _hp(cfg, method)
        params = {"original": reference_params(data, cfg.arch, seed, "original", recipe),
                  "retrain": reference_params(data, cfg.arch, seed, "retrain", recipe),
                  "method": method, "hp": hp, "version": VERSION}

        def build(work: Path) -> None:
            original, _ = get_reference(store, data, cfg.arch, seed, "original", recipe, progress=cfg.progress)
            retrained, _ = get_reference(store, data, cfg.arch, seed, "retrain", recipe, progress=cfg.progress)
            if method == "original":
                model, seconds = original, math.nan  # nothing to unlearn: no run time, no RTE
            else:
                model, seconds = run_method(method, original, data, hp)
            row, losses = evaluate(model, data, return_losses=True)
            np.savez(work / "losses.npz", **losses)
            write_json(work / "row.json", {**row, **versus_retrain(row, r_row, seconds, r_row["train_s"]),
                                           **model_distances(retrained, model), "unlearn_s": seconds,
                                           "hp": hp})

        path = store.get_or_compute("attack-metrics", params, build,
                                    label=f"{data.info.name}-{cfg.arch}-{method}-s{seed}")
        row = read_json(path / "row.json")
    row = {**base, **row, "retrain_s": r_row["train_s"]}
    row.pop("train_s", None)
    row["hp"] = json.dumps(row.get("hp", {}), sort_keys=True)
    return row, dict(np.load(path / "losses.npz"))


def _ulira_targets(cfg: AttackConfig) -> list[str]:
    return [*ul.REFERENCES, *(cfg.methods if cfg.ulira_methods is None else cfg.ulira_methods)]


def ulira_results(cfg: AttackConfig, data: DeviceData | None = None) -> dict[str, ul.UliraResult]:
    """U-LiRA of the Original, the Retrained model and every U-LiRA method (cached in the store)."""
    _check(cfg)
    data = data if data is not None else load_data(cfg)
    recipe = recipe_of(cfg)
    if cfg.ulira_epochs:
        recipe = Recipe(**{**asdict(recipe), "epochs": cfg.ulira_epochs})
    splits = ul.make_lira_splits(ul.official_train(data), cfg.ulira_splits, cfg.ulira_forget_sets)
    shadows = ul.Shadows(Store(cfg.store), data, splits, cfg.arch, cfg.ulira_seed, recipe,
                         cfg.ulira_share_original, cfg.progress)
    return {t: ul.attack(shadows, t, None if t in ul.REFERENCES else _hp(cfg, t), statistic=cfg.ulira_statistic)
            for t in _ulira_targets(cfg)}


def run(cfg: AttackConfig) -> pd.DataFrame:
    """The tidy results table: one row per (dataset, arch, method, seed) with every metric (U-LiRA on its seed)."""
    _check(cfg)
    data, store, recipe = load_data(cfg), Store(cfg.store), recipe_of(cfg)
    rows = [method_row(cfg, data, store, recipe, seed, m)[0]
            for seed in cfg.seeds for m in ["original", "retrain", *cfg.methods]]
    table = pd.DataFrame(rows)
    first = [c for c in COLUMNS if c in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
    if cfg.ulira:
        for target, res in ulira_results(cfg, data).items():
            at = (table["method"] == target) & (table["seed"] == cfg.ulira_seed)
            for k in ULIRA_COLUMNS:
                table.loc[at, f"ulira_{k}"] = res.summary[k]
    return table


def losses(cfg: AttackConfig, seed: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per-sample losses of each model of `seed` (default: the first): method -> split -> losses."""
    _check(cfg)
    data, store, recipe = load_data(cfg), Store(cfg.store), recipe_of(cfg)
    seed = cfg.seeds[0] if seed is None else seed
    return {m: method_row(cfg, data, store, recipe, seed, m)[1] for m in ["original", "retrain", *cfg.methods]}


def plot_loss_histograms(cfg: AttackConfig, seed: int | None = None):
    """Forget vs test loss histograms per model (log loss axis): what the population MIA sees."""
    import matplotlib.pyplot as plt

    per_model = losses(cfg, seed)
    n = len(per_model)
    cols = min(n, 4)
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(3.2 * cols, 2.6 * -(-n // cols)), squeeze=False)
    floor = 1e-6  # losses of perfectly fitted samples underflow to 0; clip them onto the log axis
    every = np.clip(np.concatenate([ls[k] for ls in per_model.values() for k in ("forget", "test")]), floor, None)
    bins = np.logspace(np.log10(every.min()), np.log10(every.max()) + 1e-9, 40)
    for ax, (m, ls) in zip(axes.flat, per_model.items()):
        for split, color in (("forget", "C3"), ("test", "C0")):
            ax.hist(np.clip(ls[split], floor, None), bins=bins, density=True, alpha=0.5, color=color, label=split)
        ax.set_xscale("log")
        ax.set_title(get_method(m).display)
        ax.set_xlabel("cross-entropy")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend()
    fig.suptitle(f"{cfg.dataset} / {cfg.arch}, seed {cfg.seeds[0] if seed is None else seed}: forget vs test losses")
    fig.tight_layout()
    return fig


def plot_roc(cfg: AttackConfig):
    """U-LiRA ROC curves on log-log axes, with the Original and Retrained references (None if U-LiRA is off)."""
    if not cfg.ulira:
        return None
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for i, (t, res) in enumerate(ulira_results(cfg).items()):
        style = {"original": "k--", "retrain": "k:"}.get(t, f"C{i}-")
        ax.plot(np.maximum(res.fpr, 1e-5), np.maximum(res.tpr, 1e-5), style,
                label=f"{get_method(t).display} (AUC {res.summary['auc']:.3f})")
    ax.plot([1e-5, 1], [1e-5, 1], color="0.7", lw=0.8)
    ax.set(xscale="log", yscale="log", xlim=(1e-4, 1), ylim=(1e-4, 1), xlabel="false positive rate",
           ylabel="true positive rate", title=f"U-LiRA, {cfg.dataset} / {cfg.arch}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def main(argv: list[str] | None = None) -> int:
    """`python -m deepunlearn.stages.attack params/attack/demo.yaml`: run the stage and print its table."""
    import yaml

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("params", help="a params/attack/*.yaml file")
    p.add_argument("--columns", default="method,seed,ra,fa,ta,val_mia,test_mia,indisc,retdev,rte",
                   help="comma-separated columns to print ('all' for every column)")
    args = p.parse_args(argv)
    cfg = make_config("attack", **(yaml.safe_load(Path(args.params).read_text()) or {}))
    table = run(cfg)
    cols = list(table.columns) if args.columns == "all" else [
        c for c in args.columns.split(",") + [f"ulira_{k}" for k in ULIRA_COLUMNS] if c in table.columns]
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(table[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
