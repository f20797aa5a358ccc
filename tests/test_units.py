"""Stages as units of work: three workers finish a stage with each unit built once; a killed worker's unit is finished."""

from __future__ import annotations

import collections
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml

from deepunlearn import config, units
from deepunlearn.methods import base
from deepunlearn.stages import unlearn

TRAIN = {"dataset": "digits", "arch": "tinycnn", "seeds": [0, 1], "subset": 300, "epochs": 1, "batch_size": 64,
         "device": "cpu", "progress": False}
# FT with a pause in the worker the test kills (DU_UNIT_PAUSE), so that it is caught mid-unit
SLOW = '''
import os, time
from deepunlearn.methods import register_method
from deepunlearn.methods.ft import FTParams, finetune, ft_space

@register_method("ft_pause", display="FT-pause", hparams=FTParams, space=ft_space)
def pause(model, data, hp):
    time.sleep(float(os.environ.get("DU_UNIT_PAUSE", "0")))
    return finetune(model, data, hp)
'''


@pytest.fixture
def project(tmp_path, monkeypatch) -> Iterator[Path]:
    (tmp_path / "params" / "train").mkdir(parents=True)
    (tmp_path / "params" / "unlearn").mkdir()
    (tmp_path / "pause.py").write_text(SLOW)
    (tmp_path / "params" / "train" / "t.yaml").write_text(yaml.safe_dump(TRAIN))
    (tmp_path / "params" / "unlearn" / "u.yaml").write_text(yaml.safe_dump(
        {"profile": "t", "methods": ["ft", "ct", "ga", "ft_pause"], "plugins": [str(tmp_path / "pause.py")],
         "hparams": {"ft": {"epochs": 1}, "ct": {"epochs": 1}, "ga": {"epochs": 1}, "ft_pause": {"epochs": 1}},
         "device": "cpu", "progress": False}))
    monkeypatch.setenv("DEEPUNLEARN_ROOT", str(tmp_path))
    yield tmp_path
    base._METHODS.pop("ft_pause", None)  # the in-process tables registered it: leave the registry as it was


def worker(project: Path, store: str, k: int, log: Path, pause: float = 0) -> subprocess.Popen:
    env = {**os.environ, "DEEPUNLEARN_ROOT": str(project), "DEEPUNLEARN_BUILD_LOG": str(log),
           "DU_UNIT_PAUSE": str(pause), "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "deepunlearn.cli", "run", "unlearn", "u", "--worker", str(k),
                             "--set", f"store={store}"], cwd=project, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def builds(log: Path) -> collections.Counter:
    """How often each model artifact (reference or unlearned) was built, from the store's build log."""
    lines = [line.split()[0] for line in log.read_text().splitlines()] if log.is_file() else []
    return collections.Counter(x for x in lines if x.startswith(("model/", "unlearned/")))


def table(store: str) -> pd.DataFrame:
    """The stage's table, read from the store as the notebook renders it (times are of their run: dropped)."""
    return unlearn.run(config.load("unlearn", "u", store=store)).drop(columns="time_s")


@pytest.mark.slow
def test_three_workers_build_each_unit_once_and_the_table_equals_one_workers(project):
    one_log, many_log = project / "one.log", project / "many.log"
    single = worker(project, str(project / "one" / "store"), 0, one_log)
    assert single.wait(600) == 0, single.stdout.read()
    procs = [worker(project, str(project / "many" / "store"), k, many_log) for k in range(3)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    expected = len(units.stage_units("unlearn", config.load("unlearn", "u"))[1])
    assert expected == 4 + 8  # O and R of 2 seeds, 4 methods on 2 seeds
    counts = builds(many_log)
    assert len(counts) == expected and set(counts.values()) == {1}, counts  # every unit, each exactly once
    assert builds(one_log).keys() == counts.keys()
    holders = {line.split(" pid ")[1] for line in many_log.read_text().splitlines()}
    assert len(holders) >= 2, "one worker did all the work"
    pd.testing.assert_frame_equal(table(str(project / "many" / "store")), table(str(project / "one" / "store")))


@pytest.mark.slow
def test_a_worker_killed_mid_unit_loses_only_that_unit_and_a_rerun_completes_identically(project):
    store, log = str(project / "killed" / "store"), project / "killed.log"
    victim = worker(project, store, 0, log, pause=30)
    partial = Path(store) / ".partial" / "unlearned"
    try:
        deadline = time.time() + 300
        while not any(partial.glob("*ft_pause*")):  # it is inside the paused unit
            assert time.time() < deadline and victim.poll() is None, victim.stdout.read() if victim.stdout else ""
            time.sleep(0.2)
    finally:
        victim.kill()  # SIGKILL: no handler runs
        victim.wait()
    done_before = builds(log)
    assert not any("ft_pause" in k for k in done_before)
    rerun = worker(project, store, 1, log)
    assert rerun.wait(600) == 0, rerun.stdout.read()
    counts = builds(log)
    assert set(counts.values()) == {1} and len(counts) == 12  # the killed unit once, nothing twice
    clean = worker(project, str(project / "clean" / "store"), 0, project / "clean.log")
    assert clean.wait(600) == 0
    pd.testing.assert_frame_equal(table(store), table(str(project / "clean" / "store")))
