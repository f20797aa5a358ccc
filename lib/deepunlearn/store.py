"""Content-addressed artifact store: keyed by a hash of the parameters that change results.

Layout: <root>/<kind>/<label>-<hash16>/ holds the artifact's files, `params.json` and a `DONE`
marker written last. Work in progress lives in <root>/.partial/ (kept across a kill so a build can
resume from its checkpoints) and is renamed into place only when complete. A file lock per key
makes two processes asking for the same artifact build it once.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deepunlearn.errors import UserError

DONE = "DONE"


def canonical_json(obj: Any) -> str:
    """Deterministic JSON used for hashing: sorted keys, no spaces, tuples as lists."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def param_hash(params: dict) -> str:
    """First 16 hex digits of sha256 over the canonical JSON of `params`."""
    return hashlib.sha256(canonical_json(params).encode()).hexdigest()[:16]


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file through a temporary name and a rename, so readers never see half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json(path: Path, obj: Any) -> None:
    """Atomically write `obj` as indented JSON."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: Path) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text())


class Store:
    """Artifacts on disk, addressed by (kind, params); see the module docstring."""

    def __init__(self, root: str | Path = "outputs/store"):
        self.root = Path(root)

    def path(self, kind: str, params: dict, label: str = "") -> Path:
        """Where the artifact for (kind, params) lives once complete."""
        name = f"{label}-{param_hash(params)}" if label else param_hash(params)
        return self.root / kind / name

    def is_done(self, kind: str, params: dict, label: str = "") -> bool:
        """True if the complete artifact exists."""
        return (self.path(kind, params, label) / DONE).is_file()

    @contextmanager
    def lock(self, kind: str, params: dict, label: str = "") -> Iterator[None]:
        """Exclusive inter-process lock on one artifact key (blocks until free)."""
        lock_path = self.root / ".locks" / f"{kind}-{self.path(kind, params, label).name}.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def get_or_compute(self, kind: str, params: dict, build: Callable[[Path], Any], label: str = "") -> Path:
        """Return the artifact's folder, building it with `build(work_dir)` once if missing.

        `build` writes its files into `work_dir`, which survives a kill so it can keep checkpoints
        there and resume. On success the folder is renamed into place; on a `UserError` (bad
        input) the partial work is deleted so the store is left as it was.
        """
        final = self.path(kind, params, label)
        if (final / DONE).is_file():
            return final
        with self.lock(kind, params, label):
            if (final / DONE).is_file():  # another process built it while we waited
                return final
            work = self.root / ".partial" / kind / final.name
            work.mkdir(parents=True, exist_ok=True)
            try:
                build(work)
            except UserError:
                shutil.rmtree(work, ignore_errors=True)
                raise
            write_json(work / "params.json", {"kind": kind, "label": label, "params": params})
            (work / DONE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
            if final.exists():  # an incomplete leftover from an older layout: replace it
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(work, final)
        return final

    def find(self, kind: str, **match: Any) -> list[Path]:
        """Complete artifacts of `kind` whose params contain every `match` key with that value."""
        out = []
        for d in sorted((self.root / kind).glob("*")):
            if not (d / DONE).is_file():
                continue
            params = read_json(d / "params.json")["params"]
            if all(params.get(k) == v for k, v in match.items()):
                out.append(d)
        return out
