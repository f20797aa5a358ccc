"""Unlearn stage: apply methods to the Original model of each seed; store model, time and accuracies."""

from __future__ import annotations

import pandas as pd

from deepunlearn.config import UnlearnConfig
from deepunlearn.experiment import expand_methods, method_hparams, stage_experiment
from deepunlearn.methods import get_method
from deepunlearn.progress import Progress
from deepunlearn.trained import get_unlearned


def run(cfg: UnlearnConfig) -> pd.DataFrame:
    """Unlearn with every method on every seed; one row per (method, seed) with RA/FA/VA/TA and time."""
    exp = stage_experiment(cfg)
    methods = expand_methods(cfg.methods)
    hps = method_hparams(exp, methods, cfg.best, cfg.hparams)  # every hyperparameter checked before any work
    seeds = cfg.seeds if cfg.seeds is not None else exp.seeds
    units = [(seed, m) for seed in seeds for m in ["original", "retrain", *methods]]
    progress = Progress(len(units), f"unlearn {exp.label()}", cfg.progress)
    rows = []
    for seed, method in units:
        _, meta = get_unlearned(exp.store, exp.data, exp.arch, seed, exp.recipe, method, hps.get(method),
                                progress=cfg.progress)
        acc = meta["accuracy"]
        display = get_method(method).display
        rows.append({"method": display, "id": method, "seed": seed, "RA": acc["retain"], "FA": acc["forget"],
                     "VA": acc["val"], "TA": acc["test"], "time_s": round(meta["time"], 3)})
        progress.done(f"{display} seed {seed}: FA {acc['forget']:.3f}, TA {acc['test']:.3f}, {meta['time']:.1f}s")
    return pd.DataFrame(rows)
