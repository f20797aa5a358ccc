"""Dataset registry: what each dataset is (spec A.1–A.2) and where its files are looked up."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepunlearn import paths
from deepunlearn.data import readers
from deepunlearn.errors import UserError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts of one dataset: classes, input size, normalisation, augmentation, recipe."""

    name: str
    num_classes: int
    img_size: int  # side of the square input fed to the models
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    augment: str  # train-state augmentation: "flip", "crop_flip" or "none"
    epochs: int  # spec C: epochs of the Original/Retrained recipe
    batch_size: int  # spec C: 256, UTKFace 128
    how_to_get: str  # one sentence for the missing-dataset error
    candidates: Callable[[Path | None], list[Path]]  # folders to look in, in order
    is_present: Callable[[Path], bool]
    lengths: Callable[[Path], tuple[int, int]]  # (n_train, n_test), reading as little as possible
    read: Callable[[Path], tuple[np.ndarray, np.ndarray, int]]  # images N×H×W(×3) uint8, labels, n_train
    download: Callable[[Path], None] | None = None
    fallbacks: tuple[Path, ...] = ()  # system copies, looked in only when no data_root is given
    sources: Callable[[Path], list[Path]] | None = None  # the files `read` reads (None: none, e.g. bundled)


_DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add a dataset to the registry."""
    _DATASETS[info.name] = info
    return info


def list_datasets() -> list[str]:
    """Names of the registered datasets."""
    return sorted(_DATASETS)


def get_dataset_info(name: str) -> DatasetInfo:
    """The registry entry of `name`, or a one-sentence error listing the known names."""
    if name not in _DATASETS:
        raise UserError(f"Unknown dataset {name!r}; choose one of {', '.join(list_datasets())}.")
    return _DATASETS[name]


def default_data_root() -> Path | None:
    """$DEEPUNLEARN_DATA if set, else <project root>/data if it exists (never the working directory)."""
    return paths.data_root()


def _explicit_root(data_root: str | Path | None) -> bool:
    """A data_root parameter or $DEEPUNLEARN_DATA names where the data is: no fallback to system copies."""
    return bool(data_root) or bool(os.environ.get("DEEPUNLEARN_DATA"))


def locate(name: str, data_root: str | Path | None = None) -> Path | None:
    """The first folder holding `name`'s files, or None; system copies only when no root is given."""
    info = get_dataset_info(name)
    root = paths.resolve(data_root) if data_root else default_data_root()
    folders = info.candidates(root) + ([] if _explicit_root(data_root) else list(info.fallbacks))
    for folder in folders:
        if folder.is_dir() and info.is_present(folder):
            return folder
    return None


_NOTED: set[Path] = set()


def require(name: str, data_root: str | Path | None = None, download: bool = False) -> Path:
    """The folder of `name`'s files; downloads only when asked; else one sentence on how to get them."""
    info = get_dataset_info(name)
    folder = locate(name, data_root)
    if folder is not None:
        if folder in info.fallbacks and folder not in _NOTED:  # say so: the user named no folder
            _NOTED.add(folder)
            print(f"note: no data_root given; reading {name} from {folder}", file=sys.stderr, flush=True)
        return folder
    root = paths.resolve(data_root) if data_root else default_data_root()
    if download and info.download is not None:
        info.download(root or paths.root() / "data")
        folder = locate(name, root or paths.root() / "data")
        if folder is not None:
            return folder
    looked = [str(p) for p in info.candidates(root) + ([] if _explicit_root(data_root) else list(info.fallbacks))]
    where = ", ".join(looked) or "no folder: no data_root given, $DEEPUNLEARN_DATA unset and no ./data"
    if _explicit_root(data_root) and info.fallbacks:
        where += f"; not in {', '.join(map(str, info.fallbacks))}, since a data_root was given"
    raise UserError(f"Dataset {name!r} was not found (looked in {where}); {info.how_to_get}")


# --- MNIST-like (IDX files) -------------------------------------------------------------------

def _idx_present(folder: Path) -> bool:
    return all(readers.find_file(folder, f"{p}-{k}-idx{d}-ubyte") is not None
               for p in ("train", "t10k") for k, d in (("images", 3), ("labels", 1)))


def _idx_lengths(folder: Path) -> tuple[int, int]:
    return (readers.idx_length(readers.find_file(folder, "train-labels-idx1-ubyte")),
            readers.idx_length(readers.find_file(folder, "t10k-labels-idx1-ubyte")))


def _idx_sources(folder: Path) -> list[Path]:
    return [readers.find_file(folder, f"{p}-{k}-idx{d}-ubyte") for p in ("train", "t10k")
            for k, d in (("images", 3), ("labels", 1))]


def _idx_read(folder: Path) -> tuple[np.ndarray, np.ndarray, int]:
    xtr, ytr = readers.read_idx_pair(folder, "train")
    xte, yte = readers.read_idx_pair(folder, "t10k")
    return np.concatenate([xtr, xte]), np.concatenate([ytr, yte]), len(xtr)


def _tv_download(cls_name: str) -> Callable[[Path], None]:
    def download(root: Path) -> None:
        import torchvision.datasets as tvd

        getattr(tvd, cls_name)(str(root), train=True, download=True)
        getattr(tvd, cls_name)(str(root), train=False, download=True)
    return download


def _mnist_like(name: str, tv_name: str, mean: float, std: float, extra: tuple[Path, ...] = ()) -> DatasetInfo:
    def candidates(root: Path | None) -> list[Path]:
        return [root / tv_name / "raw", root / name, root] if root else []

    return DatasetInfo(
        name=name, num_classes=10, img_size=32, mean=(mean,) * 3, std=(std,) * 3, augment="flip",
        epochs=50, batch_size=256,
        how_to_get=f"put the four IDX files in DATA_ROOT/{tv_name}/raw (data_root= or $DEEPUNLEARN_DATA), "
                   f"or pass download=True to fetch them with torchvision.",
        candidates=candidates, is_present=_idx_present, lengths=_idx_lengths, read=_idx_read,
        download=_tv_download(tv_name), fallbacks=extra, sources=_idx_sources)


register_dataset(_mnist_like("mnist", "MNIST", 0.1307, 0.3081))
fm = _mnist_like("fashion_mnist", "FashionMNIST", 0.2860, 0.3530, extra=(DEBIAN_FASHION_MNIST,))
register_dataset(DatasetInfo(**{**fm.__dict__, "how_to_get": "run `apt-get install dataset-fashion-mnist` "
                                "(Debian), or " + fm.how_to_get}))


# --- CIFAR (python pickles) ---------------------------------------------------------------------

def _cifar(name: str, folder_name: str, train_files: list[str], test_file: str, label_key: str,
           num_classes: int, mean: tuple, std: tuple, tv_name: str) -> DatasetInfo:
    def candidates(root: Path | None) -> list[Path]:
        return [root / folder_name] if root else []

    def present(folder: Path) -> bool:
        return all((folder / f).is_file() for f in train_files + [test_file])

    def read(folder: Path) -> tuple[np.ndarray, np.ndarray, int]:
        parts = [readers.read_cifar_pickle(folder / f, label_key, num_classes) for f in train_files + [test_file]]
        n_train = sum(len(p[1]) for p in parts[:-1])
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]), n_train

    def lengths(folder: Path) -> tuple[int, int]:
        _, y, n_train = read(folder)
        return n_train, len(y) - n_train

    return DatasetInfo(
        name=name, num_classes=num_classes, img_size=32, mean=mean, std=std, augment="crop_flip", epochs=182,
        batch_size=256,
        how_to_get=f"extract the python version of {tv_name} to DATA_ROOT/{folder_name} (data_root= or "
                   f"$DEEPUNLEARN_DATA), or pass download=True to fetch it with torchvision.",
        candidates=candidates, is_present=present, lengths=lengths, read=read, download=_tv_download(tv_name),
        sources=lambda folder: [folder / f for f in train_files + [test_file]])


register_dataset(_cifar("cifar10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], "test_batch",
                        "labels", 10, (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010), "CIFAR10"))
register_dataset(_cifar("cifar100", "cifar-100-python", ["train"], "test", "fine_labels", 100,
                        (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "CIFAR100"))


# --- UTKFace (JPEG files) ------------------------------------------------------------------------

UTKFACE_TEST_FRACTION = 0.2
UTKFACE_SPLIT_SEED = 123


def _utk_candidates(root: Path | None) -> list[Path]:
    return [root / "UTKface_Aligned_cropped" / "UTKFace", root / "UTKFace", root / "utkface"] if root else []


def _utk_present(folder: Path) -> bool:
    return any(p.suffix.lower() == ".jpg" for p in folder.iterdir())


def _utk_order(files: list[Path]) -> tuple[np.ndarray, int]:
    """Spec A.1: permute the sorted list with default_rng(123); the first 20% are the test set."""
    perm = np.random.default_rng(UTKFACE_SPLIT_SEED).permutation(len(files))
    n_test = int(UTKFACE_TEST_FRACTION * len(files))
    return np.concatenate([perm[n_test:], perm[:n_test]]), len(files) - n_test


def _utk_lengths(folder: Path) -> tuple[int, int]:
    n = len(readers.utkface_files(folder))
    n_test = int(UTKFACE_TEST_FRACTION * n)
    return n - n_test, n_test


def _utk_read(folder: Path) -> tuple[np.ndarray, np.ndarray, int]:
    files = readers.utkface_files(folder)
    order, n_train = _utk_order(files)
    files = [files[i] for i in order]  # train files first, then test
    labels = np.array([readers.utkface_label(p.name) for p in files], dtype=np.int64)
    return readers.read_images_resized(files, 224), labels, n_train


register_dataset(DatasetInfo(
    name="utkface", num_classes=5, img_size=224, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
    augment="none", epochs=50, batch_size=128,
    how_to_get="download the 'Aligned&Cropped Faces' archive of UTKFace by hand and extract it to "
               "DATA_ROOT/UTKface_Aligned_cropped/UTKFace (data_root= or $DEEPUNLEARN_DATA).",
    candidates=_utk_candidates, is_present=_utk_present, lengths=_utk_lengths, read=_utk_read,
    sources=readers.utkface_files))


# --- digits: scikit-learn's bundled 8×8 digits, real and offline, for tests ----------------------

def _digits_read(_: Path) -> tuple[np.ndarray, np.ndarray, int]:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return images, d.target.astype(np.int64), 1500


register_dataset(DatasetInfo(
    name="digits", num_classes=10, img_size=32, mean=(0.3,) * 3, std=(0.4,) * 3, augment="flip", epochs=50,
    batch_size=256, how_to_get="install scikit-learn, which bundles it.",
    candidates=lambda root: [Path(__file__).parent], is_present=lambda folder: True,
    lengths=lambda folder: (1500, 297), read=_digits_read))
