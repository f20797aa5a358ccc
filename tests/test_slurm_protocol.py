"""The tiny protocol through exactly the path a cluster user takes: `deepunlearn launch` → submitit → sbatch arrays.

A real single-node Slurm (controller and node daemon on 127.0.0.1, from Debian's slurm-wlm and munge,
started by deepunlearn.localslurm and stopped at the end) runs the train, unlearn and attack stages of
a tiny protocol as job arrays of two workers each; the results table equals a single-process run's.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

from deepunlearn import cli, config, localslurm
from deepunlearn.stages import attack

TRAIN = {"dataset": "digits", "arch": "tinycnn", "seeds": [0, 1], "subset": 300, "epochs": 1, "batch_size": 64,
         "device": "cpu", "progress": False}
ATTACK = {"profile": "t", "methods": ["ft", "ct"], "hparams": {"ft": {"epochs": 1}, "ct": {"epochs": 1}},
          "ulira": True, "ulira_splits": 2, "ulira_forget_sets": 1, "ulira_epochs": 1, "ulira_methods": ["ft"],
          "device": "cpu", "progress": False}


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    for stage, name, params in (("train", "t", TRAIN), ("unlearn", "u", {k: ATTACK[k] for k in
                                                                        ("profile", "methods", "hparams", "device")}),
                                ("attack", "a", ATTACK),
                                ("launch", "s", {"executor": "slurm", "workers": 2, "cpus_per_task": 1,
                                                 "timeout_min": 10, "render": False})):
        (tmp_path / "params" / stage).mkdir(parents=True, exist_ok=True)
        (tmp_path / "params" / stage / f"{name}.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setenv("DEEPUNLEARN_ROOT", str(tmp_path))
    return tmp_path


@pytest.mark.slow
def test_the_tiny_protocol_on_a_real_slurm_equals_one_process(project, monkeypatch, capsys):
    state = Path(tempfile.mkdtemp(prefix="du-slurm-", dir="/tmp"))  # short: munge's socket path has a limit
    store = project / "slurm" / "store"
    try:
        with localslurm.running(state) as cluster:
            monkeypatch.setenv("SLURM_CONF", str(cluster.conf))  # what sbatch, squeue and the jobs read
            for stage, name in (("train", "t"), ("unlearn", "u"), ("attack", "a")):
                assert cli.main(["launch", stage, name, "--with", "s", "--set", f"store={store}"]) == 0
            out = capsys.readouterr().out
    finally:
        shutil.rmtree(state, ignore_errors=True)
    print(out)
    lines = [line for line in out.splitlines() if line.strip().startswith("job ")]
    assert len(lines) == 6 and all(line.endswith("COMPLETED") for line in lines), out
    assert all("_" in line.split()[1] for line in lines)  # array tasks: <array id>_<index>
    assert not any(localslurm.alive(cluster).values())  # everything it started is stopped
    # the run times and what is computed from them are of their run; every other column must match
    drop = ["unlearn_s", "retrain_s", "rte", "rte_wall", "unlearn_wall_s", "retrain_wall_s", "unlearn_tries",
            "retrain_tries", "unlearn_gflops", "retrain_gflops", "speed_gap"]
    on_slurm = attack.run(attack.context(config.load("attack", "a", store=str(store)))).drop(columns=drop, errors="ignore")
    alone = attack.run(attack.context(config.load("attack", "a", store=str(project / "one" / "store"))))
    assert on_slurm.equals(alone.drop(columns=drop, errors="ignore"))  # every metric, U-LiRA included, but the run times
