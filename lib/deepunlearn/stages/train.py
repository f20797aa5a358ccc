"""Train stage: the Original and Retrained models of every seed (spec C)."""

from __future__ import annotations

import pandas as pd

from deepunlearn.config import TrainConfig
from deepunlearn.experiment import Experiment
from deepunlearn.progress import Progress
from deepunlearn.trained import ROLE_NAMES, get_reference


def run(cfg: TrainConfig) -> pd.DataFrame:
    """Train (or fetch from the store) O and R for every seed; one row per model with its accuracies."""
    exp = Experiment(cfg)
    units = [(seed, role) for seed in exp.seeds for role in ("original", "retrain")]
    progress = Progress(len(units), f"train {exp.label()}", cfg.progress)
    rows = []
    for seed, role in units:
        _, meta = get_reference(exp.store, exp.data, exp.arch, seed, role, exp.recipe, progress=cfg.progress)
        acc = meta["accuracy"]  # stored with sorted keys: put the splits back in their usual order
        rows.append({"seed": seed, "model": role, **{k: acc[k] for k in ("retain", "forget", "val", "test")},
                     "train_s": round(meta["time"], 2)})
        progress.done(f"{ROLE_NAMES[role]} seed {seed}: test accuracy {acc['test']:.3f}, {meta['time']:.0f}s")
    return pd.DataFrame(rows)
