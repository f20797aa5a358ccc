"""The tidy results table: every stored run of the listed attack configs, one row per (dataset, arch, method, seed)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from deepunlearn.errors import UserError
from deepunlearn.stages import attack as attack_stage
from deepunlearn.stages import make_config

KEYS = ("dataset", "arch", "method", "seed")


def attack_config(name: str, root: Path = Path("."), **overrides):
    """The attack stage config of params/attack/<name>.yaml, with `overrides` (e.g. the store) on top."""
    path = root / "params" / "attack" / f"{name}.yaml"
    if not path.is_file():
        have = ", ".join(sorted(p.stem for p in path.parent.glob("*.yaml")))
        raise UserError(f"No attack config {path}; list names from {have or 'none'} in `attack`.")
    params = yaml.safe_load(path.read_text()) or {}
    return make_config("attack", **{**params, **overrides})


def collect(configs: list, progress: bool = True) -> pd.DataFrame:
    """Concatenate the attack stage's table of each config (the store makes this a read when all is done).

    A (dataset, arch, method, seed) present in two configs keeps its last row.
    """
    tables = []
    for cfg in configs:
        if progress:
            print(f"results: collecting attack config (train={cfg.train})", flush=True)
        t = attack_stage.run(cfg)
        t.insert(0, "config", cfg.train)
        tables.append(t)
    if not tables:
        raise UserError("No attack configs to collect; list params/attack/<name>.yaml names in `attack`.")
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
