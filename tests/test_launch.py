"""The launcher: command lines as one job array, as local processes and through a real single-node Slurm."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from deepunlearn import localslurm
from deepunlearn.errors import UserError
from deepunlearn.launch import Resources, launch, wait, worker_gpus
from deepunlearn.launch import _expand_ids as expand_ids


def writers(n: int) -> list[list[str]]:
    """n commands; command i writes its index and its array task id (if any) to out_<i>.txt in the cwd."""
    return [["sh", "-c", f"echo {i} ${{SLURM_ARRAY_TASK_ID:-none}} > out_{i}.txt"] for i in range(n)]


def test_local_array_runs_every_command_with_one_log_each(tmp_path):
    jobs = launch(writers(3), executor="local", log_dir=tmp_path / "logs", cwd=tmp_path, name="t")
    results = wait(jobs, poll_s=0.2, timeout_s=60)
    print("local:", results)
    assert [r.job_id for r in results] == [j.job_id for j in jobs]
    assert [(r.state, r.returncode) for r in results] == [("COMPLETED", 0)] * 3
    assert [(tmp_path / f"out_{i}.txt").read_text().split()[0] for i in range(3)] == ["0", "1", "2"]
    logs = sorted((tmp_path / "logs").glob("*_log.*"))
    assert logs == sorted(j.log for j in jobs)  # one log per job (stderr goes to the same file)
    assert all(f"+ cd {tmp_path}" in j.log.read_text() for j in jobs)


def test_failed_command_reports_its_exit_status_and_log(tmp_path):
    cmds = [["sh", "-c", "echo fine"], ["sh", "-c", "echo about to fail >&2; exit 3"]]
    jobs = launch(cmds, log_dir=tmp_path, cwd=tmp_path, env={"DU_TEST": "x"})
    ok, bad = wait(jobs, poll_s=0.2, timeout_s=60)
    print("local:", ok, bad)
    assert (ok.state, ok.returncode) == ("COMPLETED", 0)
    assert (bad.state, bad.returncode) == ("FAILED", 3)
    log = jobs[1].log.read_text()
    assert "about to fail" in log and "exit status 3" in log


def test_env_is_added_to_the_job_environment(tmp_path):
    jobs = launch([["sh", "-c", 'echo "$DU_TEST $HOME" > env.txt']], log_dir=tmp_path / "l", cwd=tmp_path,
                  env={"DU_TEST": "x"})
    assert wait(jobs, poll_s=0.2, timeout_s=60)[0].state == "COMPLETED"
    value, home = (tmp_path / "env.txt").read_text().split()
    assert value == "x" and home  # the job's own variables stay


def test_local_workers_get_one_gpu_each(tmp_path, monkeypatch):
    assert [worker_gpus(i, 1, ["0", "1", "2", "3"]) for i in range(5)] == ["0", "1", "2", "3", "0"]
    assert [worker_gpus(i, 2, ["0", "1", "2", "3"]) for i in range(3)] == ["0,1", "2,3", "0,1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")  # the machine's GPUs as CUDA sees them
    cmds = [["sh", "-c", f'echo "$CUDA_VISIBLE_DEVICES" > gpu_{i}.txt'] for i in range(3)]
    jobs = launch(cmds, resources=Resources(gpus_per_node=1), log_dir=tmp_path / "l", cwd=tmp_path)
    assert all(r.state == "COMPLETED" for r in wait(jobs, poll_s=0.2, timeout_s=60))
    assert [(tmp_path / f"gpu_{i}.txt").read_text().strip() for i in range(3)] == ["4", "6", "4"]


def test_bad_input_is_one_sentence(tmp_path, monkeypatch):
    with pytest.raises(UserError, match="unknown executor 'slurmm'"):
        launch(writers(1), executor="slurmm", log_dir=tmp_path, cwd=tmp_path)
    with pytest.raises(UserError, match="list of argv strings"):
        launch(["echo hi"], log_dir=tmp_path, cwd=tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no sbatch, no Slurm
    with pytest.raises(UserError, match="needs Slurm's sbatch"):
        launch(writers(1), executor="slurm", log_dir=tmp_path, cwd=tmp_path)
    assert localslurm.main(["start", "--dir", str(tmp_path / "c")]) == 2  # prints how to install Slurm
    assert not (tmp_path / "c").exists()


def test_array_ids_from_sacct_are_expanded():
    assert expand_ids("12_[0-2,5%4]") == ["12_0", "12_1", "12_2", "12_5"]
    assert expand_ids("12_3") == ["12_3"] and expand_ids("12") == ["12"]


@pytest.fixture
def state_dir():
    """A short path (munge's socket path is limited to 108 bytes), removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="du-slurm-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.slow
def test_slurm_array_through_sbatch(state_dir, tmp_path, monkeypatch):
    """A 3-task array through sbatch on a real single-node Slurm (needs `apt-get install slurm-wlm munge`)."""
    t0 = time.monotonic()
    with localslurm.running(state_dir) as cluster:
        started = time.monotonic() - t0
        monkeypatch.setenv("SLURM_CONF", str(cluster.conf))  # what sbatch, squeue and the jobs read
        jobs = launch(writers(3), executor="slurm", resources=Resources(timeout_min=5), log_dir=tmp_path / "logs",
                      cwd=tmp_path, name="du-test")
        results = wait(jobs, poll_s=0.5, timeout_s=120)
        ran = time.monotonic() - t0 - started
        failing = launch([["sh", "-c", "exit 3"]], executor="slurm", log_dir=tmp_path / "logs", cwd=tmp_path)
        failed = wait(failing, poll_s=0.5, timeout_s=120)[0]  # a lone command: a plain job, not an array
        for r in results + [failed]:
            print(f"slurm job {r.job_id}: {r.state} rc={r.returncode}")
    print(f"slurm: cluster up in {started:.1f} s, array done in {ran:.1f} s, "
          f"all in {time.monotonic() - t0:.1f} s")
    array = jobs[0].job_id.split("_")[0]
    assert [r.job_id for r in results] == [f"{array}_{i}" for i in range(3)]
    assert [(r.state, r.returncode) for r in results] == [("COMPLETED", 0)] * 3
    assert [(tmp_path / f"out_{i}.txt").read_text().split() for i in range(3)] == [[str(i), str(i)] for i in range(3)]
    assert all(j.log.exists() for j in jobs) and len(list((tmp_path / "logs").glob("*_log.*"))) == 4
    assert (failed.state, failed.returncode) == ("FAILED", 3) and "_" not in failed.job_id
    assert "exit status 3" in failing[0].log.read_text()
    assert not any(localslurm.alive(cluster).values())  # stop ended every daemon it started


@pytest.mark.slow
def test_local_slurm_command_line(state_dir):
    """start in one process, status and stop in another, as a user (or .ci/run) would call them."""
    start = [sys.executable, "-m", "deepunlearn.localslurm", "start", "--dir", str(state_dir)]
    try:
        out = subprocess.run(start, check=False, capture_output=True, text=True, timeout=120)
        print(out.stdout, out.stderr)
        assert out.returncode == 0 and f"export SLURM_CONF={state_dir / 'slurm.conf'}" in out.stdout
        assert "node: idle" in localslurm.status(localslurm.load(state_dir))
    finally:
        if (state_dir / "cluster.json").exists():
            cluster = localslurm.load(state_dir)
            assert localslurm.main(["stop", "--dir", str(state_dir)]) == 0
            assert not any(localslurm.alive(cluster).values())
    assert localslurm.main(["status", "--dir", str(state_dir)]) == 2  # nothing runs there any more
