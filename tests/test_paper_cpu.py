"""A paper-shaped run on the CPU: the real paper params files for CIFAR-10 / ResNet-18, through the distributed path.

Every stage goes through `deepunlearn launch` with two local workers (submitit's local executor),
with overrides that shrink the protocol: CIFAR-10 files in the real pickle format written by the
test (200 training images), 1 epoch, 2 seeds, 2 methods, 2 trials, a 2 x 1 U-LiRA. The train
profile and the attack's U-LiRA delta are rewritten with the smaller values (later stages read those
files by name: the analysis re-reads the attack config), the other stages get `--set` overrides;
the sweep, unlearn, attack and analyze files are otherwise the repository's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from deepunlearn import cli
from test_data import write_cifar

ROOT = Path(__file__).resolve().parents[1]
PAIR = ["--set", "dataset=cifar10", "--set", "arch=resnet18", "--set", "device=cpu"]
SHRINK = {"sweep": ["--set", "methods=[ft, ct]", "--set", "n_trials=2", "--set", "seeds=[0]"],
          "unlearn": ["--set", "methods=[ft, ct]"],
          "attack": []}
ULIRA = {"methods": ["ft", "ct"], "ulira_splits": 2, "ulira_forget_sets": 1, "ulira_epochs": 1, "ulira_methods": ["ft"]}


@pytest.mark.slow
def test_the_cifar10_resnet18_paper_files_run_end_to_end_with_two_local_workers(tmp_path, monkeypatch, capsys):
    shutil.copytree(ROOT / "params", tmp_path / "params")
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    write_cifar(tmp_path / "data" / "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"],
                "labels", n_per_file=40)
    train = yaml.safe_load((ROOT / "params" / "train" / "paper.yaml").read_text())
    train.update(epochs=1, seeds=[0, 1], device="cpu", download=False, data_root=str(tmp_path / "data"),
                 progress=False)
    (tmp_path / "params" / "train" / "paper.yaml").write_text(yaml.safe_dump(train))
    delta = yaml.safe_load((ROOT / "params" / "attack" / "paper-ulira.yaml").read_text())
    (tmp_path / "params" / "attack" / "paper-ulira.yaml").write_text(yaml.safe_dump({**delta, **ULIRA}))
    (tmp_path / "params" / "launch" / "two.yaml").write_text("workers: 2\ncpus_per_task: 1\nrender: false\n")
    monkeypatch.setenv("DEEPUNLEARN_ROOT", str(tmp_path))
    # as make paper runs this pair: the U-LiRA methods' own search (spec G.2) before the U-LiRA attack
    for stage, config in (("train", "paper"), ("sweep", "paper"), ("unlearn", "paper"),
                          ("sweep", "paper-ulira"), ("attack", "paper-ulira")):
        shrink = (["--set", "n_trials=2", "--set", "ulira_splits=2", "--set", "ulira_epochs=1", "--set", "methods=[ft]"]
                  if (stage, config) == ("sweep", "paper-ulira") else SHRINK.get(stage, []))
        assert cli.main(["launch", stage, config, "--with", "two", *PAIR, *shrink]) == 0
    out = capsys.readouterr().out
    jobs = [line for line in out.splitlines() if line.strip().startswith("job ")]
    assert len(jobs) == 10 and all(line.endswith("COMPLETED") for line in jobs), out
    assert (tmp_path / "outputs" / "sweeps" / "paper-ulira" / "cifar10-resnet18" / "best.yaml").is_file()
    assert (tmp_path / "outputs" / "sweeps" / "paper" / "cifar10-resnet18" / "best.yaml").is_file()
    # the analysis renders its notebook from the store, into figures/ as the paper config does
    assert cli.main(["run", "analyze", "paper", "--set", "attack=[paper-ulira@cifar10/resnet18]",
                     "--set", "device=cpu", "--set", "n_boot=100"]) == 0
    table = pd.read_parquet(tmp_path / "outputs" / "reports" / "paper" / "results.parquet")
    assert sorted(table["method"].unique()) == ["ct", "ft", "original", "retrain"]
    assert sorted(table["seed"].unique()) == [0, 1] and set(table["dataset"]) == {"cifar10"}
    assert table.loc[table["method"] == "ft", "ulira_auc"].notna().sum() == 1  # U-LiRA on seed 0
    assert (table.loc[table["method"] == "ft", "trials"] == 2).all()
    assert (tmp_path / "figures" / "main.md").is_file() and (tmp_path / "figures" / "tradeoff.png").is_file()
    assert (tmp_path / "outputs" / "nb" / "analyze" / "paper.ipynb").is_file()
