"""A throwaway PostgreSQL server on loopback for tests (as the `postgres` user when run as root)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def pg_bin(name: str) -> str | None:
    """Path of a PostgreSQL server binary (Debian keeps them out of PATH)."""
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server in a temporary directory; yield its SQLAlchemy URL; stop and delete it."""
    tmp = Path(tempfile.mkdtemp(prefix="du-pg-"))
    os.chmod(tmp, 0o777)
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    port = free_port()
    data = tmp / "data"
    subprocess.run(as_user + [pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"], check=True,
                   capture_output=True)
    opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c max_connections=50"
    subprocess.run(as_user + [pg_bin("pg_ctl"), "-D", str(data), "-o", opts, "-l", str(tmp / "log"), "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_user + [pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"], capture_output=True,
                       check=False)
        shutil.rmtree(tmp, ignore_errors=True)
