"""Scoring unlearned models: every spec E metric per (dataset, arch, method, seed), and U-LiRA (spec G).

`resolve` turns an attack config into what scoring needs (experiment, methods, hyperparameter
dataclasses, seeds) once; `table` is the tidy results table; `curves` is what the figures read
(per-sample losses of one seed and the U-LiRA ROC curves), saved beside the table so figures can be
redrawn from saved results alone. Every row and curve is cached in the store.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from deepunlearn import paths
from deepunlearn.attacks import ulira as ul
from deepunlearn.config import AttackConfig
from deepunlearn.errors import UserError
from deepunlearn.experiment import Experiment, expand_methods, method_hparams, stage_experiment
from deepunlearn.methods import get_method
from deepunlearn.metrics import evaluate, model_distances, run_timing, versus_retrain
from deepunlearn.progress import Progress
from deepunlearn.store import read_json, write_json
from deepunlearn.trained import get_reference, get_unlearned, reference_params, unlearned_params

# bump when a stored row changes meaning (2: the probes' GFLOP/s and the speed-normalised RTE; 3: `rte`,
# `unlearn_s`, `retrain_s` and the speeds are those of the re-timed runs, the raw ratio is `rte_wall`)
VERSION = 3
COLUMNS = ("dataset", "arch", "method", "display", "seed", "ra", "fa", "va", "ta", "val_mia", "test_mia",
           "indisc", "val_indisc", "rr", "fr", "tr", "retdev", "rte", "rte_wall", "unlearn_s", "retrain_s",
           "unlearn_wall_s", "retrain_wall_s", "unlearn_tries", "retrain_tries",
           "unlearn_gflops", "retrain_gflops", "speed_gap", "sape_ra",
           "sape_fa", "sape_ta", "dist_norm", "dist_l2", "dist_scaled", "hp")  # table order; U-LiRA last
ULIRA_COLUMNS = ("auc", "tpr_at_1pct_fpr", "tpr_at_01pct_fpr", "balanced_acc", "mean_score")
REFERENCES = ("original", "retrain")


@dataclass
class Attack:
    """An attack config resolved once: its experiment, methods, their hyperparameter dataclasses, seeds."""

    cfg: AttackConfig
    exp: Experiment
    methods: list[str]
    ulira_methods: list[str]
    hparams: dict[str, Any]  # method -> its hyperparameter dataclass
    seeds: list[int]
    ulira_hparams: dict[str, Any] = field(default_factory=dict)  # U-LiRA method -> hyperparameters (`ulira_best`)
    ulira: dict[str, ul.UliraResult] | None = None  # filled by `ulira_results` on first use


def resolve(cfg: AttackConfig) -> Attack:
    """Check an attack config and resolve it, before anything is trained or scored (one sentence on bad input)."""
    exp = stage_experiment(cfg)
    methods = expand_methods(cfg.methods)
    targets = expand_methods(cfg.ulira_methods) if cfg.ulira_methods is not None else methods
    for m in methods + targets:
        if get_method(m).reference:
            raise UserError(f"{m!r} is a reference model; Original and Retrained rows are always included, "
                            f"so drop it from `methods`.")
    seeds = list(cfg.seeds if cfg.seeds is not None else exp.seeds)
    if cfg.ulira and cfg.ulira_seed not in seeds:
        raise UserError(f"ulira_seed={cfg.ulira_seed} is not among the seeds {seeds}; add it to `seeds`.")
    if cfg.ulira_statistic not in ul.STATISTICS:
        raise UserError(f"ulira_statistic={cfg.ulira_statistic!r}; choose one of {', '.join(ul.STATISTICS)}.")
    hparams = method_hparams(exp, list(dict.fromkeys(methods + targets)), cfg.best, cfg.hparams)
    # spec G.2: the paper tunes each U-LiRA method in its own search on the shadows (a `ulira: true` sweep)
    ulira_hp = (method_hparams(exp, targets, cfg.ulira_best, cfg.hparams, "ulira_best") if cfg.ulira and cfg.ulira_best
                else {m: hparams[m] for m in targets})
    return Attack(cfg, exp, methods, targets, hparams, seeds, ulira_hp)


def _reference_row(a: Attack, seed: int) -> tuple[dict, Path]:
    """Metrics of the Retrained model of `seed` (cached); also the folder holding its losses."""
    exp = a.exp
    params = row_key(a, seed, "retrain")["params"]

    def build(work: Path) -> None:
        model, meta = get_reference(exp.store, exp.data, exp.arch, seed, "retrain", exp.recipe,
                                    progress=exp.progress)
        row, losses = evaluate(model, exp.data, return_losses=True)
        np.savez(work / "losses.npz", **losses)
        t = run_timing(meta)
        write_json(work / "row.json", {**row, "train_s": t["seconds"], "train_gflops": t["gflops"],
                                       "train_wall_s": t["wall_s"], "train_tries": t["tries"]})

    path = exp.store.get_or_compute("attack-metrics", params, build, label=f"{exp.dataset}-{exp.arch}-retrain-s{seed}")
    return read_json(path / "row.json"), path


def row_key(a: Attack, seed: int, method: str) -> dict:
    """The store key {"kind", "params"} of one scored row (the Retrained row is its reference's)."""
    exp = a.exp
    data, arch, recipe = exp.data, exp.arch, exp.recipe
    retrain = reference_params(data, arch, seed, "retrain", recipe)
    if method == "retrain":
        return {"kind": "attack-metrics", "params": {"model": retrain, "version": VERSION}}
    if method == "original":
        model = reference_params(data, arch, seed, "original", recipe)
    else:
        model = unlearned_params(data, arch, seed, recipe, method, a.hparams[method])
    return {"kind": "attack-metrics", "params": {"model": model, "retrain": retrain, "version": VERSION}}


def method_row(a: Attack, seed: int, method: str) -> tuple[dict, dict[str, np.ndarray]]:
    """One tidy row (every spec E metric) and the per-sample losses of `method` on `seed` (cached).

    The unlearned model is the unlearn stage's (`get_unlearned`): made once, whichever stage asks first.
    """
    exp = a.exp
    data, arch, recipe = exp.data, exp.arch, exp.recipe
    r_row, r_path = _reference_row(a, seed)
    base = {"dataset": exp.dataset, "arch": arch, "method": method, "display": get_method(method).display,
            "seed": seed}
    r_time = (r_row["train_s"], r_row["train_gflops"], r_row["train_wall_s"])
    if method == "retrain":
        t, g, wall = r_time
        row = {**r_row, **versus_retrain(r_row, r_row, t, t, g, g, wall, wall), "unlearn_s": t,
               "unlearn_wall_s": wall, "unlearn_tries": r_row["train_tries"], "dist_norm": 0.0, "dist_l2": 0.0,
               "dist_scaled": 0.0, "hp": {}}
        path = r_path
    else:
        hp = None if method == "original" else a.hparams[method]
        params = row_key(a, seed, method)["params"]

        def build(work: Path) -> None:
            model, meta = get_unlearned(exp.store, data, arch, seed, recipe, method, hp, progress=exp.progress)
            retrained, _ = get_reference(exp.store, data, arch, seed, "retrain", recipe, progress=exp.progress)
            nan = {"seconds": math.nan, "gflops": math.nan, "wall_s": math.nan, "tries": 0}
            u = nan if method == "original" else run_timing(meta)  # O unlearns nothing: no RTE
            row, losses = evaluate(model, data, return_losses=True)
            np.savez(work / "losses.npz", **losses)
            t_r, g_r, wall_r = r_time
            vs = versus_retrain(row, r_row, u["seconds"], t_r, u["gflops"], g_r, u["wall_s"], wall_r)
            write_json(work / "row.json", {**row, **vs, **model_distances(retrained, model),
                                           "unlearn_s": u["seconds"], "unlearn_wall_s": u["wall_s"],
                                           "unlearn_tries": u["tries"], "hp": {} if hp is None else asdict(hp)})

        path = exp.store.get_or_compute("attack-metrics", params, build, label=f"{exp.dataset}-{arch}-{method}-s{seed}")
        row = read_json(path / "row.json")
    row = {**base, **row, "retrain_s": r_row["train_s"], "retrain_wall_s": r_row["train_wall_s"],
           "retrain_tries": r_row["train_tries"]}
    for k in ("train_s", "train_gflops", "train_wall_s", "train_tries"):
        row.pop(k, None)
    row["hp"] = json.dumps(row["hp"], sort_keys=True)
    return row, dict(np.load(path / "losses.npz"))


def shadows(a: Attack) -> ul.Shadows:
    """The U-LiRA shadow setting of the config: its splits, the shadows' init seed and recipe."""
    cfg, exp = a.cfg, a.exp
    recipe = ul.shadow_recipe(exp.recipe, cfg.ulira_epochs)
    splits = ul.make_lira_splits(ul.official_train(exp.data), cfg.ulira_splits, cfg.ulira_forget_sets)
    return ul.Shadows(exp.store, exp.data, splits, exp.arch, cfg.ulira_seed, recipe, cfg.ulira_share_original,
                      exp.progress)


def ulira_results(a: Attack) -> dict[str, ul.UliraResult]:
    """U-LiRA of the Original, the Retrained model and every U-LiRA method (cached in the store); {} if off."""
    cfg, exp = a.cfg, a.exp
    if not cfg.ulira:
        return {}
    if a.ulira is not None:
        return a.ulira
    shadows_ = shadows(a)
    targets = [*ul.REFERENCES, *a.ulira_methods]
    progress = Progress(len(targets), f"U-LiRA {exp.label()}", exp.progress)
    a.ulira = {}
    for t in targets:
        a.ulira[t] = ul.attack(shadows_, t, a.ulira_hparams.get(t), statistic=cfg.ulira_statistic)
        progress.done(f"{get_method(t).display} attacked, AUC {a.ulira[t].summary['auc']:.3f}")
    return a.ulira


def search_budget(a: Attack) -> dict[str, tuple[int, str]]:
    """Per method: (trials per study, the studies' seeds) of the sweep its hyperparameters come from; (0, "") if none.

    Read from best.yaml, where the sweep wrote its budget; -1 when that file predates the budget.
    """
    out = {m: (0, "") for m in a.methods}
    if not a.cfg.best:
        return out
    best = yaml.safe_load(paths.best_file(a.cfg.store, a.cfg.best, a.exp.dataset, a.exp.arch).read_text()) or {}
    for m in a.methods:
        if m in best and m not in a.cfg.hparams:  # hand-set hyperparameters override the sweep's
            b = best[m]
            out[m] = (int(b.get("n_trials", -1)), ",".join(str(s) for s in b.get("seeds", [])))
    return out


def protocol_columns(a: Attack) -> dict:
    """What every row of this config rests on: split sizes, epochs, the profile (for the report's protocol)."""
    return {"train_config": a.exp.profile, "epochs": a.exp.recipe.epochs,
            **{f"n_{k}": a.exp.data.size(k) for k in ("retain", "forget", "val", "test")}}


def table(a: Attack) -> pd.DataFrame:
    """The tidy results table: one row per (dataset, arch, method, seed), every metric; U-LiRA on its seed."""
    units = [(seed, m) for seed in a.seeds for m in ["original", "retrain", *a.methods]]
    progress = Progress(len(units), f"attack {a.exp.label()}", a.exp.progress)
    rows = []
    for seed, m in units:
        rows.append(method_row(a, seed, m)[0])
        progress.done(f"{get_method(m).display} seed {seed} scored")
    budget = search_budget(a)
    for row in rows:
        row.update(protocol_columns(a))
        row["trials"], row["search_seeds"] = budget.get(row["method"], (0, ""))
    out = pd.DataFrame(rows)
    first = [c for c in COLUMNS if c in out.columns]
    out = out[first + [c for c in out.columns if c not in first]]
    for target, res in ulira_results(a).items():
        at = (out["method"] == target) & (out["seed"] == a.cfg.ulira_seed)
        for k in ULIRA_COLUMNS:
            out.loc[at, f"ulira_{k}"] = res.summary[k]
    return out


def losses(a: Attack, seed: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per-sample losses of each model of `seed` (default: the first): method -> split -> losses."""
    seed = a.seeds[0] if seed is None else seed
    return {m: method_row(a, seed, m)[1] for m in ["original", "retrain", *a.methods]}


def roc_curves(results: dict[str, ul.UliraResult]) -> dict[str, dict[str, np.ndarray]]:
    """U-LiRA ROC curve and AUC per target: {target: {"fpr", "tpr", "auc"}}."""
    return {t: {"fpr": r.fpr, "tpr": r.tpr, "auc": np.float64(r.summary["auc"])} for t, r in results.items()}


def save_curves(path: Path, a: Attack, seed: int | None = None) -> Path:
    """What the figures read, as one .npz: the MIA losses of one seed and the U-LiRA ROC curves."""
    seed = a.seeds[0] if seed is None else seed
    arrays = {f"loss/{m}/{split}": v for m, ls in losses(a, seed).items() for split, v in ls.items()}
    roc = roc_curves(ulira_results(a))
    arrays.update({f"roc/{t}/{k}": v for t, c in roc.items() for k, v in c.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".partial.npz")
    np.savez(tmp, seed=np.int64(seed), train=np.str_(a.exp.profile), label=np.str_(a.exp.label()), **arrays)
    tmp.replace(path)
    return path


def load_curves(path: Path) -> tuple[dict, dict, int, str]:
    """(losses {method: {split: array}}, ROC {target: {fpr, tpr, auc}}, seed, label) saved by `save_curves`."""
    if not path.is_file():
        raise UserError(f"No saved curves at {path}; run the analyze stage once with from_results=False.")
    z = np.load(path)
    out: dict[str, dict] = {"loss": {}, "roc": {}}
    for key in z.files:
        kind, *rest = key.split("/")
        if kind in out:
            out[kind].setdefault(rest[0], {})[rest[1]] = z[key]
    label = str(z["label"]) if "label" in z.files else str(z["train"])
    return out["loss"], out["roc"], int(z["seed"]), label
