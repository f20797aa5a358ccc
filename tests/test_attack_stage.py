"""The attack stage: valid params files, one-sentence config errors, a tidy row per model, store reuse."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import yaml

from deepunlearn import config, scoring, trained
from deepunlearn.attacks import ulira as ul
from deepunlearn.config import config_class, make_config
from deepunlearn.errors import UserError
from deepunlearn.stages import attack

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {f.name for f in dataclasses.fields(config_class("attack"))}


@pytest.mark.parametrize("path", sorted((ROOT / "params" / "attack").glob("*.yaml")), ids=lambda p: p.stem)
def test_params_files_are_valid_configs(path):
    params = yaml.safe_load(path.read_text())
    assert set(params) - {"inherit"} <= FIELDS
    cfg = config.load("attack", path.stem)
    if cfg.best is None:  # a config naming a sweep needs its best.yaml, which these tests never make
        attack.context(cfg)


def test_bad_configs_are_one_sentence_errors():
    with pytest.raises(UserError, match="unknown attack parameter `methodz` \\(did you mean `methods`"):
        make_config("attack", methodz=["ft"])
    with pytest.raises(UserError, match="reference model"):
        attack.context(make_config("attack", profile="tiny", methods=["retrain"]))
    with pytest.raises(UserError, match="ulira_seed"):
        attack.context(make_config("attack", profile="tiny", ulira=True, ulira_seed=3))
    with pytest.raises(UserError, match="no hyperparameter"):
        attack.context(make_config("attack", profile="tiny", hparams={"ft": {"learning_rate": 0.1}}))
    with pytest.raises(UserError, match="ulira_statistic"):
        attack.context(make_config("attack", profile="tiny", ulira_statistic="loss"))


@pytest.fixture
def tiny_cfg(tmp_path):
    return config.load("attack", "tiny", store=str(tmp_path / "store"))


def test_tiny_stage_table_and_store_reuse(tiny_cfg, monkeypatch):
    table = attack.run(attack.context(tiny_cfg))
    assert list(table["method"]) == ["original", "retrain", "ft"]
    assert table[["dataset", "arch", "seed"]].drop_duplicates().values.tolist() == [["digits", "tinycnn", 0]]
    r = table.set_index("method").loc["retrain"]
    assert r["retdev"] == 0.0 and r["rte"] == 1.0 and r["dist_l2"] == 0.0 and r["unlearn_s"] == r["retrain_s"]
    o = table.set_index("method").loc["original"]
    assert math.isnan(o["rte"]) and o["dist_l2"] > 0
    ft = table.set_index("method").loc["ft"]
    assert ft["rte"] > 0 and ft["dist_l2"] > 0 and '"epochs": 1' in ft["hp"]
    # the speed probes stored beside both times; RTE on the fastest attempts, the raw wall ratio beside it
    assert ft["unlearn_gflops"] > 0 and ft["retrain_gflops"] > 0 and ft["speed_gap"] >= 0
    assert ft["rte"] == pytest.approx(ft["retrain_s"] / ft["unlearn_s"])
    assert ft["rte_wall"] == pytest.approx(ft["retrain_wall_s"] / ft["unlearn_wall_s"])
    assert ft["unlearn_tries"] >= 1 and ft["retrain_tries"] >= 1 and ft["unlearn_s"] <= ft["unlearn_wall_s"]
    assert r["rte_wall"] == 1.0 and r["unlearn_wall_s"] == r["retrain_wall_s"]
    # what the report's protocol reads: no search (hand-set hyperparameters), digits' split sizes, 1 epoch
    assert (ft["trials"], ft["train_config"], ft["epochs"]) == (0, "tiny", 1)
    assert ft[["n_retain", "n_forget", "n_val", "n_test"]].tolist() == [1147, 128, 225, 297]
    for col in ("ra", "fa", "va", "ta", "val_mia", "test_mia", "indisc", "ulira_auc", "ulira_balanced_acc"):
        assert table[col].between(0, 1).all(), col
    assert ft["indisc"] == pytest.approx(1 - abs(2 * ft["test_mia"] - 1))

    # a rerun (or the plots) trains, unlearns and attacks nothing: everything comes from the store
    def forbidden(*a, **k):
        raise AssertionError("recomputed instead of reading the store")

    monkeypatch.setattr(trained, "fit", forbidden)
    monkeypatch.setattr(trained, "run_method", forbidden)
    monkeypatch.setattr(ul, "run_method", forbidden)
    ctx = attack.context(tiny_cfg)
    again = attack.run(ctx)
    times = ["unlearn_s", "retrain_s", "unlearn_wall_s", "retrain_wall_s"]
    assert again.drop(columns=times).equals(table.drop(columns=times))
    assert set(scoring.losses(ctx)) == {"original", "retrain", "ft"}
    assert attack.plot_loss_histograms(ctx) is not None and attack.plot_roc(ctx) is not None
