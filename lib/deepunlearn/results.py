"""The tidy results table of an analysis: every attack config's rows, one per (dataset, arch, method, seed).

An analysis lists attack configs as `NAME` (the profile's own dataset and arch) or
`NAME@dataset/arch` (the paper's one attack file, once per pair). Collecting scores them through
the store and saves, beside the table, the curves the figures read, so that the figures can be
redrawn later from these files alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from deepunlearn import config, scoring
from deepunlearn.config import AttackConfig
from deepunlearn.errors import UserError

KEYS = ("dataset", "arch", "method", "seed")


def parse_entry(entry: str) -> tuple[str, str | None, str | None]:
    """"paper@cifar10/resnet18" → ("paper", "cifar10", "resnet18"); "demo" → ("demo", None, None)."""
    name, at, pair = entry.partition("@")
    if not at:
        return name, None, None
    dataset, slash, arch = pair.partition("/")
    if not slash or not dataset or not arch:
        raise UserError(f"Attack entry {entry!r} is not NAME@dataset/arch; write e.g. paper@cifar10/resnet18.")
    return name, dataset, arch


def slug(entry: str) -> str:
    """A file name for an attack entry: "paper@cifar10/resnet18" → "paper-cifar10-resnet18"."""
    return entry.replace("@", "-").replace("/", "-")


def attack_config(entry: str, **overrides: Any) -> AttackConfig:
    """The attack config of an entry, with its pair and `overrides` (the analysis's store, device) on top."""
    name, dataset, arch = parse_entry(entry)
    pair = {k: v for k, v in (("dataset", dataset), ("arch", arch)) if v is not None}
    return config.load("attack", name, **pair, **overrides)


def collect(entries: list[str], configs: list[AttackConfig], curves_dir: Path | None, loss_seed: int | None = None,
            progress: bool = True) -> pd.DataFrame:
    """Score every attack config (a read of the store when all is done), saving each one's curves in `curves_dir`.

    `curves_dir` None saves no curves (a replicate's rows: only its table is used).
    A (dataset, arch, method, seed) present in two configs keeps its last row.
    """
    if not configs:
        raise UserError("No attack configs to collect; list params/attack/<name>.yaml names in `attack`.")
    attacks = [scoring.resolve(c) for c in configs]  # every config checked before any work
    tables = []
    for entry, a in zip(entries, attacks):
        if progress:
            print(f"results: collecting attack config {entry} ({a.exp.label()})", flush=True)
        t = scoring.table(a)
        t.insert(0, "config", entry)
        tables.append(t)
        if curves_dir is None:
            continue
        seed = loss_seed if loss_seed is not None and loss_seed in a.seeds else a.seeds[0]
        scoring.save_curves(curves_dir / f"{slug(entry)}.npz", a, seed)
    table = pd.concat(tables, ignore_index=True)
    return table.drop_duplicates(list(KEYS), keep="last").reset_index(drop=True)


def save(table: pd.DataFrame, folder: Path, name: str = "results") -> dict[str, Path]:
    """Write `table` as <folder>/<name>.csv and .parquet; returns both paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"csv": folder / f"{name}.csv", "parquet": folder / f"{name}.parquet"}
    table.to_csv(paths["csv"], index=False)
    try:
        table.to_parquet(paths["parquet"], index=False)
    except ImportError:  # pyarrow is a dev extra; the CSV alone is still the whole table
        print(f"note: pyarrow is not installed, so only {paths['csv']} was written", flush=True)
        del paths["parquet"]
    return paths


def load(folder: Path, name: str = "results") -> pd.DataFrame:
    """Read a table written by `save` (parquet keeps the dtypes)."""
    path = folder / f"{name}.parquet"
    if path.is_file():
        return pd.read_parquet(path)
    if (folder / f"{name}.csv").is_file():
        return pd.read_csv(folder / f"{name}.csv")
    raise UserError(f"No results table at {path}; run the analyze stage once with from_results=False.")
