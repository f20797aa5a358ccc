"""Analyze stage: the results table, ranks and statistics (spec H), paper-shaped tables, figures, the HTML report."""

from __future__ import annotations

import html
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from deepunlearn import claims, config, paths, plots, ranking, report, results, scoring, search, stability
from deepunlearn.config import AnalyzeConfig
from deepunlearn.errors import UserError

STAGES = ("train", "sweep", "unlearn", "attack")  # executed notebooks whose run time the report lists
FINAL_BOOT = 1000  # seed draws for the final τ's interval (each re-ranks both tables: ~10 ms)


@dataclass
class Analysis:
    """What the analysis has produced so far; each step fills a part and records its time."""

    cfg: AnalyzeConfig
    attack_cfgs: list
    table: pd.DataFrame | None = None
    ranking: ranking.Ranking | None = None
    tables: dict[str, tuple[str, pd.DataFrame]] = field(default_factory=dict)
    figures: dict[str, tuple[str, Path]] = field(default_factory=dict)
    report: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    env: dict[str, str] | None = None  # this analysis's machine, measured once
    replicate_cfgs: list = field(default_factory=list)  # the attack configs of `replicates`
    replicate: pd.DataFrame | None = None  # the replicate search's results table
    curve: pd.DataFrame | None = None  # τ against the budget per (dataset, arch), from `sweeps`
    agreement: pd.DataFrame | None = None  # best search score vs final RetDev per (dataset, arch), from `sweeps`
    notes: list[str] = field(default_factory=list)  # why a stability measure could not be taken
    final: dict | None = None  # τ of the final rankings of this run and `replicate`, with its seed interval

    @property
    def report_dir(self) -> Path:
        return paths.resolve(self.cfg.out) / "reports" / self.cfg.name

    @property
    def figures_dir(self) -> Path:
        return paths.resolve(self.cfg.figures) if self.cfg.figures else paths.resolve(self.cfg.out) / "figures" / self.cfg.name

    def curves_path(self, entry: str) -> Path:
        """The saved figure data (losses, ROC curves) of one attack entry, beside the results table."""
        return self.report_dir / "curves" / f"{results.slug(entry)}.npz"


def check(cfg: AnalyzeConfig) -> None:
    """Stop with one sentence on a bad config, before anything is read."""
    if cfg.friedman_by not in ("seed", "pair"):
        raise UserError(f"friedman_by={cfg.friedman_by!r}; choose 'seed' or 'pair'.")
    if not 0 < cfg.level < 1 or not 0 < cfg.alpha < 1:
        raise UserError("level and alpha must lie strictly between 0 and 1.")
    if not cfg.attack:
        raise UserError("`attack` is empty; list the params/attack/<name>.yaml configs to analyse.")
    for entry in [*cfg.attack, *cfg.replicates, *cfg.sweeps]:
        results.parse_entry(entry)


def start(cfg: AnalyzeConfig) -> Analysis:
    """Check the config and resolve its attack configs (with this stage's store and progress).

    From saved results nothing is resolved: the figures then need only the files beside the table.
    """
    check(cfg)
    if cfg.from_results:
        return Analysis(cfg, [])
    over = {"store": cfg.store, "progress": cfg.progress, **({"device": cfg.device} if cfg.device else {})}
    return Analysis(cfg, [results.attack_config(n, **over) for n in cfg.attack],
                    replicate_cfgs=[results.attack_config(n, **over) for n in cfg.replicates])


def _timed(a: Analysis, step: str, t0: float) -> None:
    a.timings[f"analyze: {step}"] = time.time() - t0


def collect(a: Analysis) -> pd.DataFrame:
    """The tidy results table of every attack config (CSV and parquet) and its figures' curves, beside the report.

    The replicate search's rows (`replicates`), if any, go beside it as replicate.csv and .parquet.
    """
    t0 = time.time()
    if a.cfg.from_results:
        a.table = results.load(a.report_dir)
        a.replicate = results.load(a.report_dir, "replicate") if a.cfg.replicates else None
    else:
        a.table = results.collect(a.cfg.attack, a.attack_cfgs, a.report_dir / "curves", a.cfg.loss_seed,
                                  a.cfg.progress)
        if a.cfg.replicates:
            a.replicate = results.collect(a.cfg.replicates, a.replicate_cfgs, None, progress=a.cfg.progress)
    results.save(a.table, a.report_dir)
    if a.replicate is not None:
        results.save(a.replicate, a.report_dir, "replicate")
    _timed(a, "collect", t0)
    return a.table


def rank(a: Analysis) -> pd.DataFrame:
    """Spec H ranking with CIs, rank distributions and Friedman/Nemenyi; returns the per-method overall ranks."""
    t0 = time.time()
    a.ranking = ranking.rank(a.table, a.cfg.level, a.cfg.n_boot, a.cfg.alpha, a.cfg.friedman_by)
    a.ranking.summary.to_csv(a.report_dir / "summary.csv", index=False)
    _timed(a, "rank", t0)
    measure_stability(a)
    return a.ranking.overall


# ---------------------------------------------------------------- ranking stability (replicate searches)

@dataclass
class SweepStudies:
    """One replicate of a sweep on one (dataset, arch): its studies and the budget its best.yaml used."""

    entry: str
    replicate: int
    n_trials: int
    seeds: list[int]
    studies: dict  # method -> [optuna studies, one per seed]


def _pair_studies(entry: str, cfg: AnalyzeConfig) -> tuple[tuple[str, str], SweepStudies | str]:
    """((dataset, arch), the sweep's studies) of one `sweeps` entry, or a sentence on why they are missing.

    Only existing studies are opened: opening a missing one would create it, and the analysis writes no study.
    """
    from deepunlearn.experiment import stage_experiment

    name, dataset, arch = results.parse_entry(entry)
    pair = {k: v for k, v in (("dataset", dataset), ("arch", arch)) if v is not None}
    scfg = config.load("sweep", name, **pair, store=cfg.store, progress=False)
    exp = stage_experiment(scfg)
    where = (exp.dataset, exp.arch)
    if not search.sweep_dir(scfg, exp).is_dir():
        return where, f"sweep {entry} has no studies on {exp.label()}"
    if scfg.storage is None:
        missing = [n for _, _, n, url in search.studies(scfg, exp) if not Path(url.removeprefix("sqlite:///")).is_file()]
        if missing:
            return where, f"sweep {entry} lacks the studies {', '.join(missing)}"
    return where, SweepStudies(entry, scfg.replicate, scfg.n_trials, list(scfg.seeds),
                               search.load_studies(scfg, exp))


def _agreement(t: pd.DataFrame, ds: str, arch: str, s: SweepStudies) -> pd.DataFrame:
    """Best search score (at the sweep's own budget) vs final seed-mean RetDev, the Original as the yardstick."""
    scores = stability.budget_bests(s.studies, s.n_trials)
    ref = stability.table_search_scores(t, ds, arch, s.seeds)  # what doing nothing scores
    if "original" in ref:
        scores["original"] = ref["original"]
    retdev = {m: v for m, v in stability.pair_retdev(t, ds, arch).items() if m != "retrain"}
    return stability.agreement(scores, retdev).assign(dataset=ds, arch=arch)


def _sweep_stability(a: Analysis) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """τ against the budget and the search-vs-final agreement of every (dataset, arch) with two listed replicates."""
    by_pair: dict[tuple[str, str], list[SweepStudies]] = {}
    for entry in a.cfg.sweeps:
        where, got = _pair_studies(entry, a.cfg)
        if isinstance(got, str):
            a.notes.append(got)
        else:
            by_pair.setdefault(where, []).append(got)
    curves, agree = [], []
    for (ds, arch), reps in by_pair.items():
        if len(reps) != 2 or reps[0].replicate == reps[1].replicate:
            a.notes.append(f"{ds}/{arch}: `sweeps` needs two replicates with different `replicate` (got "
                           f"{', '.join(f'{r.entry} (replicate {r.replicate})' for r in reps)})")
            continue
        curves.append(stability.tau_curve(reps[0].studies, reps[1].studies).assign(dataset=ds, arch=arch))
        if ((a.table["dataset"] == ds) & (a.table["arch"] == arch)).any():
            agree.append(_agreement(a.table, ds, arch, reps[0]))
    return _stack(curves), _stack(agree)


def _stack(frames: list[pd.DataFrame]) -> pd.DataFrame | None:
    """The per-pair frames as one, dataset and arch first; None if there are none."""
    if not frames:
        return None
    df = pd.concat(frames, ignore_index=True)
    return df[["dataset", "arch"] + [c for c in df.columns if c not in ("dataset", "arch")]]


def measure_stability(a: Analysis) -> None:
    """From the studies of `sweeps`: τ against the budget and search score vs final RetDev, saved beside the table.

    From saved results the saved files are read back and no study is opened. (The τ of the final rankings
    needs only the two results tables: `stability_text` computes it.)
    """
    if not a.cfg.sweeps:
        return
    t0 = time.time()
    if a.cfg.from_results:
        a.curve = _load_optional(a.report_dir, "stability")
        a.agreement = _load_optional(a.report_dir, "agreement")
        notes = _load_optional(a.report_dir, "stability-notes")
        a.notes = [] if notes is None else notes["note"].tolist()
    else:
        a.curve, a.agreement = _sweep_stability(a)
        saved = (("stability", a.curve), ("agreement", a.agreement),
                 ("stability-notes", pd.DataFrame({"note": a.notes}) if a.notes else None))
        for name, df in saved:
            if df is not None:
                results.save(df, a.report_dir, name)
    _timed(a, "stability", t0)


def _load_optional(folder: Path, name: str) -> pd.DataFrame | None:
    return results.load(folder, name) if (folder / f"{name}.csv").is_file() else None


def _budget(*tables: pd.DataFrame) -> int | None:
    """The trials per study behind every searched method of the tables, if they all share one budget."""
    budgets = set()
    for t in tables:
        if "trials" in t.columns:
            budgets |= set(t.loc[~t["method"].isin(ranking.REFERENCES) & (t["trials"] > 0), "trials"].astype(int))
    return budgets.pop() if len(budgets) == 1 else None


def _trials_text(*tables: pd.DataFrame) -> str:
    """'N trials per study' when every searched method of the tables had the same budget, else ''."""
    k = _budget(*tables)
    return f"{k} trials per study" if k else ""


def _final(a: Analysis) -> dict:
    """τ of the final rankings of this run and its replicate, with its seed interval (computed once: the bootstrap)."""
    if a.final is None:
        a.final = stability.final_stability(a.table, a.replicate, n_boot=FINAL_BOOT, level=a.cfg.level)
    return a.final


def _curve_parts(a: Analysis) -> list[str]:
    """One budget sentence of the search-score τ curve per (dataset, arch), if the run has the curve."""
    if a.curve is None:
        return []
    return [f"{ds}/{arch}: {stability.budget_sentence(g.reset_index(drop=True))}"
            for (ds, arch), g in a.curve.groupby(["dataset", "arch"], sort=False)]


def _own_verdict(a: Analysis) -> str:
    """The short form of `stability_text` for the budget line: each τ against the target."""
    parts = []
    if a.replicate is not None:
        s, target = _final(a), stability.TARGET_TAU
        if not s["methods"]:
            parts.append("final-ranking τ not measured (the replicate shares no pair and method with this run)")
        else:
            lo, hi = s["ci"]
            ci = f" ({100 * s['level']:.0f}% bootstrap interval over the seeds {lo:.2f} to {hi:.2f})"
            side = "reaching" if s["tau"] >= target else "below"
            parts.append(f"final-ranking τ = {s['tau']:.2f}{'' if math.isnan(lo) else ci}, {side} the {target} target")
    parts += _curve_parts(a)
    k = _trials_text(a.table, *([a.replicate] if a.replicate is not None else []))
    return f"{' at ' + k if k else ''}: {'; '.join(parts)} (details under 'ranking stability')"


def stability_text(a: Analysis) -> str:
    """The protocol's 'ranking stability' line: τ of the final rankings and against the budget, where measured."""
    parts = []
    if a.replicate is not None:
        parts.append(stability.final_sentence(_final(a), _trials_text(a.table, a.replicate)))
    parts += _curve_parts(a)
    parts += [f"not measured: {n}" for n in a.notes]
    if not parts:
        return ("not measured: it needs a replicate search (sweep `replicate: 1`) with its own unlearn and attack "
                "runs, listed in `replicates` (Kendall's τ of the final rankings), and both sweeps in `sweeps` "
                "(τ against the search budget)")
    return "; ".join(parts)


def agreement_text(a: Analysis) -> str:
    """The protocol's 'search score vs final RetDev' line, per (dataset, arch) with a sweep listed."""
    if a.agreement is None:
        return "not measured: list this run's sweep (and a replicate) in `sweeps`"
    return " ".join(f"{ds}/{arch}: {stability.agreement_sentence(g, displays=a.ranking.displays)}"
                    for (ds, arch), g in a.agreement.groupby(["dataset", "arch"], sort=False))


def _listing(values) -> str:
    return ", ".join(str(v) for v in dict.fromkeys(values))


def _search_text(table: pd.DataFrame, displays: dict[str, str]) -> str:
    """Trials per method, grouped: '2 trials per study on seed 0: FT, NG+; default hyperparameters: SRL'."""
    if "trials" not in table.columns:
        return "not recorded in these results"
    rows = table[~table["method"].isin(ranking.REFERENCES)].drop_duplicates("method")
    parts = []
    for (trials, seeds), g in rows.groupby(["trials", "search_seeds"], sort=False):
        names = ", ".join(displays.get(m, m) for m in g["method"])
        if trials > 0:
            studies = len(str(seeds).split(","))
            parts.append(f"{int(trials)} trials per study × {studies} stud{'y' if studies == 1 else 'ies'} "
                         f"(seed {seeds}): {names}")
        elif trials < 0:
            parts.append(f"from a sweep whose config is missing (budget unknown): {names}")
        else:
            parts.append(f"no search, default or hand-set hyperparameters: {names}")
    return "; ".join(parts)


def _data_text(table: pd.DataFrame) -> str:
    cols = ["n_retain", "n_forget", "n_val", "n_test"]
    if not set(cols) <= set(table.columns):
        return "not recorded in these results"
    sizes = table.drop_duplicates(["dataset", "arch"])
    return "; ".join(f"{r.dataset}: retain {r.n_retain:,} · forget {r.n_forget:,} · val {r.n_val:,} · "
                     f"test {r.n_test:,} images" for r in sizes.itertuples())


def memorisation_text(table: pd.DataFrame) -> str:
    """How much the Original memorised its forget set, per (dataset, arch): FA(O) − FA(R) and O's Test MIA."""
    parts = []
    for (ds, arch), g in table.groupby(["dataset", "arch"], sort=False):
        o = g[g["method"] == "original"].set_index("seed")
        r = g[g["method"] == "retrain"].set_index("seed")
        seeds = o.index.intersection(r.index)
        if not len(seeds):
            continue
        gap = 100 * (o.loc[seeds, "fa"] - r.loc[seeds, "fa"])
        parts.append(f"{ds}/{arch}: forget accuracy of the Original minus the Retrained model's "
                     f"{gap.mean():.1f} points (seeds {gap.min():.1f} to {gap.max():.1f}); Test MIA of the Original "
                     f"{o.loc[seeds, 'test_mia'].mean():.3f} (seeds {o.loc[seeds, 'test_mia'].min():.3f} to "
                     f"{o.loc[seeds, 'test_mia'].max():.3f}), the Retrained model's {r.loc[seeds, 'test_mia'].mean():.3f}; "
                     f"{len(seeds)} seeds")
    return "; ".join(parts) or "no Original and Retrained rows on a common seed"


STUDY = "study"  # the analysis whose saved τ curve a run without its own stability measurement quotes


def budget_line(a: Analysis) -> str:
    """One line: can this run's search budget give a stable ranking? From its own replicates, else from the study's."""
    if a.replicate is not None or a.curve is not None:
        return f"Ranking stability, measured on this run{_own_verdict(a)}."
    k = _budget(a.table)
    here = f"{k} trials per study" if k else "this search budget"
    folder = paths.resolve(a.cfg.out) / "reports" / STUDY
    curve = _load_optional(folder, "stability")
    if a.cfg.name == STUDY or curve is None or curve.empty:
        return (f"This ranking rests on {here} and its stability is not measured: run `make study`, whose two "
                f"replicate searches measure how many trials a stable ranking needs; until then read it as an "
                f"example of the pipeline, not as a finding.")
    n = int(curve["budget"].max())
    at = curve[curve["budget"] == min(k, n)].iloc[0] if k else None
    quoted = (f"at {int(at['budget'])} trials per study the study's two replicate searches ordered the methods "
              f"with search-score τ = {at['tau']:.2f}" if at is not None else "")
    study = stability.budget_sentence(curve.reset_index(drop=True))
    if k and k > n:
        verdict = f"more than the {n} trials per study the study measured"
    elif at is not None and at["tau"] >= stability.TARGET_TAU:
        verdict = f"a budget at which the study's search-score τ reached {stability.TARGET_TAU}"
    else:
        verdict = "too small for a stable ranking"
    return (f"This ranking rests on {here}, {verdict}: {quoted + '; ' if quoted else ''}the study "
            f"(outputs/reports/{STUDY}): {study}.")


def protocol(a: Analysis) -> pd.DataFrame:
    """What the ranking rests on: data, models, seeds, search budget, machine, code, intervals, significance."""
    t, r = a.table, a.ranking
    env = a.env or {}
    seeds = {f"{d}/{ar}": sorted(g["seed"].unique().tolist()) for (d, ar), g in t.groupby(["dataset", "arch"])}
    seed_lists = {tuple(v) for v in seeds.values()}
    if len(seed_lists) == 1:
        s = list(seed_lists.pop())
        seed_text = f"{', '.join(map(str, s))} ({len(s)} seed{'s' if len(s) != 1 else ''})"
    else:
        seed_text = "; ".join(f"{p}: {', '.join(map(str, v))}" for p, v in seeds.items())
    epochs = (_listing(f"{c}: {e}" for c, e in t[["train_config", "epochs"]].drop_duplicates().itertuples(index=False))
              if "epochs" in t.columns else "not recorded in these results")
    rows = [("datasets", _listing(t["dataset"])), ("architectures", _listing(t["arch"])), ("seeds", seed_text),
            ("methods", (f"{t.loc[~t['method'].isin(ranking.REFERENCES), 'method'].nunique()} (and the Original "
                        "and Retrained references)")),
            ("hyperparameter search", _search_text(t, r.displays)), ("data per seed", _data_text(t)),
            ("epochs of Original and Retrained (train config: epochs)", epochs),
            ("machine of this analysis", (f"{env.get('device', '?')}, {env.get('cpu threads', '?')} threads, fp32 "
                                         f"matmul {env.get('fp32 matmul GFLOP/s', '?')} GFLOP/s (measured now)")),
            ("code version", f"{env.get('code version', '?')} (commit {env.get('git commit', '?')})"),
            ("intervals", ranking.interval_name(r)), ("significance", ranking.cd_sentence(r)),
            ("ranking stability", stability_text(a)), ("is this budget enough?", budget_line(a)),
            ("memorisation of the forget set", memorisation_text(t))]
    if a.agreement is not None:
        rows.append(("search score vs final RetDev", agreement_text(a)))
    return pd.DataFrame(rows, columns=["", "this run"])


def write_tables(a: Analysis) -> pd.DataFrame:
    """The paper's tables as Markdown and LaTeX in the figures folder; returns the main table."""
    t0 = time.time()
    r = a.ranking
    a.env = a.env or report.environment()
    iv = ranking.interval_name(r)
    main = (f"Main results: RetDev and indiscernibility (Test MIA), {iv}; rank per (dataset, arch) among the "
            f"non-failed methods; methods sharing a tied-group letter are within the Nemenyi critical difference")
    a.tables = {"protocol": ("Protocol: what this ranking rests on", protocol(a)),
                "main": (main, ranking.main_table(r)),
                "rte": (f"Run-time efficiency RTE = T_R / T_U and the unlearning time in seconds, {iv}",
                        ranking.rte_table(r)),
                "per-arch": ("Mean rank per architecture (over its datasets) and failures", ranking.per_arch_table(r))}
    for ds, arch in r.means[["dataset", "arch"]].drop_duplicates().itertuples(index=False, name=None):
        a.tables[f"per-dataset-{ds}-{arch}"] = (
            f"{ds} / {arch}: accuracies (%), retention ratios, RetDev, indiscernibility, Test MIA and RTE, {iv}",
            ranking.per_dataset_table(r, ds, arch))
        ul = ranking.ulira_table(r, ds, arch)
        if len(ul):
            a.tables[f"ulira-{ds}-{arch}"] = (
                (f"{ds} / {arch}: U-LiRA on the forgotten samples (one seed); the Original and Retrained rows are "
                "the references, a method should sit near the Retrained's values"), ul)
    a.tables["claims"] = (
        ("The paper's headline claims against these results. Among the best / weak: the method's possible "
         "positions (Nemenyi CD on RetDev; failed group last) against the top / bottom third. Better baseline: "
         f"two-sided Wilcoxon signed-rank on paired RetDev at α = {a.cfg.alpha}"),
        claims.verdicts(a.table, r, a.cfg.alpha))
    if a.curve is not None:
        a.tables["stability"] = (
            ("Kendall's τ and top-3 overlap between two replicate searches' method orders by best search score, "
             "per budget (the first k complete trials of every study; every budget up to 10, then every 10th)"),
            _rounded(stability.curve_rows(a.curve)))
    if a.agreement is not None:
        a.tables["search-vs-final"] = (
            ("Best search score (spec F, at the sweep's budget; the Original's from its final runs) against the final "
             "seed-mean RetDev, with their ranks; shift = RetDev rank − search rank"), _rounded(a.agreement))
    a.tables["glossary"] = ("Metrics and which direction is better", ranking.glossary_table())
    for name, (caption, df) in a.tables.items():
        report.write_table(df, a.figures_dir, name, caption)
    _timed(a, "tables", t0)
    return a.tables["main"][1]


def _rounded(df: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """Float columns as text with `digits` decimals ('–' for NaN), for the Markdown, LaTeX and HTML tables."""
    out = df.copy()
    for c in out.columns:
        if pd.api.types.is_float_dtype(out[c]):
            out[c] = [("–" if pd.isna(v) else f"{v:.{digits}f}") for v in out[c]]
    return out


def draw(a: Analysis) -> list[str]:
    """Every figure as PDF and PNG in the figures folder; returns their names."""
    t0 = time.time()
    r, folder = a.ranking, a.figures_dir
    bars = "95% bootstrap CI over seeds" if r.n_seeds >= ranking.MIN_CI_SEEDS else f"range over {r.n_seeds} seeds"
    made = {"gaps": (f"Accuracy gaps to the Retrained model (bars: {bars})", plots.accuracy_gaps(a.table, r)),
            "tradeoff": ("Indiscernibility vs run-time efficiency", plots.tradeoff(r)),
            "critical-difference": ("Critical-difference diagram (Friedman / Nemenyi on RetDev)",
                                    plots.critical_difference(r)),
            "rank-distribution": ("Rank distribution over seeds", plots.rank_distribution(r))}
    for entry in a.cfg.attack:
        losses, roc, seed, label = scoring.load_curves(a.curves_path(entry))
        name = results.slug(entry)
        made[f"mia-losses-{name}"] = (f"Forget vs test losses ({entry}, seed {seed}), each panel on its own range",
                                      plots.loss_histograms(losses, f"{label}: forget vs test losses (seed {seed})"))
        if roc:
            made[f"ulira-roc-{name}"] = (f"U-LiRA ROC ({entry})", plots.roc_figure(roc, f"U-LiRA ({label})"))
    a.figures = {name: (caption, plots.save(fig, folder, name)) for name, (caption, fig) in made.items()}
    _timed(a, "figures", t0)
    return list(a.figures)


def show(a: Analysis, name: str):
    """One saved figure, for display in the notebook."""
    from IPython.display import Image

    if name not in a.figures:
        raise UserError(f"No figure {name!r}; the figures are {', '.join(a.figures)}.")
    return Image(filename=str(a.figures[name][1]))


def stage_timings(cfg: AnalyzeConfig, attack_cfgs: list) -> dict[str, float]:
    """Run times papermill recorded in the executed notebooks of this analysis's configs."""
    names = {cfg.name, *(results.slug(e) for e in cfg.attack), *(c.profile for c in attack_cfgs),
             *(c.best for c in attack_cfgs if c.best)}
    out = {}
    for stage in STAGES:
        for name in sorted(names):
            path = paths.resolve(cfg.nb) / stage / f"{name}.ipynb"
            if path.is_file():
                meta = json.loads(path.read_text()).get("metadata", {}).get("papermill", {})
                if meta.get("duration") is not None:
                    out[f"{stage}: {name}"] = float(meta["duration"])
    return out


def summary_html(a: Analysis) -> str:
    """The report's opening paragraph: what was analysed, the leaders, the failed group, the Friedman test."""
    r, t = a.ranking, a.table
    over = r.overall
    ranked = [r.displays.get(m, m) for m in over.loc[~over["failed_group"], "method"]]
    failed = [r.displays.get(m, m) for m in over.loc[over["failed_group"], "method"]]
    pairs = ", ".join(f"{d}/{ar}" for d, ar in t[["dataset", "arch"]].drop_duplicates().itertuples(index=False))
    f = r.friedman
    fr = (f"Friedman test on RetDev of the {f.k} methods outside the failed group over {f.n} blocks: "
          f"χ² = {f.statistic:.1f}, p = {f.pvalue:.2g}. " if np.isfinite(f.cd) else "") + ranking.cd_sentence(r)
    speed = ranking.speed_flags(t)
    return (f"<p>{len(over)} method{'s' if len(over) != 1 else ''} on {pairs}, seeds {sorted(t['seed'].unique().tolist())}. "
            f"A method fails on a (dataset, arch) if its seed-mean RTE ≤ 1, its RetDev ≥ the Original's, or its "
            f"indiscernibility ≤ the Original's; the others are ranked by RetDev (ties: indiscernibility, RTE) and "
            f"the ranks averaged over pairs.</p><p><b>Ranked, best first:</b> {html.escape(', '.join(ranked) or 'none')}."
            f"</p><p><b>Failed group:</b> {html.escape(', '.join(failed) or 'none')}.</p><p>{html.escape(fr)}</p>"
            f"<p><b>Run times:</b> beside each time the machine's fp32 matmul speed was measured just before and after "
            f"it; a run timed on a loaded machine was run again and its fastest time kept (the RTE table also gives "
            f"the raw wall-clock ratio). "
            f"{html.escape(speed)}</p>")


def write_report(a: Analysis) -> Path:
    """The self-contained HTML report at <out>/reports/<name>/index.html."""
    timings = {**stage_timings(a.cfg, a.attack_cfgs), **a.timings}
    config = {"analyze": asdict(a.cfg), "attack": {n: asdict(c) for n, c in zip(a.cfg.attack, a.attack_cfgs)}}
    a.env = a.env or report.environment()
    tables = dict(a.tables)
    caption, proto = tables.pop("protocol", None) or ("Protocol", protocol(a))  # opens the report
    line = budget_line(a)
    intro = (f"<p><b>{html.escape(line)}</b></p><h2>{html.escape(caption)}</h2>{report.table_html(proto)}"
             f"<h2>Summary</h2>{summary_html(a)}")
    print(line, flush=True)  # the one line a batch run shows in the terminal
    print(f"memorisation: {memorisation_text(a.table)}", flush=True)
    a.report = report.write_report(a.report_dir / "index.html", f"Deep Unlearn: {a.cfg.name}", intro, tables,
                                   a.figures, config, timings, a.env)
    return a.report


def run(cfg: AnalyzeConfig) -> Analysis:
    """Every step: collect, rank, tables, figures, report."""
    a = start(cfg)
    collect(a)
    rank(a)
    write_tables(a)
    draw(a)
    write_report(a)
    return a
