"""Readers reject bad files with one sentence naming the file; the dataset key follows the files' content."""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

from deepunlearn import config
from deepunlearn.data import get_dataset_info, loader, prepare_dataset
from deepunlearn.data.registry import require
from deepunlearn.errors import UserError
from deepunlearn.stages import attack
from deepunlearn.store import Store


def listing(root) -> dict[str, tuple[int, str]]:
    """Every file under `root`: relative path -> (size, sha256)."""
    return {p.relative_to(root).as_posix(): (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()} if root.is_dir() else {}


def idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape) + array.tobytes()


def mnist_folder(folder, gz: bool = True, n_train: int = 30, n_test: int = 10):
    """The four IDX files of a tiny MNIST (random pixels, labels 0..9)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        for kind, array in (("images-idx3", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)),
                            ("labels-idx1", rng.integers(0, 10, n, dtype=np.uint8))):
            data = idx_bytes(array)
            path = folder / f"{prefix}-{kind}-ubyte"
            if gz:
                path.with_name(path.name + ".gz").write_bytes(gzip.compress(data, mtime=0))
            else:
                path.write_bytes(data)
    return folder


def truncated_gz(folder):
    p = folder / "train-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return p, "is a damaged gzip file (Compressed file ended before the end-of-stream marker was reached)"


def garbled_gzip_header(folder):
    p = folder / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(b"\0\0" + p.read_bytes()[2:])
    return p, "is a damaged gzip file (Not a gzipped file"


def garbled_same_size_gz(folder):
    p = folder / "train-images-idx3-ubyte.gz"
    data = bytearray(p.read_bytes())
    data[-40:-20] = bytes(20)  # inside the deflate stream and the CRC: same size, other bytes
    p.write_bytes(bytes(data))
    return p, "is a damaged gzip file ("


def short_labels(folder):
    p = folder / "train-labels-idx1-ubyte"
    p.write_bytes(p.read_bytes()[:-7])
    return p, "is truncated (23 of the 30 data bytes its header announces)"


def garbled_same_size_labels(folder):
    p = folder / "train-labels-idx1-ubyte"
    data = bytearray(p.read_bytes())
    data[8:12] = b"\xff" * 4
    p.write_bytes(bytes(data))
    return p, "holds label 255, beyond the 10 classes"


def garbled_idx_magic(folder):
    p = folder / "t10k-images-idx3-ubyte"
    p.write_bytes(b"\x00\x00\x09\x03" + p.read_bytes()[4:])
    return p, "is not an unsigned-byte IDX file (magic number 00000903)"


@pytest.mark.parametrize(("gz", "damage"), [
    (True, truncated_gz), (True, garbled_gzip_header), (True, garbled_same_size_gz),
    (False, short_labels), (False, garbled_same_size_labels), (False, garbled_idx_magic),
])
def test_a_bad_dataset_file_stops_the_attack_stage_with_one_sentence(tmp_path, monkeypatch, capsys, gz, damage):
    folder = mnist_folder(tmp_path / "data" / "MNIST" / "raw", gz=gz)
    path, expected = damage(folder)
    (tmp_path / "params" / "train").mkdir(parents=True)
    (tmp_path / "params" / "attack").mkdir()
    (tmp_path / "params" / "train" / "m.yaml").write_text(
        f"dataset: mnist\ndata_root: {tmp_path / 'data'}\narch: tinycnn\nepochs: 1\ndevice: cpu\nprogress: false\n")
    (tmp_path / "params" / "attack" / "m.yaml").write_text("profile: m\ndevice: cpu\nprogress: false\n")
    monkeypatch.setenv("DEEPUNLEARN_ROOT", str(tmp_path))
    store = tmp_path / "store"
    store.mkdir()
    with pytest.raises(UserError) as e:  # the attack stage's first read of the data (the CLI prints this sentence)
        attack.run(attack.context(config.load("attack", "m", store=str(store))))
    assert str(e.value).startswith(f"{path} {expected}") and "\n" not in str(e.value)
    assert listing(store) == {}  # no lock, no .partial, no fingerprint cache


def test_an_explicit_data_root_lacking_the_dataset_is_an_error_not_a_fallback(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DEEPUNLEARN_DATA", raising=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError) as e:
        require("fashion_mnist", empty)
    msg = str(e.value)
    assert msg.startswith(f"Dataset 'fashion_mnist' was not found (looked in {empty / 'FashionMNIST' / 'raw'}, ")
    assert "not in /usr/share/datasets/fashion-mnist, since a data_root was given" in msg and "\n" not in msg


@pytest.mark.skipif(not os.path.isdir("/usr/share/datasets/fashion-mnist"),
                    reason="Debian's dataset-fashion-mnist is not installed (make setup installs it as root)")
def test_without_a_data_root_the_system_copy_is_used_and_named(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DEEPUNLEARN_DATA", raising=False)
    monkeypatch.setenv("DEEPUNLEARN_ROOT", str(tmp_path))  # no <root>/data here
    monkeypatch.setattr("deepunlearn.data.registry._NOTED", set())
    assert str(require("fashion_mnist")) == "/usr/share/datasets/fashion-mnist"
    assert capsys.readouterr().err == "note: no data_root given; reading fashion_mnist from /usr/share/datasets/fashion-mnist\n"


def test_the_dataset_key_follows_content_and_an_unchanged_file_is_not_rehashed(tmp_path, monkeypatch):
    folder = mnist_folder(tmp_path / "MNIST" / "raw", gz=False)
    store = Store(tmp_path / "store")
    first = prepare_dataset("mnist", store, tmp_path)
    hashed = []
    real = loader.file_sha256
    monkeypatch.setattr(loader, "file_sha256", lambda p: hashed.append(p.name) or real(p))
    assert prepare_dataset("mnist", store, tmp_path) == first and hashed == []
    p = folder / "train-images-idx3-ubyte"
    data = bytearray(p.read_bytes())
    data[100] ^= 0xFF  # a pixel fixed (or garbled): same size, other content
    p.write_bytes(bytes(data))
    second = prepare_dataset("mnist", store, tmp_path)
    assert hashed == ["train-images-idx3-ubyte"] and second != first
    images = np.load(second / "images.npy")
    assert not np.array_equal(images, np.load(first / "images.npy"))


def test_cifar_batch_without_its_label_key_or_with_bad_shapes_is_one_sentence(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    good = {b"data": np.zeros((2, 3072), np.uint8), b"fine_labels": [1, 2]}
    for name, batch in (("train", {b"data": good[b"data"], b"labels": [1, 2]}), ("test", good)):
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)
    info = get_dataset_info("cifar100")
    with pytest.raises(UserError, match=r"train lacks the CIFAR keys data and fine_labels \(it has data, labels\)"):
        info.read(folder)
    with open(folder / "train", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 3000), np.uint8), b"fine_labels": [1, 2]}, f)
    with pytest.raises(UserError, match=r"holds data of shape \(2, 3000\) \(uint8\), not N×3072 uint8"):
        info.read(folder)
    (folder / "train").write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match="train is not a readable CIFAR batch"):
        info.read(folder)


def test_utkface_with_an_undecodable_jpeg_or_a_bad_name_is_one_sentence(tmp_path):
    folder = tmp_path / "UTKFace"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (8, 8)).save(folder / f"{20 + i}_0_0_2017010{i}.jpg")
    (folder / "33_1_0_20170109.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    info = get_dataset_info("utkface")
    with pytest.raises(UserError, match=r"33_1_0_20170109.jpg is not a decodable JPEG"):
        info.read(folder)
    (folder / "33_1_0_20170109.jpg").unlink()
    Image.new("RGB", (8, 8)).save(folder / "face_0_0_2017.jpg")
    with pytest.raises(UserError, match="UTKFace file name 'face_0_0_2017.jpg' does not start with an age"):
        info.read(folder)
