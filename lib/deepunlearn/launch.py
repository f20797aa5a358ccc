"""Launch command lines as one job array: on Slurm through submitit, or as processes on this machine.

The unit of launch is a command line (a list of argv strings) run in a working directory with extra
environment variables; stages decide what the commands are. One submitit log per job lands in log_dir.

    jobs = launch([["python", "train.py", f"--seed={s}"] for s in range(10)], executor="slurm",
                  resources=Resources(gpus_per_node=1, timeout_min=120), log_dir=logs, cwd=root)
    for job_id, state, rc in wait(jobs): ...

One worker per GPU on a multi-GPU node: with Slurm, ask for gpus_per_node=1 per command and Slurm's gres
gives every array task its own device (CUDA_VISIBLE_DEVICES). With the local executor every job would see
the same GPUs, so command i gets its own `gpus_per_node` of the machine's GPUs, counting from GPU
i * gpus_per_node modulo the GPU count (`worker_gpus`): 8 commands on an 8-GPU machine get one GPU each.

Slurm clients find their cluster through SLURM_CONF when it is set (as for the local cluster of
`deepunlearn.localslurm`); submitit runs sbatch and squeue as subprocesses of this one, which inherit it,
and sbatch exports it into the jobs.
"""

from __future__ import annotations

import glob
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cloudpickle
import submitit
from submitit.core.utils import FailedJobError, pickle_load

from deepunlearn.errors import UserError

EXECUTORS = ("local", "slurm")
# states after which a job can still run (submitit's list plus Slurm's transient ones); UNKNOWN: not seen yet
UNFINISHED = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED",
              "RESIZING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "PREEMPTED", "READY", "UNKNOWN"}

# Jobs unpickle run_command by value: they need neither this package on their import path nor its import
# of torch (4 s per job on a 2-core machine), only submitit in the same Python.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@dataclass(frozen=True)
class Resources:
    """What each job asks for; the local executor starts all commands at once, using timeout_min and gpus_per_node."""

    gpus_per_node: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None  # None: the partition's default
    timeout_min: int = 60
    partition: str | None = None
    account: str | None = None
    max_running: int = 256  # array tasks running at once (sbatch --array=...%N)
    slurm: dict[str, str] = field(default_factory=dict)  # more sbatch options, e.g. {"qos": "high"}


@dataclass
class Job:
    """One launched command: its scheduler id, its log (stdout and stderr together) and submitit's handle."""

    job_id: str
    command: list[str]
    log: Path
    executor: str
    handle: submitit.Job = field(repr=False)


class Result(NamedTuple):
    """A job's state in Slurm's words (COMPLETED, FAILED, ...) and its command's exit status (None: unknown)."""

    job_id: str
    state: str
    returncode: int | None


class CommandFailed(RuntimeError):
    """A launched command exited with a nonzero status (negative: killed by that signal)."""

    def __init__(self, returncode: int, argv: list[str]) -> None:
        super().__init__(f"exit status {returncode}: {shlex.join(argv)}")


RESULT_GRACE_S = 30  # how long wait() waits for a finished job's result file (submitit waits 15 s)
_FAILED_RC = re.compile(r"CommandFailed: exit status (-?\d+)")  # read back from the job's pickled traceback


def run_command(argv: list[str], cwd: str, env: dict[str, str], gpus: str | None) -> int:
    """Run one command line inside a job (the callable submitit pickles); raise CommandFailed if it fails."""
    full_env = {**os.environ, **env}  # on top of the job's own environment: keeps SLURM_* and PATH
    if gpus is not None:
        full_env["CUDA_VISIBLE_DEVICES"] = gpus
    print(f"+ cd {shlex.quote(cwd)} && {shlex.join(argv)}", flush=True)  # the log says what ran
    returncode = subprocess.run(argv, check=False, cwd=cwd, env=full_env).returncode  # output: the job log
    if returncode:
        raise CommandFailed(returncode, argv)  # submitit records the failure; Slurm marks the task FAILED
    return 0


def node_gpus() -> list[str]:
    """This machine's GPUs as CUDA numbers them: CUDA_VISIBLE_DEVICES if set, else one per /dev/nvidiaN."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    return [str(i) for i in range(len(glob.glob("/dev/nvidia[0-9]*")))]


def worker_gpus(index: int, per_worker: int, gpus: list[str]) -> str:
    """CUDA_VISIBLE_DEVICES for local worker `index`: `per_worker` of `gpus` from index * per_worker, wrapping."""
    first = index * per_worker
    return ",".join(gpus[(first + k) % len(gpus)] for k in range(min(per_worker, len(gpus))))


def _check_commands(commands: list[list[str]]) -> list[list[str]]:
    for c in commands:
        if isinstance(c, str) or not c or not all(isinstance(a, str) for a in c):
            raise UserError(f"a command must be a non-empty list of argv strings, got {c!r}: pass e.g. "
                            f"{shlex.split(c) if isinstance(c, str) else ['python', 'script.py']!r}.")
    return [list(c) for c in commands]


def make_executor(executor: str, resources: Resources, log_dir: Path, name: str) -> submitit.Executor:
    """The submitit executor for `executor` ("local" or "slurm"), its logs in log_dir, one file per job."""
    if executor not in EXECUTORS:
        raise UserError(f"unknown executor {executor!r}: use 'local' (processes on this machine) or 'slurm' "
                        "(a job array through sbatch).")
    if executor == "local":
        ex = submitit.LocalExecutor(folder=log_dir)
        ex.update_parameters(timeout_min=resources.timeout_min, stderr_to_stdout=True)
        return ex
    if shutil.which("sbatch") is None:
        raise UserError("executor='slurm' needs Slurm's sbatch, which is not on PATH: run on a Slurm login node, "
                        "start a local cluster (`python -m deepunlearn.localslurm start --dir DIR`), or use "
                        "executor='local'.")
    ex = submitit.SlurmExecutor(folder=log_dir)
    params = {"job_name": name, "time": resources.timeout_min, "cpus_per_task": resources.cpus_per_task,
              "gpus_per_node": resources.gpus_per_node or None, "partition": resources.partition,
              "account": resources.account, "array_parallelism": resources.max_running, "stderr_to_stdout": True,
              "mem": None if resources.mem_gb is None else f"{math.ceil(resources.mem_gb * 1024)}M",
              "additional_parameters": dict(resources.slurm) or None}
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def launch(commands: list[list[str]], *, executor: str = "local", resources: Resources = Resources(),
           log_dir: Path | str, cwd: Path | str, name: str = "deepunlearn",
           env: dict[str, str] | None = None) -> list[Job]:
    """Submit the commands as one job array (local: one process each); return a Job per command, in order."""
    commands = _check_commands(commands)
    env = dict(env or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise UserError(f"env must map names to strings, got {env!r}: convert the values with str().")
    log_dir, cwd = Path(log_dir).absolute(), Path(cwd).absolute()
    ex = make_executor(executor, resources, log_dir, name)
    if not commands:
        return []
    gpus: list[str | None] = [None] * len(commands)  # Slurm assigns GPUs itself through gres
    if executor == "local" and resources.gpus_per_node:
        visible = node_gpus()
        if not visible:
            raise UserError(f"gpus_per_node={resources.gpus_per_node} but this machine shows no GPU (no "
                            "CUDA_VISIBLE_DEVICES, no /dev/nvidia*): set gpus_per_node=0 to run on the CPU.")
        gpus = [worker_gpus(i, resources.gpus_per_node, visible) for i in range(len(commands))]
    n = len(commands)
    try:
        handles = ex.map_array(run_command, commands, [str(cwd)] * n, [env] * n, gpus)
    except FailedJobError as e:  # sbatch's own message: no controller, bad partition, account, resources
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else "no message"
        raise UserError(f"sbatch failed ({reason}): check that the cluster answers (`sinfo`, SLURM_CONF) and "
                        "that the partition, account and Resources fit it.") from e
    return [Job(job_id=h.job_id, command=c, log=h.paths.stdout, executor=executor, handle=h)
            for h, c in zip(handles, commands)]


def _expand_ids(job_id: str) -> list[str]:
    """sacct's "123_[0-2,5%4]" for a not-yet-split array as ["123_0", "123_1", "123_2", "123_5"]."""
    m = re.fullmatch(r"(\d+)_\[([\d,\-]+)(%\d+)?\]", job_id)
    if not m:
        return [job_id]
    out = []
    for part in m.group(2).split(","):
        lo, _, hi = part.partition("-")
        out += [f"{m.group(1)}_{i}" for i in range(int(lo), int(hi or lo) + 1)]
    return out


def slurm_states(job_ids: list[str]) -> dict[str, str]:
    """Slurm's state of each job id: from accounting (sacct), else from the controller's memory (squeue)."""
    arrays = sorted({j.split("_")[0] for j in job_ids})
    if not arrays:
        return {}
    # sacct remembers jobs for ever but needs accounting; squeue remembers them for MinJobAge (300 s by default)
    for argv in (["sacct", "-n", "-P", "-X", "-o", "JobID,State", "-j", ",".join(arrays)],
                 ["squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", ",".join(arrays)]):
        r = subprocess.run(argv, check=False, capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            states = {}
            for line in r.stdout.splitlines():
                job, _, state = line.partition("|")
                for j in _expand_ids(job.strip()):
                    states[j] = state.split()[0] if state.split() else "UNKNOWN"  # "CANCELLED by 0"
            return states
    return {}


def _outcome(job: Job) -> tuple[str, int | None] | None:
    """("success", 0) or ("error", exit status or None) once the job's result file exists, else None."""
    path = job.handle.paths.result_pickle
    if not path.exists():
        return None
    kind, value = pickle_load(path)
    if kind == "success":
        return kind, 0
    m = _FAILED_RC.search(str(value))
    return kind, int(m.group(1)) if m else None


def states(jobs: list[Job]) -> list[Result]:
    """Each job's state now (Slurm's words: PENDING, RUNNING, COMPLETED, FAILED, ...) and its exit status."""
    sched = slurm_states([j.job_id for j in jobs if j.executor == "slurm"])
    results = []
    for job in jobs:
        outcome = _outcome(job)
        if job.executor == "slurm":
            state = sched.get(job.job_id, "UNKNOWN")
            if state == "UNKNOWN" and outcome:  # forgotten by the scheduler, but the result file says how it ended
                state = "COMPLETED" if outcome[0] == "success" else "FAILED"
        elif not job.handle.done():
            state = "RUNNING"
        elif outcome:
            state = "COMPLETED" if outcome[0] == "success" else "FAILED"
        else:  # the process died before writing its result: killed by a signal (or by the local timeout)
            state = "CANCELLED" if job.handle.state == "INTERRUPTED" else "FAILED"
        results.append(Result(job.job_id, state, outcome[1] if outcome else None))
    return results


def wait(jobs: list[Job], poll_s: float = 1.0, timeout_s: float | None = None) -> list[Result]:
    """Block until every job has ended; return each one's final state and exit status, in order."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    ended_at = None
    while True:
        results = states(jobs)
        if all(r.state not in UNFINISHED for r in results):
            # a COMPLETED job has written its result file, but a shared filesystem may show it late
            ended_at = ended_at or time.monotonic()
            late = [r for r in results if r.state == "COMPLETED" and r.returncode is None]
            if not late or time.monotonic() - ended_at > RESULT_GRACE_S:
                return results
        if deadline is not None and time.monotonic() > deadline:
            running = ", ".join(f"{r.job_id} {r.state}" for r in results if r.state in UNFINISHED)
            raise TimeoutError(f"jobs still unfinished after {timeout_s:.0f} s: {running}")
        time.sleep(poll_s)
