"""The store checks what it serves: hashes at completion, a check on first read, verify/repair, locks."""

from __future__ import annotations

import hashlib
import os
import signal
import time

import pytest

from deepunlearn import cli
from deepunlearn import store as store_mod
from deepunlearn.errors import UserError
from deepunlearn.store import MANIFEST, Store


def listing(root) -> dict[str, tuple[int, str]]:
    """Every file under `root`: relative path -> (size, sha256); compares a store before and after."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()} if root.is_dir() else {}


def writer(payload: bytes, calls: list | None = None):
    def build(out):
        if calls is not None:
            calls.append(1)
        (out / "blob.bin").write_bytes(payload)
    return build


def new_process() -> None:
    """What a fresh process knows: nothing verified yet."""
    store_mod._VERIFIED.clear()


def test_a_damaged_artifact_is_one_sentence_and_the_store_is_left_as_it_was(tmp_path):
    store = Store(tmp_path / "store")
    calls = []
    path = store.get_or_compute("thing", {"a": 1}, writer(b"x" * 1000, calls), label="t")
    assert (path / MANIFEST).is_file()
    blob = path / "blob.bin"
    for damage, expected in ((b"y" * 1000, "does not match its recorded sha256"), (b"x" * 10, "has 10 of its 1000")):
        blob.write_bytes(damage)
        new_process()
        before = listing(store.root)
        with pytest.raises(UserError) as e:
            store.get_or_compute("thing", {"a": 1}, writer(b"x" * 1000, calls), label="t")
        msg = str(e.value)
        assert expected in msg and str(path) in msg and "deepunlearn store repair" in msg and "\n" not in msg
        assert listing(store.root) == before and calls == [1]


def test_verified_once_per_process(tmp_path, monkeypatch):
    store = Store(tmp_path / "store")
    path = store.get_or_compute("thing", {"a": 1}, writer(b"abc"))
    new_process()
    hashed = []
    monkeypatch.setattr(store_mod, "file_sha256", lambda p: hashed.append(p) or hashlib.sha256(p.read_bytes()).hexdigest())
    for _ in range(3):
        assert store.get_or_compute("thing", {"a": 1}, writer(b"abc")) == path
    assert len(hashed) == 2  # blob.bin and params.json, once


def test_verify_reports_every_bad_artifact_and_repair_lets_a_rerun_rebuild(tmp_path, capsys):
    store = Store(tmp_path / "store")
    paths = [store.get_or_compute("thing", {"i": i}, writer(bytes([i]) * 500), label=f"t{i}") for i in range(3)]
    (paths[0] / "blob.bin").write_bytes(b"\xff" * 500)  # garbled, same size
    with open(paths[1] / "blob.bin", "r+b") as f:  # truncated
        f.truncate(100)
    argv = ["--store", str(store.root)]
    assert cli.main(["store", "verify", *argv]) == 1
    out = capsys.readouterr().out
    assert f"BAD     thing/{paths[0].name}: blob.bin does not match its recorded sha256" in out
    assert f"BAD     thing/{paths[1].name}: blob.bin has 100 of its 500 bytes" in out
    assert paths[2].name not in out and "3 artifacts checked" in out and "2 bad" in out
    assert cli.main(["store", "repair", *argv]) == 0
    assert "removed" in capsys.readouterr().out and not paths[0].exists() and not paths[1].exists()
    assert paths[2].is_dir()
    new_process()
    for i in range(3):
        store.get_or_compute("thing", {"i": i}, writer(bytes([i]) * 500), label=f"t{i}")
    assert cli.main(["store", "verify", *argv]) == 0
    assert "3 artifacts checked" in capsys.readouterr().out and (paths[0] / "blob.bin").read_bytes() == b"\0" * 500


def test_artifact_stored_before_hashes_is_hashed_once_then_checked(tmp_path, capsys):
    store = Store(tmp_path / "store")
    path = store.get_or_compute("thing", {"a": 1}, writer(b"old"))
    (path / MANIFEST).unlink()  # as stored by the previous version
    assert cli.main(["store", "verify", "--store", str(store.root)]) == 0
    assert f"hashed  thing/{path.name}" in capsys.readouterr().out and (path / MANIFEST).is_file()
    (path / "blob.bin").write_bytes(b"new")
    assert cli.main(["store", "verify", "--store", str(store.root)]) == 1


def test_verify_on_a_missing_store_is_one_sentence(tmp_path, capsys):
    assert cli.main(["store", "verify", "--store", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No store at") and err.count("\n") == 1


def test_a_failed_build_leaves_no_partial_and_no_lock_unless_it_kept_checkpoints(tmp_path):
    store = Store(tmp_path / "store")

    def crash(out):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        store.get_or_compute("thing", {"a": 1}, crash)
    assert listing(store.root) == {}

    def crash_after_checkpoint(out):
        (out / "checkpoint.pt").write_bytes(b"epoch 3")
        raise MemoryError("out of memory")

    with pytest.raises(MemoryError):
        store.get_or_compute("thing", {"a": 2}, crash_after_checkpoint)
    assert list(listing(store.root)) == [f".partial/thing/{store.path('thing', {'a': 2}).name}/checkpoint.pt"]

    def resume(out):
        assert (out / "checkpoint.pt").read_bytes() == b"epoch 3"
        (out / "checkpoint.pt").unlink()
        (out / "blob.bin").write_bytes(b"done")

    path = store.get_or_compute("thing", {"a": 2}, resume)
    assert sorted(listing(store.root)) == [f"thing/{path.name}/{f}" for f in ("DONE", "blob.bin", MANIFEST, "params.json")]


def test_a_killed_holders_lock_is_taken_over_and_a_live_one_is_named(tmp_path):
    store = Store(tmp_path / "store")
    folder = store.path("thing", {"a": 1})
    ready_r, ready_w = os.pipe()
    pid = os.fork()  # a holder without a second torch import: it only takes the lock and sleeps
    if pid == 0:
        try:
            with store.lock("thing", {"a": 1}):
                os.write(ready_w, b"held")
                time.sleep(60)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_r, 4) == b"held"
        assert f"pid {pid}" in store.lock_path(folder).read_text()
        with store._lock(folder, wait=False) as got:
            assert not got
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    with store._lock(folder, wait=False) as got:  # the kernel dropped the dead holder's flock
        assert got and f"pid {os.getpid()}" in store.lock_path(folder).read_text()
    assert not store.lock_path(folder).exists()
