"""Readers on small files in the real formats, transforms against torchvision, splits."""

from __future__ import annotations

import gzip
import json
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from deepunlearn import cli
from deepunlearn.data import get_dataset_info, load_device_data, make_splits, split_checksum, split_sizes, transforms
from deepunlearn.data.registry import require
from deepunlearn.errors import UserError
from deepunlearn.store import Store


def write_idx(path, array: np.ndarray, gz: bool) -> None:
    """Write `array` (uint8) as an IDX file, optionally gzipped."""
    head = bytes([0, 0, 0x08, array.ndim]) + struct.pack(">" + "I" * array.ndim, *array.shape)
    data = head + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)


def make_mnist_folder(folder, n_train=30, n_test=10, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {"train": (rng.integers(0, 256, (n_train, 28, 28)), rng.integers(0, 10, n_train)),
              "t10k": (rng.integers(0, 256, (n_test, 28, 28)), rng.integers(0, 10, n_test))}
    for prefix, (x, y) in arrays.items():
        write_idx(folder / f"{prefix}-images-idx3-ubyte", x.astype(np.uint8), gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", y.astype(np.uint8), gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_reader_round_trip(tmp_path, gz):
    arrays = make_mnist_folder(tmp_path / "MNIST" / "raw", gz=gz)
    info = get_dataset_info("mnist")
    folder = require("mnist", tmp_path)
    assert info.lengths(folder) == (30, 10)
    images, labels, n_train = info.read(folder)
    assert n_train == 30 and images.shape == (40, 28, 28)
    np.testing.assert_array_equal(images[:30], arrays["train"][0])
    np.testing.assert_array_equal(labels[30:], arrays["t10k"][1])


def test_idx_reader_rejects_truncated_file(tmp_path):
    folder = tmp_path / "MNIST" / "raw"
    make_mnist_folder(folder, gz=False)
    p = folder / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-5])
    with pytest.raises(UserError, match="truncated"):
        get_dataset_info("mnist").read(folder)


def write_cifar(folder, files, label_key, n_per_file=6, num_classes=10, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    out = {}
    for f in files:
        x = rng.integers(0, 256, (n_per_file, 3 * 32 * 32), dtype=np.uint8)
        y = rng.integers(0, num_classes, n_per_file).tolist()
        with open(folder / f, "wb") as fh:
            pickle.dump({b"data": x, label_key.encode(): y, b"batch_label": b"x"}, fh)
        out[f] = (x, y)
    return out


def test_cifar10_reader(tmp_path):
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    written = write_cifar(tmp_path / "cifar-10-batches-py", files, "labels")
    images, labels, n_train = get_dataset_info("cifar10").read(require("cifar10", tmp_path))
    assert n_train == 30 and images.shape == (36, 32, 32, 3)
    x, y = written["data_batch_2"]
    # CIFAR rows are channel-major (1024 R, 1024 G, 1024 B): pixel (0, 1) of image 0 of batch 2
    assert tuple(images[6, 0, 1]) == (x[0, 1], x[0, 1024 + 1], x[0, 2048 + 1])
    assert labels[6:12].tolist() == y


def test_cifar100_reader_uses_fine_labels(tmp_path):
    written = write_cifar(tmp_path / "cifar-100-python", ["train", "test"], "fine_labels", num_classes=100)
    _, labels, n_train = get_dataset_info("cifar100").read(require("cifar100", tmp_path))
    assert n_train == 6 and labels.tolist() == written["train"][1] + written["test"][1]


def test_utkface_reader(tmp_path):
    folder = tmp_path / "UTKface_Aligned_cropped" / "UTKFace"
    folder.mkdir(parents=True)
    ages = [5, 19, 20, 39, 45, 61, 80, 99, 116, 30]
    for i, age in enumerate(ages):
        Image.new("RGB", (200, 200), (i * 20, 0, 0)).save(folder / f"{age}_{i % 2}_{i % 4}_2017010{i}.jpg")
    info = get_dataset_info("utkface")
    found = require("utkface", tmp_path)
    assert info.lengths(found) == (8, 2)
    images, labels, n_train = info.read(found)
    assert images.shape == (10, 224, 224, 3) and n_train == 8
    # labels follow the file each image came from: age group min(age // 20, 4)
    by_red = {round(img[..., 0].mean() / 20): int(lab) for img, lab in zip(images, labels)}
    assert by_red == {i: min(a // 20, 4) for i, a in enumerate(ages)}
    # spec A.1: sorted names permuted with default_rng(123); the first 20% are the test set
    names = sorted(p.name for p in folder.iterdir())
    test_names = {names[i] for i in np.random.default_rng(123).permutation(10)[:2]}
    test_reds = {round(img[..., 0].mean() / 20) for img in images[8:]}
    assert test_reds == {int(n.split("_")[3].split(".")[0][-1]) for n in test_names}


def test_missing_dataset_is_one_sentence(tmp_path):
    with pytest.raises(UserError) as e:
        require("cifar10", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "download=True" in msg
    assert msg.count(". ") == 0 and msg.endswith(".")


def test_unknown_dataset_is_one_sentence():
    with pytest.raises(UserError, match=r"Unknown dataset 'imagenet'; choose one of .*fashion_mnist"):
        get_dataset_info("imagenet")


def test_missing_dataset_leaves_store_untouched(tmp_path):
    store = Store(tmp_path / "store")
    with pytest.raises(UserError):
        load_device_data("cifar10", store=store, data_root=tmp_path)
    assert not any((tmp_path / "store").rglob("DONE"))


# --- transforms ---------------------------------------------------------------------------------

def torchvision_reference(images: np.ndarray, mean, std, size=32) -> torch.Tensor:
    """The reference's per-sample path: PIL → RGB → Resize → ToTensor → Normalize."""
    import torchvision.transforms as T

    tf = T.Compose([T.Lambda(lambda im: im.convert("RGB")), T.Resize((size, size)), T.ToTensor(),
                    T.Normalize(mean, std)])
    return torch.stack([tf(Image.fromarray(img)) for img in images])


@pytest.mark.parametrize("shape", [(20, 28, 28), (20, 32, 32, 3), (20, 8, 8)])
def test_deterministic_transform_matches_torchvision(shape):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, shape, dtype=np.uint8)
    mean, std = (0.2860,) * 3, (0.3530,) * 3
    ours = transforms.normalize(transforms.to_nchw(transforms.resize_stack(images, 32)),
                                torch.tensor(mean), torch.tensor(std))
    ref = torchvision_reference(images, mean, std)
    assert ours.shape == ref.shape == (20, 3, 32, 32)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_random_crop_and_flip_statistics():
    """Every output is one of torchvision's candidate crops; offsets and flips are uniform."""
    rng = np.random.default_rng(2)
    img = torch.from_numpy(rng.integers(1, 256, (1, 3, 32, 32), dtype=np.uint8))
    n = 4000
    g = torch.Generator().manual_seed(0)
    out = transforms.random_crop(img.expand(n, -1, -1, -1).contiguous(), g)
    padded = torch.nn.functional.pad(img, (4,) * 4)[0]
    # the crop offset of each output, found by matching against all 81 candidates
    cands = torch.stack([padded[:, i:i + 32, j:j + 32] for i in range(9) for j in range(9)])
    match = (out.unsqueeze(1) == cands.unsqueeze(0)).flatten(2).all(-1)
    assert match.any(1).all(), "an output is not a RandomCrop(32, padding=4) of the input"
    offsets = match.float().argmax(1)
    freq = torch.bincount(offsets // 9, minlength=9).float() / n
    assert (freq - 1 / 9).abs().max() < 0.03
    freq = torch.bincount(offsets % 9, minlength=9).float() / n
    assert (freq - 1 / 9).abs().max() < 0.03
    flipped = transforms.random_flip(img.expand(n, -1, -1, -1), g)
    is_flip = (flipped == img.flip(-1)).flatten(1).all(1)
    assert ((flipped == img).flatten(1).all(1) | is_flip).all()
    assert abs(is_flip.float().mean().item() - 0.5) < 0.03


# --- splits ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_train,n_test,expected", [
    (60000, 10000, {"retain": 45900, "forget": 5100, "val": 9000, "test": 10000}),  # MNIST, Fashion-MNIST
    (50000, 10000, {"retain": 38250, "forget": 4250, "val": 7500, "test": 10000}),  # CIFAR-10/100
    (18967, 4741, {"retain": 14508, "forget": 1613, "val": 2846, "test": 4741}),  # UTKFace
])
def test_split_sizes(n_train, n_test, expected):
    splits = make_splits(n_train, n_test)
    assert split_sizes(splits) == expected
    dev = np.concatenate([splits["retain"], splits["forget"], splits["val"]])
    assert len(np.unique(dev)) == n_train and dev.min() == 0 and dev.max() == n_train - 1
    np.testing.assert_array_equal(splits["test"], np.arange(n_train, n_train + n_test))


def test_splits_are_deterministic_and_subset_is_seeded():
    assert split_checksum(make_splits(60000, 10000)) == split_checksum(make_splits(60000, 10000))
    a, b = make_splits(60000, 10000, subset=6000), make_splits(60000, 10000, subset=6000)
    assert split_checksum(a) == split_checksum(b)
    assert split_sizes(a) == {"retain": 4590, "forget": 510, "val": 900, "test": 1000}
    assert len(np.intersect1d(a["retain"], a["forget"])) == 0
    with pytest.raises(UserError, match="subset=70000"):
        make_splits(60000, 10000, subset=70000)


def test_cli_split_reads_lengths_only(tmp_path, capsys):
    make_mnist_folder(tmp_path / "MNIST" / "raw", n_train=200, n_test=40)
    assert cli.main(["split", "mnist", "--data-root", str(tmp_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["retain"], out["forget"], out["val"], out["test"]) == (153, 17, 30, 40)


@pytest.mark.skipif(not (require.__globals__["DEBIAN_FASHION_MNIST"]).is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed (make setup installs it as root)")
def test_cli_split_fashion_mnist(capsys):
    assert cli.main(["split", "fashion_mnist"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["retain"], out["forget"], out["val"], out["test"]) == (45900, 5100, 9000, 10000)


def test_device_data_batches_cover_split_once(digits):
    g = torch.Generator().manual_seed(0)
    seen = torch.cat([idx for _, _, idx in digits.batches("retain", 100, shuffle=True, generator=g,
                                                          with_index=True)])
    assert sorted(seen.tolist()) == sorted(digits.splits["retain"].tolist())
    x, y = next(digits.batches("forget", 7))
    assert x.shape == (7, 3, 32, 32) and x.dtype == torch.float32
    assert torch.equal(y, digits.labels[digits.splits["forget"][:7]])
