"""Content-addressed artifact store: keyed by a hash of the parameters that change results.

Layout: <root>/<kind>/<label>-<hash16>/ holds the artifact's files, `params.json`, `manifest.json`
(size and sha256 of every other file) and a `DONE` marker written last. Work in progress lives in
<root>/.partial/ (kept across a kill so a build can resume from its checkpoints) and is renamed into
place only when complete. A file lock per key makes two processes asking for the same artifact
build it once; the lock file names its holder (host and pid) for whoever waits.

A complete artifact is checked against its manifest the first time a process serves it: sha256 of
a 497 MB image array took 0.55 s on one core of the 2-core development machine (np.load: 0.33 s),
so UTKFace's 3.57 GB array costs about 4 s once per process.
A damaged one stops with one sentence naming it and the fix, `deepunlearn store repair`, rather
than being rebuilt behind the user's back: a disk that garbles files should be noticed. An artifact
stored before manifests existed is hashed on first use and trusted from then on.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from deepunlearn import paths
from deepunlearn.errors import UserError

DONE = "DONE"
MANIFEST = "manifest.json"
_VERIFIED: set[Path] = set()  # artifacts this process has checked (or built) already


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


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes (sha256 beats blake2b where the CPU has SHA instructions)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _artifact_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in (DONE, MANIFEST))


def write_manifest(folder: Path) -> None:
    """Record size and sha256 of every file of an artifact (all but DONE and the manifest itself)."""
    files = {p.relative_to(folder).as_posix(): [p.stat().st_size, file_sha256(p)] for p in _artifact_files(folder)}
    write_json(folder / MANIFEST, {"algorithm": "sha256", "files": files})


def check_artifact(folder: Path) -> str | None:
    """What is wrong with a complete artifact's files, or None when they match its manifest."""
    try:
        files = read_json(folder / MANIFEST)["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"its {MANIFEST} is unreadable"
    for name, (size, digest) in sorted(files.items()):
        p = folder / name
        if not p.is_file():
            return f"{name} is missing"
        actual = p.stat().st_size
        if actual != size:
            return f"{name} has {actual} of its {size} bytes"
        if file_sha256(p) != digest:
            return f"{name} does not match its recorded sha256"
    return None


def _holder() -> str:
    return f"{socket.gethostname()} pid {os.getpid()}"


class Store:
    """Artifacts on disk, addressed by (kind, params); see the module docstring."""

    def __init__(self, root: str | Path = "outputs/store"):
        self.root = paths.resolve(root)  # relative: under the project root, whatever the working directory

    def path(self, kind: str, params: dict, label: str = "") -> Path:
        """Where the artifact for (kind, params) lives once complete."""
        name = f"{label}-{param_hash(params)}" if label else param_hash(params)
        return self.root / kind / name

    def is_done(self, kind: str, params: dict, label: str = "") -> bool:
        """True if the complete artifact exists."""
        return (self.path(kind, params, label) / DONE).is_file()

    def is_busy(self, kind: str, params: dict, label: str = "") -> bool:
        """True if another process holds the artifact's lock (is building it) right now."""
        with self._lock(self.path(kind, params, label), wait=False) as got:
            return not got

    def lock_path(self, folder: Path) -> Path:
        """The lock file of the artifact whose final folder is `folder`."""
        return self.root / ".locks" / f"{folder.parent.name}-{folder.name}.lock"

    @contextmanager
    def lock(self, kind: str, params: dict, label: str = "") -> Iterator[None]:
        """Exclusive inter-process lock on one artifact key (blocks until free)."""
        with self._lock(self.path(kind, params, label)):
            yield

    @contextmanager
    def _lock(self, folder: Path, wait: bool = True) -> Iterator[bool]:
        """flock on the key's lock file; yields False instead of waiting when `wait` is off and it is held.

        The lock file exists only while held and names its holder. The kernel drops a flock when its
        holder dies, however it dies, so a killed holder's lock is taken by the next process that
        asks. Unlinking on release is safe because a waiter re-checks, once it holds the flock, that
        the file it locked is still the one at the path.
        """
        lock_path = self.lock_path(folder)
        while True:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            try:
                f = open(lock_path, "a+")  # noqa: SIM115  closed on retry or after release below
            except FileNotFoundError:  # another process removed the empty .locks folder just now
                continue
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    f.close()
                    yield False
                    return
                f.seek(0)
                holder = f.read().strip() or "another process"
                print(f"waiting for {folder.parent.name}/{folder.name}, being built by {holder}",
                      file=sys.stderr, flush=True)
                fcntl.flock(f, fcntl.LOCK_EX)
            try:
                same = os.stat(lock_path).st_ino == os.fstat(f.fileno()).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            f.close()  # the holder released and unlinked it while we waited: lock the new file
        try:
            f.truncate(0)
            f.write(_holder() + "\n")
            f.flush()
            yield True
        finally:
            lock_path.unlink(missing_ok=True)
            fcntl.flock(f, fcntl.LOCK_UN)
            f.close()
            _remove_empty(lock_path.parent)

    def serve(self, folder: Path) -> Path:
        """`folder` once its files match their manifest (checked once per process), else a UserError."""
        key = folder.resolve()
        if key in _VERIFIED:
            return folder
        if not (folder / MANIFEST).is_file():  # stored before manifests existed: trust it from now on
            write_manifest(folder)
        else:
            problem = check_artifact(folder)
            if problem:
                raise UserError(f"Stored artifact {folder} is damaged ({problem}); run `deepunlearn store repair "
                                f"--store {self.root}` to remove it and rerun to rebuild it.")
        _VERIFIED.add(key)
        return folder

    def get_or_compute(self, kind: str, params: dict, build: Callable[[Path], Any], label: str = "") -> Path:
        """Return the artifact's folder, building it with `build(work_dir)` once if missing.

        `build` writes its files into `work_dir`, which survives a kill so it can keep checkpoints
        there and resume. On success the folder is renamed into place; on an error the partial work
        is deleted so the store is left as it was, unless the build left files (checkpoints) there
        and the error was not bad input, so a rerun after, e.g., running out of memory resumes.
        """
        final = self.path(kind, params, label)
        if (final / DONE).is_file():
            return self.serve(final)
        with self._lock(final):
            if (final / DONE).is_file():  # another process built it while we waited
                return self.serve(final)
            work = self.root / ".partial" / kind / final.name
            _makedirs(work)
            try:
                build(work)
            except Exception as e:
                if isinstance(e, UserError) or not any(p.is_file() for p in work.rglob("*")):
                    shutil.rmtree(work, ignore_errors=True)
                    _remove_empty(work.parent, work.parent.parent)
                raise
            write_json(work / "params.json", {"kind": kind, "label": label, "params": params})
            if os.environ.get("DEEPUNLEARN_BUILD_LOG"):  # tests count who built what (each unit exactly once)
                with open(os.environ["DEEPUNLEARN_BUILD_LOG"], "a") as log:
                    log.write(f"{kind}/{final.name} {_holder()}\n")
            write_manifest(work)
            (work / DONE).write_text(time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
            if final.exists():  # an incomplete leftover from an older layout: replace it
                shutil.rmtree(final)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(work, final)
            _remove_empty(work.parent, work.parent.parent)
        _VERIFIED.add(final.resolve())
        return final

    def find(self, kind: str, **match: Any) -> list[Path]:
        """Complete artifacts of `kind` whose params contain every `match` key with that value."""
        out = []
        for d in sorted((self.root / kind).glob("*")):
            if not (d / DONE).is_file():
                continue
            params = read_json(d / "params.json")["params"]
            if all(params.get(k) == v for k, v in match.items()):
                out.append(self.serve(d))
        return out

    def artifacts(self) -> list[Path]:
        """Every artifact folder in the store, complete or not (work in progress excluded)."""
        if not self.root.is_dir():
            return []
        return sorted(d for k in self.root.iterdir() if k.is_dir() and not k.name.startswith(".")
                      for d in k.iterdir() if d.is_dir())

    def verify(self) -> tuple[list[tuple[Path, str]], list[Path], int]:
        """Check every artifact: ([(bad folder, problem)], [folders hashed for the first time], n checked)."""
        bad, recorded = [], []
        folders = self.artifacts()
        for d in folders:
            if not (d / DONE).is_file():
                bad.append((d, "it is incomplete (no DONE marker)"))
            elif not (d / MANIFEST).is_file():
                write_manifest(d)
                recorded.append(d)
            elif problem := check_artifact(d):
                bad.append((d, problem))
        return bad, recorded, len(folders)

    def remove(self, folder: Path) -> bool:
        """Delete one artifact (its DONE marker first, so no reader trusts what is left); False if it is being built."""
        with self._lock(folder, wait=False) as got:
            if not got:
                return False
            (folder / DONE).unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
        _VERIFIED.discard(folder.resolve())
        return True


def _makedirs(folder: Path) -> None:
    """mkdir -p that survives another process removing an empty parent at the same moment."""
    for _ in range(10):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return
        except FileNotFoundError:
            continue
    folder.mkdir(parents=True, exist_ok=True)


def _remove_empty(*folders: Path) -> None:
    """Remove each folder that is empty (bookkeeping folders), quietly if another process uses it."""
    for d in folders:
        try:
            d.rmdir()
        except OSError:
            return
