"""The attack stage: valid params files, one-sentence config errors, a tidy row per model, store reuse."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import yaml

from deepunlearn import references
from deepunlearn.attacks import ulira as ul
from deepunlearn.errors import UserError
from deepunlearn.stages import attack, config_class, make_config, unlearn

ROOT = Path(__file__).resolve().parents[1]
FIELDS = {f.name for f in dataclasses.fields(config_class("attack"))}


@pytest.fixture(autouse=True)
def in_repo_root(monkeypatch):
    """Stages read params/train/<name>.yaml relative to the working directory, where make runs them."""
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("path", sorted((ROOT / "params" / "attack").glob("*.yaml")), ids=lambda p: p.stem)
def test_params_files_are_valid_configs(path):
    params = yaml.safe_load(path.read_text())
    assert set(params) <= FIELDS
    attack.check(make_config("attack", **params))


def test_bad_configs_are_one_sentence_errors():
    with pytest.raises(UserError, match="Unknown attack parameter"):
        make_config("attack", methodz=["ft"])
    with pytest.raises(UserError, match="reference model"):
        attack.check(make_config("attack", methods=["retrain"]))
    with pytest.raises(UserError, match="ulira_seed"):
        attack.check(make_config("attack", train="tiny", ulira=True, ulira_seed=3))
    with pytest.raises(UserError, match="no hyperparameter"):
        attack.check(make_config("attack", hparams={"ft": {"learning_rate": 0.1}}))
    with pytest.raises(UserError, match="ulira_statistic"):
        attack.check(make_config("attack", ulira_statistic="loss"))


@pytest.fixture
def tiny_cfg(tmp_path):
    params = yaml.safe_load((ROOT / "params" / "attack" / "tiny.yaml").read_text())
    return make_config("attack", **{**params, "store": str(tmp_path / "store")})


def test_tiny_stage_table_and_store_reuse(tiny_cfg, monkeypatch):
    table = attack.run(tiny_cfg)
    assert list(table["method"]) == ["original", "retrain", "ft"]
    assert table[["dataset", "arch", "seed"]].drop_duplicates().values.tolist() == [["digits", "tinycnn", 0]]
    r = table.set_index("method").loc["retrain"]
    assert r["retdev"] == 0.0 and r["rte"] == 1.0 and r["dist_l2"] == 0.0 and r["unlearn_s"] == r["retrain_s"]
    o = table.set_index("method").loc["original"]
    assert math.isnan(o["rte"]) and o["dist_l2"] > 0
    ft = table.set_index("method").loc["ft"]
    assert ft["rte"] > 0 and ft["dist_l2"] > 0 and '"epochs": 1' in ft["hp"]
    # the speed probes stored beside both times, and the RTE they normalise
    assert ft["unlearn_gflops"] > 0 and ft["retrain_gflops"] > 0 and ft["speed_gap"] >= 0
    assert ft["rte_speed"] == pytest.approx(ft["rte"] * ft["retrain_gflops"] / ft["unlearn_gflops"])
    # what the report's protocol reads: no search (hand-set hyperparameters), digits' split sizes, 1 epoch
    assert (ft["trials"], ft["train_config"], ft["epochs"]) == (0, "tiny", 1)
    assert ft[["n_retain", "n_forget", "n_val", "n_test"]].tolist() == [1147, 128, 225, 297]
    for col in ("ra", "fa", "va", "ta", "val_mia", "test_mia", "indisc", "ulira_auc", "ulira_balanced_acc"):
        assert table[col].between(0, 1).all(), col
    assert ft["indisc"] == pytest.approx(1 - abs(2 * ft["test_mia"] - 1))

    # a rerun (or the plots) trains, unlearns and attacks nothing: everything comes from the store
    def forbidden(*a, **k):
        raise AssertionError("recomputed instead of reading the store")

    monkeypatch.setattr(references, "fit", forbidden)
    monkeypatch.setattr(unlearn, "run_method", forbidden)
    monkeypatch.setattr(ul, "run_method", forbidden)
    again = attack.run(tiny_cfg)
    times = ["unlearn_s", "retrain_s"]
    assert again.drop(columns=times).equals(table.drop(columns=times))
    assert set(attack.losses(tiny_cfg)) == {"original", "retrain", "ft"}
    assert attack.plot_loss_histograms(tiny_cfg) is not None and attack.plot_roc(tiny_cfg) is not None
