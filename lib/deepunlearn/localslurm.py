"""A single-node Slurm cluster on this machine (Debian's slurm-wlm and munge), for tests and trying launch.

    python -m deepunlearn.localslurm start --dir /tmp/du-slurm   # prints the SLURM_CONF to export
    python -m deepunlearn.localslurm status --dir /tmp/du-slurm
    python -m deepunlearn.localslurm stop --dir /tmp/du-slurm

Everything lives in the state dir: slurm.conf, munge's key and socket, the controller's state, the node's
spool, logs, and cluster.json (the daemons' pids). Daemons run as root on 127.0.0.1 with free ports, so
several clusters (one per test session) can run side by side and none touches /etc/slurm or /etc/munge.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from deepunlearn.errors import UserError

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "squeue", "scontrol", "scancel", "srun")
INSTALL = "run `apt-get install -y slurm-wlm munge` (as root, Debian/Ubuntu) and try again"
DAEMONS = ("munged", "slurmctld", "slurmd")  # start order; stop goes in reverse
PARTITION = "local"


@dataclass
class Cluster:
    """A running local cluster: its state dir, its slurm.conf and the pids of the daemons it started."""

    dir: Path
    conf: Path
    pids: dict[str, int]
    argv: dict[str, list[str]]  # what each daemon was started with: a pid whose cmdline differs is not ours
    procs: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)  # only in the starting process

    @property
    def env(self) -> dict[str, str]:
        """What a Slurm client (sbatch, sinfo, submitit) needs in its environment to talk to this cluster."""
        return {"SLURM_CONF": str(self.conf)}


def check_installed() -> None:
    """Raise UserError unless every Slurm and munge program the cluster needs is on PATH."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if missing:
        raise UserError(f"the local Slurm cluster needs {', '.join(missing)}, which are not installed: {INSTALL}.")
    if os.geteuid() != 0:
        raise UserError("the local Slurm cluster runs its daemons as root (SlurmUser=root): run it as root.")


def node_hardware() -> str:
    """The node's CPUs and memory as slurmd itself measures them (`slurmd -C`), as slurm.conf node fields."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    fields = out.split("\n")[0].split()
    # slurmd refuses to register when slurm.conf claims more than it finds, so take its own numbers
    keep = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
    return " ".join(f for f in fields if f.split("=")[0] in keep)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_conf(d: Path, host: str) -> Path:
    """A minimal slurm.conf in `d`: one node (this machine), one partition, no accounting, no cgroups."""
    conf = d / "slurm.conf"
    text = f"""\
ClusterName=deepunlearn
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={d / "munge" / "munge.socket"}
StateSaveLocation={d / "ctld"}
SlurmdSpoolDir={d / "spool"}
SlurmctldPidFile={d / "run" / "slurmctld.pid"}
SlurmdPidFile={d / "run" / "slurmd.pid"}
SlurmctldLogFile={d / "log" / "slurmctld.log"}
SlurmdLogFile={d / "log" / "slurmd.log"}
PlugStackConfig={d / "plugstack.conf"}
# no cgroups: a container rarely delegates them to its root, and a test cluster needs no isolation
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# a freed CPU takes the next array task within a second (the 3 s default batches a busy cluster's starts)
SchedulerParameters=batch_sched_delay=0
ReturnToService=2
# finished jobs stay visible to squeue/scontrol this long: without accounting they are the only record
MinJobAge=3600
KillWait=5
MailProg=/bin/true
InactiveLimit=0
SlurmdTimeout=60
NodeName={host} NodeAddr=127.0.0.1 {node_hardware()} State=UNKNOWN
PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    conf.write_text(text)
    (d / "plugstack.conf").write_text("")  # else slurm reads /etc/slurm/plugstack.conf (Debian ships one)
    return conf


def _spawn(name: str, argv: list[str], d: Path, env: dict[str, str]) -> subprocess.Popen:
    """Start one daemon in the foreground of its own session, its output appended to log/<name>.out."""
    with open(d / "log" / f"{name}.out", "ab") as out:
        # a new session: the daemon outlives the CLI that started it and ignores the caller's Ctrl-C
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)


def _wait_for(what: str, ready, cluster: Cluster, timeout_s: float) -> None:
    """Poll `ready()` until it is true; raise (with the daemons' last log lines) if a daemon died or time ran out."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        dead = [n for n, p in cluster.procs.items() if p.poll() is not None]
        if dead or time.monotonic() > deadline:
            stop(cluster)
            why = f"{', '.join(dead)} exited" if dead else f"not ready after {timeout_s:.0f} s"
            raise RuntimeError(f"local Slurm: waiting for {what}: {why}\n{_log_tails(cluster.dir)}")
        time.sleep(0.2)


def _log_tails(d: Path, lines: int = 15) -> str:
    tails = []
    for log in sorted((d / "log").glob("*")):
        text = log.read_text(errors="replace").splitlines()[-lines:]
        tails.append(f"--- {log}\n" + "\n".join(text))
    return "\n".join(tails)


def _client(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run a Slurm client command against the cluster of `env`, its output captured; never raises on failure."""
    return subprocess.run(argv, check=False, capture_output=True, text=True, env=env)


def _node_state(env: dict[str, str]) -> str:
    r = _client(["sinfo", "-h", "-N", "-o", "%T"], env)
    return r.stdout.strip() if r.returncode == 0 else ""


def start(state_dir: Path | str, timeout_s: float = 60) -> Cluster:
    """Start munged, slurmctld and slurmd with a fresh slurm.conf in `state_dir`; return once the node is idle."""
    check_installed()
    d = Path(state_dir).absolute()
    if (d / "cluster.json").exists() and any(alive(load(d)).values()):
        raise UserError(f"a local Slurm cluster already runs in {d}: stop it first (`python -m "
                        f"deepunlearn.localslurm stop --dir {d}`) or pick another --dir.")
    sock = d / "munge" / "munge.socket"
    if len(str(sock)) > 100:  # a Unix socket path is limited to 108 bytes
        raise UserError(f"the state dir {d} is too long a path for munge's socket: use a shorter --dir.")
    for sub in ("munge", "ctld", "spool", "run", "log"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    os.chmod(d / "munge", 0o700)
    key = d / "munge" / "munge.key"
    if not key.exists():  # munged wants a private key file of random bytes (what mungekey writes)
        key.write_bytes(os.urandom(1024))
    os.chmod(key, 0o600)
    host = socket.gethostname().split(".")[0]  # slurmctld only runs where SlurmctldHost names this host
    conf = write_conf(d, host)
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = Cluster(dir=d, conf=conf, pids={}, argv={})
    # --force: munged refuses a socket whose parent dirs are not searchable by every user (pytest's and
    # mkdtemp's dirs are 0700); only root's clients use this cluster, and they can reach it
    argv = {"munged": ["munged", "-F", "--force", f"--key-file={key}", f"--socket={sock}",
                       f"--pid-file={d / 'munge' / 'munged.pid'}", f"--seed-file={d / 'munge' / 'munged.seed'}",
                       "--num-threads=2"],  # in the foreground it logs to stderr: log/munged.out
            "slurmctld": ["slurmctld", "-D", "-i", "-f", str(conf)],
            "slurmd": ["slurmd", "-D", "-f", str(conf), "-N", host]}
    ready = {"munged": lambda: sock.exists(),
             "slurmctld": lambda: _client(["scontrol", "ping"], env).returncode == 0,
             "slurmd": lambda: _node_state(env) == "idle"}
    for name in DAEMONS:
        cluster.procs[name] = _spawn(name, argv[name], d, env)
        cluster.pids[name], cluster.argv[name] = cluster.procs[name].pid, argv[name]
        save(cluster)  # before waiting: a stop from another shell can find a half-started cluster
        _wait_for(name, ready[name], cluster, timeout_s)
    return cluster


def save(cluster: Cluster) -> None:
    """Write cluster.json so that `stop` and `status` from another process find the daemons."""
    info = {"conf": str(cluster.conf), "pids": cluster.pids, "argv": cluster.argv}
    (cluster.dir / "cluster.json").write_text(json.dumps(info, indent=1))


def load(state_dir: Path | str) -> Cluster:
    """The cluster recorded in `state_dir` (by start), whether or not its daemons still run."""
    d = Path(state_dir).absolute()
    path = d / "cluster.json"
    if not path.exists():
        raise UserError(f"no local Slurm cluster was started in {d}: start one with `python -m "
                        f"deepunlearn.localslurm start --dir {d}`.")
    info = json.loads(path.read_text())
    return Cluster(dir=d, conf=Path(info["conf"]), pids=info["pids"], argv=info["argv"])


def _runs(pid: int, argv: list[str]) -> bool:
    """True while process `pid` runs `argv` (an exited one, a zombie or a reused pid has another cmdline)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes() == "\0".join(argv).encode() + b"\0"
    except OSError:
        return False


def alive(cluster: Cluster) -> dict[str, bool]:
    """Which of the cluster's daemons still run."""
    return {n: _runs(p, cluster.argv[n]) and (n not in cluster.procs or cluster.procs[n].poll() is None)
            for n, p in cluster.pids.items()}


def stop(cluster: Cluster, timeout_s: float = 20) -> None:
    """Cancel the cluster's jobs, then stop exactly the daemons it started (newest first) and wait for them."""
    env = {**os.environ, "SLURM_CONF": str(cluster.conf)}
    if alive(cluster).get("slurmctld"):
        # jobs run in slurmstepd processes that outlive slurmd: cancel them while the controller still listens
        ids = _client(["squeue", "-h", "-o", "%A"], env).stdout.split()
        if ids:
            _client(["scancel", *ids], env)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and _client(["squeue", "-h", "-t", "PD,R,CG,S"], env).stdout.strip():
                time.sleep(0.2)
    for name in reversed(DAEMONS):
        if name in cluster.pids:
            _terminate(name, cluster, timeout_s)
    (cluster.dir / "cluster.json").unlink(missing_ok=True)


def _terminate(name: str, cluster: Cluster, timeout_s: float) -> None:
    """SIGTERM one daemon, SIGKILL it if it has not exited within timeout_s; reap it if it is our child."""
    pid, proc = cluster.pids[name], cluster.procs.get(name)
    if not alive(cluster)[name]:
        return
    os.kill(pid, signal.SIGTERM)
    if proc is not None:
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        return
    deadline = time.monotonic() + timeout_s  # not our child (started by another `start`): poll /proc
    while _runs(pid, cluster.argv[name]) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _runs(pid, cluster.argv[name]):
        os.kill(pid, signal.SIGKILL)
        while _runs(pid, cluster.argv[name]):
            time.sleep(0.1)


@contextmanager
def running(state_dir: Path | str, timeout_s: float = 60) -> Iterator[Cluster]:
    """A started cluster for the body of a with-block, stopped on the way out (also on error)."""
    cluster = start(state_dir, timeout_s)
    try:
        yield cluster
    finally:
        stop(cluster)


def status(cluster: Cluster) -> str:
    """One line per daemon (pid, running or not) and the node's state from sinfo."""
    lines = [f"{n}: pid {cluster.pids[n]} {'running' if up else 'not running'}" for n, up in alive(cluster).items()]
    lines.append(f"node: {_node_state({**os.environ, 'SLURM_CONF': str(cluster.conf)}) or 'unreachable'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """The command line: start, stop or status (exit 1 if a daemon is down) of the cluster in --dir."""
    p = argparse.ArgumentParser(prog="python -m deepunlearn.localslurm", description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("start", "stop", "status"))
    p.add_argument("--dir", required=True, type=Path, help="state dir (conf, munge key and socket, logs, pids)")
    args = p.parse_args(argv)
    try:
        if args.action == "start":
            cluster = start(args.dir)
            print(status(cluster))
            print(f"export SLURM_CONF={cluster.conf}")
        elif args.action == "stop":
            stop(load(args.dir))
            print(f"stopped the local Slurm cluster in {args.dir}")
        else:
            cluster = load(args.dir)
            print(status(cluster))
            return 0 if all(alive(cluster).values()) else 1
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
