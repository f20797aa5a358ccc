"""Spec F hyperparameter search: one NSGA-III study per (dataset, arch, method, seed), four objectives.

Objectives, all minimised, against the Retrained model R of the same seed:
    f1 = ⅓|RA − RA_R|, f2 = ⅓|FA − FA_R|, f3 = ⅓|VA − VA_R|, f4 = 1 − Indisc(Val MIA).
A trial that throws scores +inf on all four and the sweep goes on. A study stops at exactly N
*complete* trials, however many workers share it: each trial first checks that fewer than N
trials are ahead of it (complete or running), else it is pruned before doing any work. Workers
send heartbeats; a trial left running by a dead worker (stale heartbeat, or none at all after the
grace period, or a dead process on this host) is failed and retried with the same parameters by
whichever worker sees it next. Each trial's random draws are a function of the sampler's seed and
the trial's draw index (its place among the study's fresh trials; a retry keeps the index of the
trial it repeats), never of how long the sampler process has lived, so a study killed and resumed
ends with the same trials as an uninterrupted one. What does not depend on the trial (data, the
Original model, R's metrics) is computed once per study.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.trial import TrialState

from deepunlearn import metrics, paths
from deepunlearn.config import SweepConfig
from deepunlearn.data.loader import DeviceData
from deepunlearn.errors import UserError
from deepunlearn.experiment import Experiment, expand_methods
from deepunlearn.methods import SearchContext, final_hparams, get_method, run_method, study_cache
from deepunlearn.progress import Progress
from deepunlearn.store import atomic_write_text
from deepunlearn.trained import get_reference

optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

INF = [math.inf] * 4


def study_name(dataset: str, arch: str, method: str, seed: int, replicate: int = 0) -> str:
    """The study of one (dataset, arch, method, seed), and of one replicate of the search."""
    return f"{dataset}-{arch}-{method}-s{seed}" + (f"-r{replicate}" if replicate else "")


REPLICATE_STRIDE = 100_000  # replicate r seeds its samplers seed + r·stride: apart from any worker's offset


def storage_url(storage: str | None, sweep_dir: Path, name: str) -> str:
    """`storage` if given (e.g. postgresql://…, shared by all workers), else one SQLite file per study."""
    if storage:
        return storage
    sweep_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(sweep_dir / name).as_posix()}.db"


def e_max(training_epochs: int) -> int:
    """Spec D.1: the most unlearning epochs searched, ceil(0.2 × the Original's training epochs)."""
    return max(1, -(-training_epochs // 5))


DRAW_KEY = "deepunlearn:draw"  # trial system attribute: the index its random draws are seeded with
WORKER_KEY = "deepunlearn:worker"  # trial system attribute: [host, pid] of the process running it


def _process_gone(worker: list | None) -> bool:
    """True when `worker` ([host, pid]) names a process of this host that no longer exists."""
    if not worker or worker[0] != socket.gethostname() or worker[1] == os.getpid():
        return False
    try:
        os.kill(int(worker[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


class HeartbeatStorage(optuna.storages.RDBStorage):
    """RDBStorage whose stale trials also include RUNNING trials that never stored a heartbeat.

    Optuna starts a trial (RUNNING) a moment before its worker's first heartbeat; a worker killed in
    between leaves a trial Optuna never fails, and a study waiting for N complete trials would wait
    forever. A live worker beats within milliseconds, so no beat after the grace period means dead.
    A trial whose worker process on this host is gone is stale at once: a resumed worker need not
    wait out the grace period.
    """

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        stale = super()._get_stale_trial_ids(study_id)
        grace = datetime.timedelta(seconds=self.grace_period or 2 * (self.heartbeat_interval or 0))
        now = datetime.datetime.now()  # datetime_start is the creating worker's local clock
        for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            if t._trial_id in stale:
                continue
            silent = t.datetime_start and now - t.datetime_start > grace and self._heartbeat(t._trial_id) is None
            if silent or _process_gone(t.system_attrs.get(WORKER_KEY)):
                stale.append(t._trial_id)
        return stale

    def _heartbeat(self, trial_id: int) -> datetime.datetime | None:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        with _create_scoped_session(self.scoped_session) as session:
            row = session.query(models.TrialHeartbeatModel).filter_by(trial_id=trial_id).one_or_none()
            return None if row is None else row.heartbeat


class TrialSeededNSGAIII(optuna.samplers.NSGAIIISampler):
    """NSGA-III whose random streams are reseeded before each trial from (seed, the trial's draw index)."""

    def __init__(self, seed: int, **kwargs: Any):
        super().__init__(seed=seed, **kwargs)
        self.study_seed = seed

    def before_trial(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        draw = trial.system_attrs.get(DRAW_KEY)  # a retry carries the index of the trial it repeats
        if draw is None:
            earlier = [t.system_attrs[DRAW_KEY] for t in study.get_trials(deepcopy=False)
                       if t.number < trial.number and DRAW_KEY in t.system_attrs and t.state != TrialState.PRUNED]
            draw = max(earlier, default=-1) + 1
        storage = study._storage
        storage.set_trial_system_attr(trial._trial_id, DRAW_KEY, draw)
        storage.set_trial_system_attr(trial._trial_id, WORKER_KEY, [socket.gethostname(), os.getpid()])
        independent, relative = np.random.SeedSequence([self.study_seed, draw]).generate_state(2)
        self._random_sampler._rng.rng.seed(int(independent))
        self._rng.rng.seed(int(relative))
        super().before_trial(study, trial)


def open_study(url: str, name: str, seed: int, heartbeat: int = 60, worker: int = 0) -> optuna.Study:
    """Create or load a study: NSGA-III seeded by the model seed, 4 minimised objectives, heartbeats.

    Worker 0's sampler is seeded with the model seed exactly (spec F); worker k > 0 sharing the
    study gets seed + 1000·k, so two workers drawing for the same index at once draw differently.
    A killed trial is retried (up to 3 times) with its parameters and its draw index.
    Workers starting together race to create the schema and the study; the loser retries.
    """
    for attempt in range(5):
        try:
            storage = HeartbeatStorage(
                url, heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
                heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3),
                engine_kwargs={"pool_pre_ping": True} if url.startswith("postgresql") else None)
            return optuna.create_study(study_name=name, storage=storage, load_if_exists=True,
                                       sampler=TrialSeededNSGAIII(seed=seed + 1000 * worker),
                                       directions=["minimize"] * 4)
        except Exception:  # sqlalchemy IntegrityError / optuna DuplicatedStudyError from a concurrent create
            if attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def objectives(u: dict[str, float], r: dict[str, float]) -> list[float]:
    """Spec F objective10: (⅓|ΔRA|, ⅓|ΔFA|, ⅓|ΔVA|, 1 − Indisc(Val MIA_U))."""
    return [abs(u["ra"] - r["ra"]) / 3, abs(u["fa"] - r["fa"]) / 3, abs(u["va"] - r["va"]) / 3,
            1.0 - metrics.indiscernibility(u["val_mia"])]


def score(values: list[float]) -> float:
    """Euclidean distance to the ideal (0, 0, 0, 0): the best-trial criterion of spec F."""
    return math.sqrt(sum(v * v for v in values))


def n_complete(study: optuna.Study) -> int:
    """Trials that count towards N."""
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


@dataclass
class Objective:
    """The per-trial work of one study; everything trial-independent is passed in, computed once."""

    method: str
    original: Any  # the Original model of the study's seed (never modified)
    data: DeviceData
    r_metrics: dict[str, float]  # R's accuracies (+ Val MIA), computed once per study
    ctx: SearchContext
    n_trials: int
    retrained: Any = None  # only for `recompute_reference`: R itself
    recompute_reference: bool = False  # re-evaluate R in every trial (to measure what caching saves)
    shared: bool = True  # False: the path before bench/trial_cost.py (no per-study cache, every split evaluated)
    cache: dict = field(default_factory=dict)  # the study's `memo` values (e.g. FF's Fisher per batch size)

    def __call__(self, trial: optuna.Trial) -> list[float]:
        study = trial.study
        ahead = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
                 if t.number < trial.number]
        if len(ahead) >= self.n_trials:  # another worker got there first: do no work, count nothing
            raise optuna.TrialPruned("study already has N trials complete or running")
        spec = get_method(self.method)
        t0 = time.perf_counter()
        try:
            hp = spec.space(trial, self.ctx)
            with study_cache(self.cache if self.shared else None):
                model, seconds = run_method(self.method, self.original, self.data, hp)
            # the objective reads retain, forget and val only; the test split waits for the final runs
            u = metrics.evaluate(model, self.data, splits=metrics.SEARCH_SPLITS if self.shared else None)
            r = metrics.evaluate(self.retrained, self.data) if self.recompute_reference else self.r_metrics
            values = objectives(u, r)
            if not all(np.isfinite(values)):
                raise FloatingPointError("non-finite objective")
            trial.set_user_attr("metrics", u)
        except Exception as e:  # noqa: BLE001  spec F: an exception gives +inf objectives, and the sweep goes on
            values, seconds = INF, float("nan")
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:500])
        trial.set_user_attr("unlearn_seconds", seconds)
        trial.set_user_attr("trial_seconds", time.perf_counter() - t0)
        return values


def run_study(study: optuna.Study, objective: Objective, poll: float = 1.0,
              report: Callable[[optuna.trial.FrozenTrial], None] | None = None) -> int:
    """Work on `study` until it has N complete trials; returns how many trials this worker completed.

    `report` is called with each trial this worker completes (the progress lines).
    """
    done_here = 0
    while n_complete(study) < objective.n_trials:
        active = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)))
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        if active >= objective.n_trials and not waiting:
            # others are finishing the last trials; if one of them died, its heartbeat goes stale,
            # fail_stale_trials marks it failed and the retry callback enqueues it again
            optuna.storages.fail_stale_trials(study)
            time.sleep(poll)
            continue
        before = n_complete(study)
        study.optimize(objective, n_trials=1, catch=())
        if n_complete(study) > before:
            done_here += 1
            if report:
                report(max(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), key=lambda t: t.number))
    return done_here


def complete_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The first N complete trials with non-NaN values, in trial order."""
    trials = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
              if t.values is not None and not any(math.isnan(v) for v in t.values)]
    return sorted(trials, key=lambda t: t.number)


def best_params(studies: list[optuna.Study], method: str, n_trials: int | None = None) -> dict:
    """Spec F: the minimum-norm trial over the studies (seeds) of one method; integer and epochs HPs cast to int.

    Returns {"params", "score", "values", "study", "trial"}; `params` are the method's fields.
    """
    best = None
    for study in studies:
        for t in complete_trials(study)[:n_trials]:
            s = score(t.values)
            if best is None or s < best[0]:
                best = (s, study.study_name, t)
    if best is None:
        raise ValueError(f"No complete trial in the studies of {method!r}; run the sweep first.")
    s, name, t = best
    fixed = get_method(method).space(_Replay(t.params), SearchContext(e_max=10 ** 6))  # adds fixed values (momentum)
    return {"params": final_hparams(method, fixed), "score": s, "values": list(t.values),
            "study": name, "trial": t.number}


class _Replay:
    """A trial stand-in that answers every suggestion with a recorded value."""

    def __init__(self, params: dict):
        self.params = params

    def suggest_float(self, name, low, high, log=False):
        return self.params[name]

    def suggest_int(self, name, low, high):
        return self.params[name]

    def suggest_categorical(self, name, choices):
        return self.params[name]


def write_best(path: Path, best: dict[str, dict]) -> None:
    """Write best.yaml atomically: {method: {params, score, values, study, trial}}."""
    plain = {m: {**b, "params": {k: (v.item() if hasattr(v, "item") else v) for k, v in b["params"].items()}}
             for m, b in best.items()}
    atomic_write_text(path, yaml.safe_dump(plain, sort_keys=True))


def trials_table(study: optuna.Study):
    """One row per trial: number, state, four objectives, norm, times and parameters."""
    import pandas as pd

    rows = []
    for t in study.get_trials(deepcopy=False):
        vals = t.values or [math.nan] * 4
        rows.append({"trial": t.number, "state": t.state.name, "f_ra": vals[0], "f_fa": vals[1], "f_va": vals[2],
                     "f_mia": vals[3], "score": score(vals) if t.values else math.nan,
                     "unlearn_s": t.user_attrs.get("unlearn_seconds"), "trial_s": t.user_attrs.get("trial_seconds"),
                     "error": t.user_attrs.get("error", ""), **{f"hp.{k}": v for k, v in t.params.items()}})
    return pd.DataFrame(rows)


# --- a sweep: every study of a config, its workers, its summary ---------------------------------------

def sweep_dir(cfg: SweepConfig, exp: Experiment) -> Path:
    """Where the sweep `cfg.name` keeps this (dataset, arch)'s studies and best.yaml (beside the store)."""
    return paths.sweep_dir(cfg.store, cfg.name, exp.dataset, exp.arch)


def studies(cfg: SweepConfig, exp: Experiment) -> Iterator[tuple[str, int, str, str]]:
    """(method, seed, study name, storage URL) of every study of the sweep; a U-LiRA sweep's "seed" is its split."""
    for method in expand_methods(cfg.methods):
        for seed in (range(cfg.ulira_splits) if cfg.ulira else cfg.seeds):
            name = study_name(exp.dataset, exp.arch, f"lira-{method}" if cfg.ulira else method, seed, cfg.replicate)
            yield method, seed, name, storage_url(cfg.storage, sweep_dir(cfg, exp), name)


def lira_shadows(cfg: SweepConfig, exp: Experiment):
    """The U-LiRA shadows a `ulira` sweep searches on: split s's Original and Retrained of forget set 0 (spec G.2).

    They are the attack's own shadow models (same splits, init seed and recipe), trained once in the store.
    """
    from deepunlearn.attacks import ulira as ul

    splits = ul.make_lira_splits(ul.official_train(exp.data), max(2, cfg.ulira_splits), 1)
    return ul.Shadows(exp.store, exp.data, splits, exp.arch, cfg.ulira_seed,
                      ul.shadow_recipe(exp.recipe, cfg.ulira_epochs), progress=exp.progress)


def search_context(exp: Experiment, cfg: SweepConfig | None = None) -> SearchContext:
    """What the methods' search spaces depend on: E_max from the recipe (a U-LiRA sweep: the shadows'), the dataset."""
    epochs = cfg.ulira_epochs if cfg is not None and cfg.ulira and cfg.ulira_epochs else exp.recipe.epochs
    return SearchContext(e_max=e_max(epochs), dataset=exp.dataset)


def check_sweep(cfg: SweepConfig, exp: Experiment) -> None:
    """Stop with one sentence before any work: a space that cannot be sampled, a bad budget."""
    if cfg.n_trials < 0:  # 0 builds the references (and the studies) only
        raise UserError(f"n_trials={cfg.n_trials}; give the number of complete trials per study (0 or more).")
    if cfg.replicate < 0:
        raise UserError(f"replicate={cfg.replicate}; give 0 (the paper's seeds) or a positive replicate index.")
    if cfg.ulira and cfg.ulira_splits < 1:
        raise UserError(f"ulira_splits={cfg.ulira_splits}; a U-LiRA sweep searches splits 0..N-1, so give N ≥ 1.")
    ctx = search_context(exp, cfg)
    for method in expand_methods(cfg.methods):
        get_method(method).check_space(ctx)


@contextlib.contextmanager
def claim(path: Path, wait: bool = False) -> Iterator[bool]:
    """Hold an flock on `path` for the block (True), or False at once if another process holds it (`wait`: block).

    The kernel drops the lock of a killed worker, so a claim never outlives its holder.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def run_worker(cfg: SweepConfig, exp: Experiment, worker: int = 0, recompute_reference: bool = False,
               shared: bool = True, join: bool | None = None) -> dict[str, int]:
    """Work through every study of the sweep until each has N complete trials; {study: trials done here}.

    A worker first takes the studies no other worker holds (a claim per study), one at a time and
    drawing as worker 0 does: while there are at least as many studies as workers, a study's trials
    are those of a one-worker sweep whatever the number of workers. Then, with `join`, it helps
    finish the studies others still hold (its draws then come from its own sampler seed, see
    `open_study`); `join` None takes the config's. `shared=False` is the per-trial path before
    bench/trial_cost.py (kept for that bench).
    """
    check_sweep(cfg, exp)
    join = cfg.join if join is None else join
    ctx, data, store = search_context(exp, cfg), exp.data, exp.store
    shadows = lira_shadows(cfg, exp) if cfg.ulira else None
    todo = list(studies(cfg, exp))
    progress = Progress(len(todo) * cfg.n_trials, f"sweep {cfg.name} on {exp.label()}", exp.progress)
    done, cache = {}, {}

    def work(method: str, seed: int, name: str, url: str, as_worker: int) -> None:
        if seed not in cache:  # trial-independent work, once per seed (U-LiRA: per split) for every method
            if shadows is not None:  # val = the LiRA val set, test = the split's held-out half
                sdata = shadows.shadow_data(seed, 0)
                original, retrained = shadows.reference("original", seed, 0), shadows.reference("retrain", seed, 0)
            else:
                sdata = data
                original, _ = get_reference(store, data, exp.arch, seed, "original", exp.recipe, progress=exp.progress)
                retrained, _ = get_reference(store, data, exp.arch, seed, "retrain", exp.recipe, progress=exp.progress)
            cache[seed] = (original, retrained, metrics.evaluate(retrained, sdata), sdata)
        original, retrained, r_metrics, sdata = cache[seed]
        study = open_study(url, name, seed + REPLICATE_STRIDE * cfg.replicate, cfg.heartbeat, as_worker)
        objective = Objective(method, original, sdata, r_metrics, ctx, cfg.n_trials, retrained=retrained,
                              recompute_reference=recompute_reference, shared=shared)
        progress.skip(min(cfg.n_trials, n_complete(study)))
        label = f"{get_method(method).display} {'split' if cfg.ulira else 'seed'} {seed}"
        done[name] = done.get(name, 0) + run_study(study, objective, report=lambda t, label=label: progress.done(
            f"{label} trial {t.number} score {score(t.values):.4f} in {t.user_attrs.get('trial_seconds', 0):.1f}s"))

    held = []
    for method, seed, name, url in todo:
        with claim(sweep_dir(cfg, exp) / f"{name}.claim") as mine:
            if mine:
                work(method, seed, name, url, 0)
            else:
                held.append((method, seed, name, url))
    for method, seed, name, url in held:
        # with `join`, help finish a study still held; without, wait for its holder to end (or die), so
        # that the sweep's summary never reads a study short of N trials
        with claim(sweep_dir(cfg, exp) / f"{name}.claim", wait=not join) as mine:
            work(method, seed, name, url, 0 if mine else max(worker, 1))
    return done


def load_studies(cfg: SweepConfig, exp: Experiment) -> dict[str, list[optuna.Study]]:
    """{method: [its studies, one per seed]} from the sweep's storage."""
    out: dict[str, list] = {}
    for method, seed, name, url in studies(cfg, exp):
        out.setdefault(method, []).append(open_study(url, name, seed + REPLICATE_STRIDE * cfg.replicate, cfg.heartbeat))
    return out


def summarize(cfg: SweepConfig, exp: Experiment):
    """Best trial per method (spec F), written to best.yaml; one row per method with search cost."""
    import pandas as pd

    best, rows = {}, []
    for method, ss in load_studies(cfg, exp).items():
        b = best_params(ss, method, cfg.n_trials)
        # the budget travels with the choice, so a reader of best.yaml can say what the ranking rests on
        best[method] = {**b, "n_trials": cfg.n_trials, "seeds": list(cfg.seeds), "replicate": cfg.replicate}
        if cfg.ulira:  # searched on U-LiRA shadows, not on the model seeds
            best[method] = {**best[method], "seeds": [], "ulira_splits": cfg.ulira_splits}
        trials = pd.concat([trials_table(s) for s in ss])
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
    write_best(paths.best_file(cfg.store, cfg.name, exp.dataset, exp.arch), best)
    return pd.DataFrame(rows)
