"""Check a stage's config before any work: what the stage would resolve first, without reading data or the store.

The command line runs this before it starts a notebook's kernel, so a typo in a method name, a bad
hyperparameter, a missing sweep or a plugin that does not import is one sentence in a second, not
after the kernel has started; the stage itself resolves the same things again when it runs.
"""

from __future__ import annotations

from typing import Any

from deepunlearn import results, scoring, search
from deepunlearn.experiment import Experiment, expand_methods, method_hparams, stage_experiment


def check(stage: str, cfg: Any) -> None:
    """Raise the stage's first UserError for `cfg`, if any."""
    if stage == "train":
        Experiment(cfg)
    elif stage == "sweep":
        search.check_sweep(cfg, stage_experiment(cfg))
    elif stage == "unlearn":
        method_hparams(stage_experiment(cfg), expand_methods(cfg.methods), cfg.best, cfg.hparams)
    elif stage == "attack":
        scoring.resolve(cfg)
    elif stage == "analyze" and not cfg.from_results:
        over = {"store": cfg.store, **({"device": cfg.device} if cfg.device else {})}
        for entry in cfg.attack:
            scoring.resolve(results.attack_config(entry, **over))
