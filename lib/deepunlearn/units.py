"""Stages as units of work: any number of workers, on any machines that share outputs/, build each unit once.

A stage lists its independent units (train: a model per (seed, role); unlearn: a run per (method,
seed); attack: a scored row per (method, seed), the U-LiRA shadows per (split, forget set) and one
attack per target). `work` goes through them: a unit another worker holds is skipped and come back
to, a finished one is passed over, a free one is built. The store's lock on the unit's marker is the
claim (the kernel drops it when its holder dies, however it dies), and the store's own lock on each
artifact inside makes two workers racing for one build it once. A killed worker loses at most the
unit it was on; any worker that comes later finishes it. Workers start at different places of the
list (a permutation seeded by the worker index) so that they rarely reach for the same unit. The
stage's notebook is then rendered from the store and reads everything; it is the same whether one
worker or many built it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deepunlearn import scoring, search
from deepunlearn.attacks import ulira as ul
from deepunlearn.experiment import Experiment, expand_methods, method_hparams, stage_experiment
from deepunlearn.methods import get_method
from deepunlearn.progress import Progress
from deepunlearn.store import Store
from deepunlearn.trained import ROLE_NAMES, get_reference, get_unlearned, reference_params, unlearned_params

KIND = "unit"  # the store kind of the markers that say a unit is done


@dataclass
class Unit:
    """One independent piece of a stage: what identifies it (its marker's key) and how to build it."""

    name: str  # for progress lines: "FT seed 3"
    key: dict  # identifies the unit's result (the store keys of what it builds)
    build: Callable[[], Any]


def work(store: Store, units: list[Unit], what: str, worker: int = 0, show: bool = True, poll: float = 2.0) -> int:
    """Build every unit not yet done, taking turns with other workers; returns how many this worker built."""
    order = list(units)
    if worker:
        random.Random(worker).shuffle(order)  # worker 0 keeps the stage's own order
    progress = Progress(len(order), f"{what} (worker {worker})", show)
    built, pending = 0, order
    while pending:
        busy = []
        for u in pending:
            label = f"{u.name}".replace(" ", "-")
            if store.is_done(KIND, u.key, label):
                progress.skip()
                continue
            if store.is_busy(KIND, u.key, label):
                busy.append(u)
                continue
            before = time.time()
            store.get_or_compute(KIND, u.key, lambda work_dir, u=u: u.build(), label)
            built += 1
            progress.done(f"{u.name} in {time.time() - before:.1f}s")
        if busy and len(busy) == len(pending):
            time.sleep(poll)  # every unit left is being built by someone else: wait for them
        pending = busy
    return built


# --- the units of each stage --------------------------------------------------------------------------

def train_units(exp: Experiment, seeds: list[int] | None = None) -> list[Unit]:
    """The Original and Retrained model of every seed."""
    return [Unit(f"{ROLE_NAMES[role]} seed {seed}",
                 {"stage": "train", "model": reference_params(exp.data, exp.arch, seed, role, exp.recipe)},
                 lambda seed=seed, role=role: get_reference(exp.store, exp.data, exp.arch, seed, role, exp.recipe,
                                                            progress=exp.progress))
            for seed in (exp.seeds if seeds is None else seeds) for role in ("original", "retrain")]


def unlearn_units(exp: Experiment, methods: list[str], hparams: dict[str, Any], seeds: list[int]) -> list[Unit]:
    """Every (method, seed) run on seed's Original (the references are the train stage's units)."""
    return [Unit(f"{get_method(m).display} seed {seed}",
                 {"stage": "unlearn", "model": unlearned_params(exp.data, exp.arch, seed, exp.recipe, m, hparams[m])},
                 lambda seed=seed, m=m: get_unlearned(exp.store, exp.data, exp.arch, seed, exp.recipe, m, hparams[m],
                                                      progress=exp.progress))
            for seed in seeds for m in methods]


def attack_units(a: scoring.Attack) -> list[Unit]:
    """Every scored row, the U-LiRA shadows of each (split, forget set), then one U-LiRA attack per target."""
    out = [Unit(f"score {get_method(m).display} seed {seed}",
                {"stage": "attack", **scoring.row_key(a, seed, m)},
                lambda seed=seed, m=m: scoring.method_row(a, seed, m))
           for seed in a.seeds for m in ["original", "retrain", *a.methods]]
    if not a.cfg.ulira:
        return out
    shadows = scoring.shadows(a)
    key = ul.attack_key(shadows, "retrain", None, a.cfg.ulira_statistic)["shadows"]

    def shadow_pair(s: int, f: int) -> None:
        for role in ul.REFERENCES:
            shadows.reference_stats(role, s, f)
        for m in a.ulira_methods:
            shadows.unlearned_stats(m, a.ulira_hparams[m], s, f)

    hps = {m: ul.hp_fields(m, a.ulira_hparams[m]) for m in a.ulira_methods}
    out += [Unit(f"U-LiRA shadows split {s} forget set {f}", {"stage": "attack-ulira", "shadows": key, "s": s,
                                                                 "f": f, "methods": hps},
                 lambda s=s, f=f: shadow_pair(s, f)) for s, f in shadows.splits.pairs()]
    out += [Unit(f"U-LiRA {get_method(t).display}", {"stage": "attack-ulira-target",
                                                      **ul.attack_key(shadows, t, a.ulira_hparams.get(t),
                                                                      a.cfg.ulira_statistic)},
                 lambda t=t: ul.attack(shadows, t, a.ulira_hparams.get(t), statistic=a.cfg.ulira_statistic))
            for t in [*ul.REFERENCES, *a.ulira_methods]]
    return out


def stage_units(stage: str, cfg: Any) -> tuple[Store, list[Unit], str, bool]:
    """(store, units, what, progress) of a stage's config; the sweep's units are its studies' trials (search.py)."""
    if stage == "train":
        exp = Experiment(cfg)
        return exp.store, train_units(exp), f"train {exp.label()}", cfg.progress
    if stage == "unlearn":
        exp = stage_experiment(cfg)
        methods = expand_methods(cfg.methods)
        hps = method_hparams(exp, methods, cfg.best, cfg.hparams)
        seeds = cfg.seeds if cfg.seeds is not None else exp.seeds
        units = train_units(exp, seeds) + unlearn_units(exp, methods, hps, seeds)
        return exp.store, units, f"unlearn {exp.label()}", cfg.progress
    if stage == "attack":
        a = scoring.resolve(cfg)
        return a.exp.store, attack_units(a), f"attack {a.exp.label()}", cfg.progress
    raise ValueError(f"stage {stage!r} has no units")


def run_worker(stage: str, cfg: Any, worker: int = 0) -> int:
    """One worker of `stage`: build what is left of its units (the sweep: its studies' trials)."""
    if stage == "sweep":
        exp = stage_experiment(cfg)
        done = search.run_worker(cfg, exp, worker=worker)
        if cfg.n_trials:  # every study is complete now: whichever worker ends last leaves best.yaml
            search.summarize(cfg, exp)
        return sum(done.values())
    store, units, what, show = stage_units(stage, cfg)
    return work(store, units, what, worker, show)
