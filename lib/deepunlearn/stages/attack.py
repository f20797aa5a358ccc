"""Attack stage: every spec E metric per (dataset, arch, method, seed); U-LiRA (spec G) on shadow models."""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from deepunlearn.attacks import ulira as ul
from deepunlearn.data.loader import DeviceData
from deepunlearn.errors import UserError
from deepunlearn.methods import get_method, load_plugins
from deepunlearn.metrics import evaluate, model_distances, run_speed, versus_retrain
from deepunlearn.references import get_reference, reference_params
from deepunlearn.stages import make_config, read_params, register_config, unlearn
from deepunlearn.stages.train import TrainConfig, load_data, recipe_of
from deepunlearn.store import Store, read_json, write_json
from deepunlearn.training import Recipe

VERSION = 2  # bump when a stored row changes meaning (2: the probes' GFLOP/s and the speed-normalised RTE)
COLUMNS = ("dataset", "arch", "method", "display", "seed", "ra", "fa", "va", "ta", "val_mia", "test_mia",
           "indisc", "val_indisc", "rr", "fr", "tr", "retdev", "rte", "rte_speed", "unlearn_s", "retrain_s",
           "unlearn_gflops", "retrain_gflops", "speed_gap", "sape_ra",
           "sape_fa", "sape_ta", "dist_norm", "dist_l2", "dist_scaled", "hp")  # table order; U-LiRA last
ULIRA_COLUMNS = ("auc", "tpr_at_1pct_fpr", "tpr_at_01pct_fpr", "balanced_acc", "mean_score")


@register_config("attack")
@dataclass
class AttackConfig:
    """Parameters of notebooks/attack.py."""

    train: str = "demo"  # params/train/<train>.yaml: the data and recipe of the Original/Retrained models
    methods: list[str] = field(default_factory=lambda: ["ft"])  # method ids, or ["all"]; O and R always added
    plugins: list[str] = field(default_factory=list)  # .py files (or modules) defining your own methods
    hparams: dict = field(default_factory=dict)  # {method: {hyperparameter: value}}; missing: defaults
    best: str | None = None  # sweep config whose outputs/sweeps/<best>/best.yaml gives the hyperparameters
    seeds: list[int] | None = None  # None: the train config's seeds
    ulira: bool = False  # also run U-LiRA
    ulira_methods: list[str] | None = None  # methods U-LiRA attacks (None: `methods`); O and R always
    ulira_splits: int = 8  # shadow train/held-out splits (the paper: 64)
    ulira_forget_sets: int = 2  # forget sets per split (the paper: 10)
    ulira_seed: int = 0  # initialisation seed of every shadow (the paper: 0); its rows get the U-LiRA columns
    ulira_epochs: int | None = None  # shadow O/R epochs (None: the recipe's; the paper: 91 on CIFAR-10)
    ulira_statistic: str = "logit"  # "logit" (logit-scaled confidence) or "correct" (the reference's 0/1)
    ulira_share_original: bool = True  # one Original per split (False: per (split, forget set), the paper)
    device: str = "auto"
    store: str = "outputs/store"
    progress: bool = True


@dataclass
class Context:
    """What every part of the stage needs, resolved once from the config."""

    cfg: AttackConfig
    tcfg: TrainConfig
    data: DeviceData
    store: Store
    recipe: Recipe
    methods: list[str]
    hparams: dict[str, dict]
    seeds: list[int]


def check(cfg: AttackConfig) -> None:
    """Stop with one sentence on a bad config, before anything is loaded or computed."""
    load_plugins(cfg.plugins)
    tcfg = unlearn.load_train_config(cfg.train)
    for m in unlearn.expand_methods(cfg.methods) + unlearn.expand_methods(cfg.ulira_methods or []):
        if get_method(m).reference:
            raise UserError(f"{m!r} is a reference model; Original and Retrained rows are always included, "
                            f"so drop it from `methods`.")
    for m, hp in cfg.hparams.items():
        get_method(m).make_hp(**hp)
    seeds = cfg.seeds if cfg.seeds is not None else tcfg.seeds
    if cfg.ulira and cfg.ulira_seed not in seeds:
        raise UserError(f"ulira_seed={cfg.ulira_seed} is not among the seeds {seeds}; add it to `seeds`.")
    if cfg.ulira_statistic not in ul.STATISTICS:
        raise UserError(f"ulira_statistic={cfg.ulira_statistic!r}; choose one of {', '.join(ul.STATISTICS)}.")


def context(cfg: AttackConfig) -> Context:
    """Check the config, then load the train config's data and recipe and the methods' hyperparameters."""
    check(cfg)
    tcfg = unlearn.load_train_config(cfg.train, device=cfg.device, store=cfg.store, progress=cfg.progress)
    hparams = {**unlearn.best_hparams(cfg.best), **cfg.hparams}
    for m, hp in hparams.items():
        get_method(m).make_hp(**hp)
    seeds = list(cfg.seeds if cfg.seeds is not None else tcfg.seeds)
    methods = unlearn.expand_methods(cfg.methods)
    return Context(cfg, tcfg, load_data(tcfg), Store(cfg.store), recipe_of(tcfg), methods, hparams, seeds)


def _reference_row(ctx: Context, seed: int) -> tuple[dict, Path]:
    """Metrics of the Retrained model of `seed` (cached); also the folder holding its losses."""
    params = {"model": reference_params(ctx.data, ctx.tcfg.arch, seed, "retrain", ctx.recipe),
              "version": VERSION}

    def build(work: Path) -> None:
        model, meta = get_reference(ctx.store, ctx.data, ctx.tcfg.arch, seed, "retrain", ctx.recipe,
                                    progress=ctx.cfg.progress)
        row, losses = evaluate(model, ctx.data, return_losses=True)
        np.savez(work / "losses.npz", **losses)
        write_json(work / "row.json", {**row, "train_s": meta["time"], "train_gflops": run_speed(meta.get("gflops"))})

    path = ctx.store.get_or_compute("attack-metrics", params, build,
                                    label=f"{ctx.data.info.name}-{ctx.tcfg.arch}-retrain-s{seed}")
    return read_json(path / "row.json"), path


def method_row(ctx: Context, seed: int, method: str) -> tuple[dict, dict[str, np.ndarray]]:
    """One tidy row (every spec E metric) and the per-sample losses of `method` on `seed` (cached).

    The unlearned model is the unlearn stage's (`get_unlearned`): made once, whichever stage asks first.
    """
    data, arch, recipe = ctx.data, ctx.tcfg.arch, ctx.recipe
    r_row, r_path = _reference_row(ctx, seed)
    base = {"dataset": data.info.name, "arch": arch, "method": method, "display": get_method(method).display,
            "seed": seed}
    if method == "retrain":
        g = r_row.get("train_gflops", math.nan)
        row = {**r_row, **versus_retrain(r_row, r_row, r_row["train_s"], r_row["train_s"], g, g),
               "unlearn_s": r_row["train_s"], "dist_norm": 0.0, "dist_l2": 0.0, "dist_scaled": 0.0, "hp": {}}
        path = r_path
    else:
        hp = {} if method == "original" else asdict(get_method(method).make_hp(**ctx.hparams.get(method, {})))
        if method == "original":
            model_key = reference_params(data, arch, seed, "original", recipe)
        else:
            hp_obj = get_method(method).make_hp(**hp)
            model_key = unlearn.unlearned_params(data, arch, seed, recipe, method, hp_obj)
        params = {"model": model_key, "retrain": reference_params(data, arch, seed, "retrain", recipe),
                  "version": VERSION}

        def build(work: Path) -> None:
            store, show = ctx.store, ctx.cfg.progress
            model, meta = unlearn.get_unlearned(store, data, arch, seed, recipe, method, hp, progress=show)
            retrained, _ = get_reference(store, data, arch, seed, "retrain", recipe, progress=show)
            seconds = math.nan if method == "original" else meta["time"]  # O unlearns nothing: no RTE
            row, losses = evaluate(model, data, return_losses=True)
            np.savez(work / "losses.npz", **losses)
            g_u = math.nan if method == "original" else run_speed(meta.get("gflops"))
            speeds = (g_u, r_row.get("train_gflops", math.nan))
            write_json(work / "row.json", {**row, **versus_retrain(row, r_row, seconds, r_row["train_s"], *speeds),
                                           **model_distances(retrained, model), "unlearn_s": seconds,
                                           "hp": hp})

        path = ctx.store.get_or_compute("attack-metrics", params, build,
                                        label=f"{data.info.name}-{arch}-{method}-s{seed}")
        row = read_json(path / "row.json")
    row = {**base, **row, "retrain_s": r_row["train_s"]}
    row.pop("train_s", None)
    row.pop("train_gflops", None)
    row["hp"] = json.dumps(row["hp"], sort_keys=True)
    return row, dict(np.load(path / "losses.npz"))


def ulira_results(cfg: AttackConfig, ctx: Context | None = None) -> dict[str, ul.UliraResult]:
    """U-LiRA of the Original, the Retrained model and every U-LiRA method (cached in the store)."""
    ctx = ctx or context(cfg)
    recipe = ctx.recipe
    if cfg.ulira_epochs:
        recipe = Recipe(**{**asdict(recipe), "epochs": cfg.ulira_epochs})
    splits = ul.make_lira_splits(ul.official_train(ctx.data), cfg.ulira_splits, cfg.ulira_forget_sets)
    shadows = ul.Shadows(ctx.store, ctx.data, splits, ctx.tcfg.arch, cfg.ulira_seed, recipe,
                         cfg.ulira_share_original, cfg.progress)
    targets = unlearn.expand_methods(cfg.ulira_methods) if cfg.ulira_methods is not None else ctx.methods
    return {t: ul.attack(shadows, t, ctx.hparams.get(t), statistic=cfg.ulira_statistic)
            for t in [*ul.REFERENCES, *targets]}


def search_budget(cfg: AttackConfig, methods: list[str]) -> dict[str, tuple[int, str]]:
    """Per method: (trials per study, the studies' seeds) of the sweep its hyperparameters come from; (0, "") if none."""
    out = {m: (0, "") for m in methods}
    if not cfg.best:
        return out
    path = Path("params") / "sweep" / f"{cfg.best}.yaml"
    if not path.is_file():  # best.yaml without its config: the budget is unknown, not zero
        return {m: (-1, "") for m in methods}
    sweep = make_config("sweep", **read_params(path))
    searched = set(unlearn.expand_methods(sweep.methods))
    for m in methods:
        if m in searched and m not in cfg.hparams:  # hand-set hyperparameters override the sweep's
            out[m] = (sweep.n_trials, ",".join(str(s) for s in sweep.seeds))
    return out


def protocol_columns(ctx: Context) -> dict:
    """What every row of this config rests on: split sizes, epochs, the train config (for the report's protocol)."""
    return {"train_config": ctx.cfg.train, "epochs": ctx.recipe.epochs,
            **{f"n_{k}": ctx.data.size(k) for k in ("retain", "forget", "val", "test")}}


def run(cfg: AttackConfig) -> pd.DataFrame:
    """The tidy results table: one row per (dataset, arch, method, seed), every metric; U-LiRA on its seed."""
    ctx = context(cfg)
    rows = [method_row(ctx, seed, m)[0] for seed in ctx.seeds for m in ["original", "retrain", *ctx.methods]]
    budget = search_budget(cfg, ctx.methods)
    for row in rows:
        row.update(protocol_columns(ctx))
        row["trials"], row["search_seeds"] = budget.get(row["method"], (0, ""))
    table = pd.DataFrame(rows)
    first = [c for c in COLUMNS if c in table.columns]
    table = table[first + [c for c in table.columns if c not in first]]
    if cfg.ulira:
        for target, res in ulira_results(cfg, ctx).items():
            at = (table["method"] == target) & (table["seed"] == cfg.ulira_seed)
            for k in ULIRA_COLUMNS:
                table.loc[at, f"ulira_{k}"] = res.summary[k]
    return table


def losses(cfg: AttackConfig, seed: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Per-sample losses of each model of `seed` (default: the first): method -> split -> losses."""
    ctx = context(cfg)
    seed = ctx.seeds[0] if seed is None else seed
    return {m: method_row(ctx, seed, m)[1] for m in ["original", "retrain", *ctx.methods]}


def loss_histograms(per_model: dict[str, dict[str, np.ndarray]], title: str, lo_q: float = 0.01,
                    hi_q: float = 0.99):
    """Forget vs test loss histograms, one panel per model on its own range (log when it spans a decade).

    One method's exploding losses (FF reaches 1e33) would flatten every other panel on a shared axis;
    a panel spanning more than six decades is cut to its `lo_q`..`hi_q` quantiles, the losses outside
    piled into its edge bins and their share given in its title.
    """
    import matplotlib.pyplot as plt

    n = len(per_model)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.7 * rows), squeeze=False)
    floor = 1e-7  # losses of perfectly fitted samples underflow to 0; clip them onto the log axis
    for ax, (m, ls) in zip(axes.flat, per_model.items()):
        both = np.clip(np.concatenate([ls["forget"], ls["test"]]), floor, None)
        both = both[np.isfinite(both)]
        if len(both) == 0:
            ax.set_title(f"{_display(m)}: no finite loss", fontsize=9)
            continue
        lo, hi = both.min(), both.max()
        if hi / lo > 1e6:  # many decades: a few extreme losses would squeeze the bulk into a few bins
            lo, hi = np.quantile(both, [lo_q, hi_q])
        hi = max(hi, lo * 1.01)  # identical losses still get a bar
        log = hi / lo > 10  # under a decade a linear axis reads better (and has readable ticks)
        bins = np.logspace(np.log10(lo), np.log10(hi), 30) if log else np.linspace(lo, hi, 30)
        outside = 0
        for split, color in (("forget", "C3"), ("test", "C0")):
            x = np.clip(ls[split], floor, None)
            x = np.where(np.isfinite(x), x, hi)
            outside += int(((x < lo) | (x > hi)).sum())
            # fractions, not densities: the bins may be log-spaced
            ax.hist(np.clip(x, lo, hi), bins=bins, weights=np.full(len(x), 1 / len(x)), alpha=0.5, color=color,
                    label=split)
        if log:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(plt.NullFormatter())  # minor labels collide on a short log axis
        share = outside / (len(ls["forget"]) + len(ls["test"]))
        ax.set_title(_display(m) + (f" ({100 * share:.1f}% outside, at the edges)" if outside else ""), fontsize=9)
        ax.set(xlabel="cross-entropy (this panel's range)", ylabel="fraction of the split")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    plt.close(fig)  # the notebook shows the returned figure; closing stops the backend from showing it twice
    return fig


def _display(method: str) -> str:
    try:
        return get_method(method).display
    except UserError:  # a plugin method that is not loaded in this process (the figures from saved results)
        return method


def plot_loss_histograms(cfg: AttackConfig, seed: int | None = None):
    """Forget vs test loss histograms per model: what the population MIA sees (from the store)."""
    seed = seed if seed is not None else (cfg.seeds or unlearn.load_train_config(cfg.train).seeds)[0]
    return loss_histograms(losses(cfg, seed), f"{cfg.train}: forget vs test losses (seed {seed})")


def roc_curves(cfg: AttackConfig) -> dict[str, dict[str, np.ndarray]]:
    """U-LiRA ROC curve and AUC per target: {target: {"fpr", "tpr", "auc"}} (empty if U-LiRA is off)."""
    if not cfg.ulira:
        return {}
    return {t: {"fpr": res.fpr, "tpr": res.tpr, "auc": np.float64(res.summary["auc"])}
            for t, res in ulira_results(cfg).items()}


def roc_figure(curves: dict[str, dict[str, np.ndarray]], title: str):
    """U-LiRA ROC curves on log-log axes, the Original and Retrained as references."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    for i, (t, c) in enumerate(curves.items()):
        style = {"original": "k--", "retrain": "k:"}.get(t, f"C{i}-")
        ax.plot(np.maximum(c["fpr"], 1e-5), np.maximum(c["tpr"], 1e-5), style,
                label=f"{_display(t)} (AUC {float(c['auc']):.3f})")
    ax.plot([1e-5, 1], [1e-5, 1], color="0.7", lw=0.8)
    ax.set(xscale="log", yscale="log", xlim=(1e-4, 1), ylim=(1e-4, 1), xlabel="false positive rate",
           ylabel="true positive rate", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)  # the notebook shows the returned figure; closing stops the backend from showing it twice
    return fig


def plot_roc(cfg: AttackConfig):
    """U-LiRA ROC curves of the config (None if U-LiRA is off)."""
    return roc_figure(roc_curves(cfg), f"U-LiRA ({cfg.train})") if cfg.ulira else None


def main(argv: list[str] | None = None) -> int:
    """`python -m deepunlearn.stages.attack params/attack/demo.yaml`: run the stage and print its table."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("params", help="a params/attack/*.yaml file")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one parameter, the value read as YAML (e.g. --set 'methods=[ft]')")
    p.add_argument("--columns", default="method,seed,ra,fa,ta,val_mia,test_mia,indisc,retdev,rte",
                   help="comma-separated columns to print ('all' for every column)")
    args = p.parse_args(argv)
    try:
        table = run(make_config("attack", **read_params(args.params, args.set)))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cols = list(table.columns) if args.columns == "all" else [
        c for c in args.columns.split(",") + [f"ulira_{k}" for k in ULIRA_COLUMNS] if c in table.columns]
    with pd.option_context("display.width", 200, "display.max_columns", 50):
        print(table[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
