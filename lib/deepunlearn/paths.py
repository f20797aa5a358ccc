"""Every path the project reads or writes, anchored at the project root, never at the working directory.

A Jupyter kernel starts in `notebooks/`, a Slurm job wherever sbatch was called: a relative path
in a config (`store: outputs/store`) therefore means "under the project root". The root is
`$DEEPUNLEARN_ROOT` if set, else the checkout this package was installed from (the folder holding
`params/` and `notebooks/`), else the working directory (an installed package used elsewhere).
"""

from __future__ import annotations

import os
from pathlib import Path

STAGES = ("train", "sweep", "unlearn", "attack", "analyze")


def root() -> Path:
    """The project root: $DEEPUNLEARN_ROOT, else this checkout, else the working directory."""
    env = os.environ.get("DEEPUNLEARN_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[2]  # lib/deepunlearn/paths.py -> the checkout
    if (checkout / "params").is_dir() and (checkout / "notebooks").is_dir():
        return checkout
    return Path.cwd()


def resolve(path: str | Path) -> Path:
    """`path` as given if absolute, else under the project root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else root() / p


def params_file(stage: str, name: str) -> Path:
    """params/<stage>/<name>.yaml."""
    return root() / "params" / stage / f"{name}.yaml"


def params_names(stage: str) -> list[str]:
    """The config names of `stage` (its params files' stems)."""
    return sorted(p.stem for p in (root() / "params" / stage).glob("*.yaml"))


def notebook(stage: str) -> Path:
    """notebooks/<stage>.py, the jupytext source of a stage."""
    return root() / "notebooks" / f"{stage}.py"


def outputs() -> Path:
    """outputs/: the store, executed notebooks, sweeps, reports, job logs."""
    return root() / "outputs"


def nb_dir(stage: str) -> Path:
    """outputs/nb/<stage>/: the executed notebooks of a stage."""
    return outputs() / "nb" / stage


def sweeps_dir(store: str | Path) -> Path:
    """The sweeps folder beside a store (outputs/store -> outputs/sweeps), so a shared store shares them."""
    return resolve(store).parent / "sweeps"


def sweep_dir(store: str | Path, name: str, dataset: str, arch: str) -> Path:
    """One sweep of one (dataset, arch): its SQLite studies and best.yaml."""
    return sweeps_dir(store) / name / f"{dataset}-{arch}"


def best_file(store: str | Path, name: str, dataset: str, arch: str) -> Path:
    """The chosen hyperparameters of a sweep: written by the sweep stage, read by unlearn and attack."""
    return sweep_dir(store, name, dataset, arch) / "best.yaml"


def data_root() -> Path | None:
    """Where datasets are looked for first: $DEEPUNLEARN_DATA, else <root>/data if it exists."""
    env = os.environ.get("DEEPUNLEARN_DATA")
    if env:
        return resolve(env)
    folder = root() / "data"
    return folder if folder.is_dir() else None


def logs_dir(name: str) -> Path:
    """outputs/logs/<name>/: one log per launched job."""
    return outputs() / "logs" / name
