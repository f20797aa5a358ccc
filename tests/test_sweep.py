"""Spec F search: objectives, best-trial selection, N complete trials with many workers, resume after a kill."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from deepunlearn import search as sweep
from deepunlearn.methods import SearchContext, get_method
from pg import pg_bin, postgres_server

ROOT = Path(__file__).resolve().parents[1]


def test_objectives_and_score_known_values():
    u = {"ra": 0.9, "fa": 0.8, "va": 0.7, "val_mia": 0.6}
    r = {"ra": 0.96, "fa": 0.74, "va": 0.7, "val_mia": 0.5}
    v = sweep.objectives(u, r)
    assert v == pytest.approx([0.02, 0.02, 0.0, 0.2])
    assert sweep.score(v) == pytest.approx(math.sqrt(0.02**2 * 2 + 0.2**2))


def test_best_params_is_min_norm_over_studies_with_ints_cast(tmp_path):
    studies = []
    for seed, values in [(0, [[0.1, 0.1, 0.1, 0.1], [0.05, 0.0, 0.0, 0.3]]), (1, [[0.01, 0.02, 0.0, 0.1]])]:
        s = optuna.create_study(directions=["minimize"] * 4, study_name=f"s{seed}")
        for i, v in enumerate(values):
            s.add_trial(optuna.trial.create_trial(
                params={"lr": 0.01 * (i + 1), "weight_decay": 1e-4, "batch_size": 128, "epochs": 3.0 + i},
                distributions={"lr": optuna.distributions.FloatDistribution(1e-5, 0.1, log=True),
                               "weight_decay": optuna.distributions.FloatDistribution(1e-5, 0.1, log=True),
                               "batch_size": optuna.distributions.CategoricalDistribution([64, 128, 256]),
                               "epochs": optuna.distributions.FloatDistribution(1, 10)},
                values=v))
        studies.append(s)
    best = sweep.best_params(studies, "ft")
    assert best["study"] == "s1" and best["trial"] == 0
    assert best["params"]["epochs"] == 3 and isinstance(best["params"]["epochs"], int)
    assert best["params"]["momentum"] == 0.9  # the fixed value of the search space comes back
    assert best["score"] == pytest.approx(math.sqrt(0.01**2 + 0.02**2 + 0.1**2))


def test_best_params_truncates_prmq_float_epochs_for_the_final_runs():
    # the trial ran 4.9 epochs; the reference's final runs cast every `*num_epochs` to int: 4
    dist = optuna.distributions
    study = optuna.create_study(directions=["minimize"] * 4)
    study.add_trial(optuna.trial.create_trial(
        params={"prune_amount": 0.5, "lr": 0.01, "weight_decay": 1e-4, "batch_size": 64, "epochs": 4.9},
        distributions={"prune_amount": dist.FloatDistribution(0, 1), "lr": dist.FloatDistribution(1e-5, 0.1, log=True),
                       "weight_decay": dist.FloatDistribution(1e-5, 0.1, log=True),
                       "batch_size": dist.CategoricalDistribution([64, 128, 256]),
                       "epochs": dist.FloatDistribution(1, 10)},
        values=[0.1] * 4))
    params = sweep.best_params([study], "prmq")["params"]
    assert params["epochs"] == 4 and type(params["epochs"]) is int
    assert params["prune_amount"] == 0.5 and params["momentum"] == 0.9


def test_failing_trial_scores_inf_and_sweep_goes_on(digits, originals):
    data = digits.with_splits(forget=digits.splits["forget"][:64], val=digits.splits["val"][:64])
    study = optuna.create_study(directions=["minimize"] * 4, sampler=optuna.samplers.NSGAIIISampler(seed=0))
    obj = sweep.Objective("ft", originals["tinycnn"], data, {"ra": 1, "fa": 1, "va": 1, "val_mia": 0.5},
                          SearchContext(e_max=1), n_trials=2)
    # a broken hyperparameter space: the method throws, the trial completes with +inf
    spec = get_method("ft")
    object.__setattr__(spec, "space", lambda trial, ctx: {**spec.hparams().__dict__, "batch_size": 0})
    try:
        sweep.run_study(study, obj)
    finally:
        from deepunlearn.methods.ft import ft_space
        object.__setattr__(spec, "space", ft_space)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 2 and all(t.values == [math.inf] * 4 for t in trials)
    assert "Error" in trials[0].user_attrs["error"] or "error" in trials[0].user_attrs["error"].lower()


def worker(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "deepunlearn.cli", "run", "sweep", "tiny", *args], cwd=ROOT,
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


@pytest.mark.skipif(pg_bin("initdb") is None, reason="PostgreSQL server binaries are not installed")
@pytest.mark.slow
def test_two_workers_share_one_postgres_study(tmp_path):
    n = 6  # both workers draw trials from one study; the count, uniqueness and best checks hold at any n
    with postgres_server() as url:
        sets = ["--set", f"n_trials={n}", "--set", f"store={tmp_path / 'store'}", "--set", "name=pg"]
        # build the tiny references once, so both workers start trials at the same time
        first = worker("--worker", "0", "--set", f"storage={url}", "--set", "n_trials=0", *sets[2:])
        assert first.wait(300) == 0, first.stdout.read()
        procs = [worker("--set", f"storage={url}", "--worker", str(k), *sets) for k in range(2)]
        outs = [p.communicate(timeout=600)[0] for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        study = optuna.load_study(study_name="digits-tinycnn-ft-s0", storage=url)
        complete = study.get_trials(states=(TrialState.COMPLETE,))
        evaluated = [t for t in study.get_trials() if "trial_seconds" in t.user_attrs]
        assert len(complete) == n
        assert len(evaluated) == n, "a trial was evaluated but not counted, or evaluated twice"
        assert len({tuple(sorted(t.params.items())) for t in complete}) == n
        best = sweep.best_params([study], "ft")
        by_hand = min(complete, key=lambda t: math.sqrt(sum(v * v for v in t.values)))
        assert best["trial"] == by_hand.number
        assert best["score"] == pytest.approx(math.sqrt(sum(v * v for v in by_hand.values)))
        assert best["params"]["lr"] == by_hand.params["lr"]


SLEEPER = '''
import os, time
from dataclasses import dataclass
from deepunlearn.methods import register_method
from deepunlearn.methods.ft import FTParams, finetune, ft_space

@register_method("ft_sleepy", display="FT-sleepy", hparams=FTParams, space=ft_space)
def sleepy(model, data, hp):
    if os.environ.get("DU_SLEEP"):
        time.sleep(600)  # a worker stuck in its trial, to be killed
    return finetune(model, data, hp)
'''


def wait_for_running_trial(db: Path, timeout: float = 300) -> None:
    """Block until the study in `db` has a trial in progress."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if db.exists():
            try:
                s = optuna.load_study(study_name="digits-tinycnn-ft_sleepy-s0", storage=f"sqlite:///{db}")
            except Exception:  # noqa: BLE001  the worker is still creating the schema or the study
                s = None
            if s is not None and s.get_trials(states=(TrialState.RUNNING,)):
                return
        time.sleep(0.5)
    pytest.fail("the victim worker never started a trial")


@pytest.mark.slow
def test_killed_worker_trial_is_retried_and_study_completes_to_n(tmp_path):
    plugin = tmp_path / "sleepy.py"
    plugin.write_text(SLEEPER)
    n = 3
    sets = ["--set", f"n_trials={n}", "--set", f"store={tmp_path / 'store'}", "--set", "name=kill",
            "--set", "heartbeat=1", "--set", f"plugins=[{plugin}]", "--set", "methods=[ft_sleepy]"]
    db = tmp_path / "sweeps" / "kill" / "digits-tinycnn" / "digits-tinycnn-ft_sleepy-s0.db"
    victim = worker("--worker", "0", *sets, env={"DU_SLEEP": "1"})
    try:
        wait_for_running_trial(db)
        # kill mid-trial, after the first heartbeat (interval 1 s): the stale-heartbeat path. A kill
        # before any heartbeat is the test below.
        time.sleep(2.5)
    finally:
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
    rerun = worker("--worker", "0", *sets)
    out = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, out
    s = optuna.load_study(study_name="digits-tinycnn-ft_sleepy-s0", storage=f"sqlite:///{db}")
    complete = s.get_trials(states=(TrialState.COMPLETE,))
    failed = s.get_trials(states=(TrialState.FAIL,))
    assert len(complete) == n
    assert len(failed) == 1 and failed[0].number == 0
    assert any(t.params == failed[0].params for t in complete), "the killed trial was not retried"


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_running_trial_without_any_heartbeat_is_failed_after_grace_and_retried(tmp_path):
    # study.ask() makes a RUNNING trial and starts no heartbeat: a worker killed right after it
    study = sweep.open_study(f"sqlite:///{tmp_path / 's.db'}", "orphan", seed=0, heartbeat=1)
    orphan = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)})
    alive = study.ask({"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True)})
    optuna.storages.fail_stale_trials(study)
    assert study.trials[orphan.number].state == TrialState.RUNNING, "failed before the grace period"
    time.sleep(2.5)  # grace period = 2 × heartbeat
    study._storage.record_heartbeat(alive._trial_id)  # this one's worker is alive and beating
    optuna.storages.fail_stale_trials(study)
    states = {t.number: t.state for t in study.trials}
    assert states[orphan.number] == TrialState.FAIL
    assert states[alive.number] == TrialState.RUNNING
    retried = [t for t in study.trials if t.state == TrialState.WAITING]
    assert len(retried) == 1 and retried[0].params == study.trials[orphan.number].params


@pytest.mark.parametrize("entry", [["deepunlearn.cli", "run"], ["deepunlearn.render"]])
def test_the_command_line_runs_without_runpy_warnings(entry):
    # `python -m deepunlearn.render` forwards to `deepunlearn run`; neither imports what it runs as __main__
    out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m", *entry, "--help"],
                         check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "--worker" in out.stdout, out.stderr


def test_a_method_whose_every_trial_failed_is_named_in_a_warning(tmp_path, monkeypatch):
    from deepunlearn import config
    from deepunlearn.stages import sweep as sweep_stage

    plugin = tmp_path / "boom.py"
    plugin.write_text(SLEEPER.replace('"ft_sleepy", display="FT-sleepy"', '"ft_boom", display="FT-boom"')
                      .replace("if os.environ.get", "raise ValueError('boom at lr %g' % hp.lr)\n    if os.environ.get"))
    cfg = config.load("sweep", "tiny", n_trials=2, store=str(tmp_path / "store"), name="boom",
                      plugins=[str(plugin)], methods=["ft_boom"])
    with pytest.warns(UserWarning, match=r"Every trial of ft_boom failed.*ValueError: boom at lr"):
        table = sweep_stage.run(sweep_stage.context(cfg))
    assert table.loc[0, "failed"] == 2 and table.loc[0, "best_score"] == math.inf
