"""A sweep killed at any moment and resumed ends with the trials and the best trial of an uninterrupted one."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from deepunlearn import search as sweep
from deepunlearn.config import make_config
from deepunlearn.experiment import stage_experiment
from deepunlearn.methods import base
from deepunlearn.stages import train

TRAIN = {"dataset": "digits", "arch": "tinycnn", "seeds": [0], "subset": 200, "epochs": 1, "batch_size": 64,
         "device": "cpu", "progress": False}
N = 3
METHOD = "ft_slow"
# FT, with a pause before its work in the worker processes the test kills: on tiny data a trial can
# finish between two polls, and the test must see it running. The pause changes no draw and no result.
SLOW = f'''
import os, time
from deepunlearn.methods import register_method
from deepunlearn.methods.ft import FTParams, finetune, ft_space

@register_method("{METHOD}", display="FT-slow", hparams=FTParams, space=ft_space)
def slow(model, data, hp):
    time.sleep(float(os.environ.get("DU_TRIAL_PAUSE", "0")))
    return finetune(model, data, hp)
'''


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project folder (the root of every path: $DEEPUNLEARN_ROOT): tiny train and sweep params, the
    Original and Retrained models in its store."""
    root = tmp_path_factory.mktemp("sweep-project")
    before = os.environ.get("DEEPUNLEARN_ROOT")
    os.environ["DEEPUNLEARN_ROOT"] = str(root)
    (root / "params" / "train").mkdir(parents=True)
    (root / "params" / "sweep").mkdir()
    (root / "params" / "train" / "t.yaml").write_text(yaml.safe_dump(TRAIN))
    (root / "slow.py").write_text(SLOW)
    (root / "params" / "sweep" / "t.yaml").write_text(yaml.safe_dump(
        {"profile": "t", "methods": [METHOD], "seeds": [0], "n_trials": N, "device": "cpu", "progress": False,
         "plugins": [str(root / "slow.py")], "store": str(root / "outputs" / "store")}))
    train.run(make_config("train", **{**TRAIN, "store": str(root / "outputs" / "store")}))
    yield root
    base._METHODS.pop(METHOD, None)  # the in-process runs registered it: leave the registry as it was
    if before is None:
        os.environ.pop("DEEPUNLEARN_ROOT")
    else:
        os.environ["DEEPUNLEARN_ROOT"] = before


def config(project, name: str, n_trials: int = N):
    params = yaml.safe_load((project / "params" / "sweep" / "t.yaml").read_text())
    return make_config("sweep", **{**params, "name": name, "n_trials": n_trials})


def study_of(cfg) -> optuna.Study:
    return sweep.load_studies(cfg, stage_experiment(cfg))[METHOD][0]


def outcome(cfg) -> tuple[list, dict]:
    """The complete trials' (draw index, params, values) in draw order, and the chosen trial (less its number)."""
    study = study_of(cfg)
    trials = sorted((t.system_attrs[sweep.DRAW_KEY], t.params, t.values) for t in sweep.complete_trials(study))
    best = sweep.best_params([study], METHOD, cfg.n_trials)
    return trials, {k: best[k] for k in ("params", "values", "score")}


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.fixture(scope="module")
def uninterrupted(project):
    cfg = config(project, "straight")
    sweep.run_worker(cfg, stage_experiment(cfg))
    trials, best = outcome(cfg)
    assert len({tuple(values) for _, _, values in trials}) == N  # distinct trials, so the best one means something
    return trials, best


def kill_worker_while(project, cfg, draw: int) -> None:
    """Start a sweep worker process and kill -9 it once the trial of `draw` runs with its parameters drawn."""
    worker = subprocess.Popen([sys.executable, "-m", "deepunlearn.cli", "run", "sweep", "t", "--worker", "0",
                               "--set", f"name={cfg.name}"], cwd=project, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "DU_TRIAL_PAUSE": "2"})
    db = project / "outputs" / "sweeps" / cfg.name / "digits-tinycnn" / f"{sweep.study_name('digits', 'tinycnn', METHOD, 0)}.db"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if db.exists() and any(t.state == TrialState.RUNNING and t.params
                                       and t.system_attrs.get(sweep.DRAW_KEY) == draw
                                       for t in study_of(cfg).get_trials()):
                    break
            except Exception:  # noqa: BLE001, S110  the worker is still creating the schema
                pass
            time.sleep(0.05)
        else:
            pytest.fail(f"the worker never started draw {draw}")
    finally:
        worker.kill()  # SIGKILL: no handler runs, the trial stays RUNNING
        worker.wait()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
def test_a_sweep_killed_at_three_moments_and_dead_before_drawing_resumes_to_the_uninterrupted_trials(
        project, uninterrupted, monkeypatch):
    """kill -9 during the first, second and last trial (each resumed by the next worker), then a worker
    dead right after creating a trial, before drawing: the completed trials and the best trial are the
    uninterrupted run's."""
    cfg = config(project, "killed")
    for draw in range(N):  # before any trial completed, mid-study, and with one trial to go
        kill_worker_while(project, cfg, draw)
        done = sorted(t.system_attrs[sweep.DRAW_KEY] for t in sweep.complete_trials(study_of(cfg)))
        assert done == list(range(draw)), "the resumed worker lost or repeated a completed draw"
    study = study_of(cfg)
    assert study.get_trials(states=(TrialState.RUNNING,))  # the last victim's trial is still marked running
    orphan = study.ask()  # as if another worker died right after creating its trial, before drawing anything
    study._storage.set_trial_system_attr(orphan._trial_id, sweep.WORKER_KEY, [socket.gethostname(), dead_pid()])
    sweep.run_worker(cfg, stage_experiment(cfg))  # no waiting out heartbeats: every dead process was on this host
    assert outcome(cfg) == uninterrupted
    assert study_of(cfg).get_trials(states=(TrialState.RUNNING,)) == []
