"""Sweep stage: spec F studies for each (method, seed), the chosen trial per method, best.yaml.

`python -m deepunlearn.stages.sweep CONFIG` is one worker (make sweep WORKERS=N starts N of them);
the notebook runs a worker too, so it completes the studies on its own, then reports.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from deepunlearn import metrics, sweep
from deepunlearn.data import get_dataset_info
from deepunlearn.errors import UserError
from deepunlearn.methods import SearchContext, get_method, load_plugins
from deepunlearn.references import get_reference
from deepunlearn.stages import make_config, read_params, register_config
from deepunlearn.stages import train as train_stage
from deepunlearn.stages.unlearn import expand_methods, load_train_config
from deepunlearn.store import Store


@register_config("sweep")
@dataclass
class SweepConfig:
    """Parameters of notebooks/sweep.py (and of each sweep worker)."""

    name: str = "demo"  # results go to outputs/sweeps/<name>/ (best.yaml; SQLite studies by default)
    train: str = "demo"  # params/train/<train>.yaml: data and recipe of the Original/Retrained models
    methods: list[str] = field(default_factory=lambda: ["ft"])  # method ids, or ["all"]
    seeds: list[int] = field(default_factory=lambda: [0])  # one study per seed (the paper: 0, 1, 2)
    n_trials: int = 8  # complete trials per study (the paper: 100)
    storage: str | None = None  # None: SQLite per study; postgresql://user@host/db for many workers
    heartbeat: int = 60  # seconds between worker heartbeats; a trial silent for 2x this is retried
    plugins: list[str] = field(default_factory=list)  # .py files defining your own methods
    device: str = "auto"
    store: str = "outputs/store"
    progress: bool = True


def sweep_dir(cfg: SweepConfig) -> Path:
    """outputs/sweeps/<name>/, beside the store."""
    return Path(cfg.store).parent / "sweeps" / cfg.name


def _studies(cfg: SweepConfig, data, tcfg):
    for method in expand_methods(cfg.methods):
        for seed in cfg.seeds:
            name = sweep.study_name(data.info.name, tcfg.arch, method, seed)
            url = sweep.storage_url(cfg.storage, sweep_dir(cfg), name)
            yield method, seed, name, url


def run_worker(cfg: SweepConfig, recompute_reference: bool = False, worker: int = 0) -> dict[str, int]:
    """Work through every study of the sweep until each has N complete trials; {study: trials done here}."""
    load_plugins(cfg.plugins)
    tcfg = load_train_config(cfg.train, device=cfg.device, store=cfg.store, progress=cfg.progress)
    recipe = train_stage.recipe_of(tcfg)
    ctx = SearchContext(e_max=sweep.e_max(recipe.epochs), dataset=tcfg.dataset)
    for method in expand_methods(cfg.methods):  # a space that cannot be sampled stops before any work
        get_method(method).check_space(ctx)
    data, store = train_stage.load_data(tcfg), Store(cfg.store)
    done, cache = {}, {}
    for method, seed, name, url in _studies(cfg, data, tcfg):
        if seed not in cache:  # trial-independent work, once per seed for every method
            original, _ = get_reference(store, data, tcfg.arch, seed, "original", recipe, progress=cfg.progress)
            retrained, _ = get_reference(store, data, tcfg.arch, seed, "retrain", recipe, progress=cfg.progress)
            cache[seed] = (original, retrained, metrics.evaluate(retrained, data))
        original, retrained, r_metrics = cache[seed]
        study = sweep.open_study(url, name, seed, cfg.heartbeat, worker)
        objective = sweep.Objective(method, original, data, r_metrics, ctx, cfg.n_trials, retrained=retrained,
                                    recompute_reference=recompute_reference)
        done[name] = sweep.run_study(study, objective)
    return done


def load_studies(cfg: SweepConfig) -> dict[str, list]:
    """{method: [its studies, one per seed]} from the sweep's storage."""
    tcfg = load_train_config(cfg.train, device="cpu", store=cfg.store, progress=False)
    info = get_dataset_info(tcfg.dataset)
    out: dict[str, list] = {}
    for method in expand_methods(cfg.methods):
        for seed in cfg.seeds:
            name = sweep.study_name(info.name, tcfg.arch, method, seed)
            out.setdefault(method, []).append(sweep.open_study(sweep.storage_url(cfg.storage, sweep_dir(cfg), name),
                                                               name, seed, cfg.heartbeat))
    return out


def summarize(cfg: SweepConfig) -> pd.DataFrame:
    """Best trial per method (spec F), written to best.yaml; one row per method with search cost."""
    best, rows = {}, []
    for method, studies in load_studies(cfg).items():
        b = sweep.best_params(studies, method, cfg.n_trials)
        best[method] = b
        trials = pd.concat([sweep.trials_table(s) for s in studies])
        complete = trials[trials.state == "COMPLETE"]
        errors = complete.error[complete.error != ""]
        if len(complete) and len(errors) == len(complete):  # its best.yaml entry is then an arbitrary trial
            warnings.warn(f"Every trial of {method} failed, so its chosen hyperparameters mean nothing; "
                          f"first error: {errors.iloc[0]}", stacklevel=2)
        rows.append({"method": get_method(method).display, "id": method, "trials": len(complete),
                     "best_score": b["score"], "f_ra": b["values"][0], "f_fa": b["values"][1],
                     "f_va": b["values"][2], "f_mia": b["values"][3], "best_study": b["study"],
                     "best_trial": b["trial"], "search_s": complete.trial_s.sum(),
                     "failed": int((complete.error != "").sum())})
    sweep.write_best(sweep_dir(cfg) / "best.yaml", best)
    return pd.DataFrame(rows)


def run(cfg: SweepConfig) -> pd.DataFrame:
    """Complete the studies (as one more worker), then pick and store the best trial per method."""
    run_worker(cfg)
    return summarize(cfg)


def plot_fronts(cfg: SweepConfig):
    """Per method: every trial's forget-accuracy gap vs MIA discernibility, the Pareto front, the chosen trial."""
    import matplotlib.pyplot as plt

    studies = load_studies(cfg)
    n = len(studies)
    cols = min(n, 6)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.4 * rows), squeeze=False)
    for ax, (method, ss) in zip(axes.flat, studies.items()):
        trials = pd.concat([sweep.trials_table(s) for s in ss])
        trials = trials[(trials.state == "COMPLETE") & (trials.score < float("inf"))]
        front = [t.values for s in ss for t in s.best_trials if t.values and all(v < float("inf") for v in t.values)]
        best = sweep.best_params(ss, method, cfg.n_trials)
        ax.scatter(trials.f_fa, trials.f_mia, s=12, c="0.65", label="trials")
        if front:
            ax.scatter([v[1] for v in front], [v[3] for v in front], s=14, c="C0", label="Pareto front")
        ax.scatter([best["values"][1]], [best["values"][3]], s=80, marker="*", c="C3", label="chosen")
        ax.set_title(get_method(method).display, fontsize=9)
        ax.set_xlabel("⅓|FA − FA_R|", fontsize=8)
        ax.set_ylabel("1 − Indisc(Val MIA)", fontsize=8)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    plt.close(fig)  # the notebook shows the returned figure; closing stops the backend from showing it twice
    return fig


def main(argv: list[str] | None = None) -> int:
    """`python -m deepunlearn.stages.sweep CONFIG [--storage URL]`: one sweep worker."""
    p = argparse.ArgumentParser(description="One sweep worker on params/sweep/CONFIG.yaml.")
    p.add_argument("config")
    p.add_argument("--storage", default=None, help="override the config's storage URL")
    p.add_argument("--worker", type=int, default=int(os.environ.get("SLURM_ARRAY_TASK_ID", "0")),
                   help="index of this worker (0..N-1; default $SLURM_ARRAY_TASK_ID or 0): seeds its sampler")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter (YAML value), e.g. --set n_trials=12")
    args = p.parse_args(argv)
    path = Path("params") / "sweep" / f"{args.config}.yaml"
    if not path.is_file():
        print(f"error: no sweep config {path}; choose one of "
              f"{', '.join(sorted(q.stem for q in path.parent.glob('*.yaml')))}.", file=sys.stderr)
        return 2
    params = read_params(path, args.set)
    if args.storage:
        params["storage"] = args.storage
    t0 = time.time()
    try:
        cfg = make_config("sweep", **{**params, "progress": False})
        done = run_worker(cfg, worker=args.worker)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"worker done in {time.time() - t0:.0f}s: {sum(done.values())} trials over {len(done)} studies", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
