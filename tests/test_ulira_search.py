"""Spec G.2: U-LiRA methods tuned in their own search on the U-LiRA shadows, then attacked with that choice."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from deepunlearn import config, metrics, paths, scoring, search
from deepunlearn.errors import UserError
from deepunlearn.experiment import stage_experiment
from deepunlearn.units import attack_units


@pytest.fixture(scope="module")
def lira_sweep(tmp_path_factory):
    store = str(tmp_path_factory.mktemp("lira") / "store")
    cfg = config.make_config("sweep", name="lira", profile="tiny", methods=["ft"], n_trials=2, ulira=True,
                             ulira_splits=2, ulira_epochs=2, device="cpu", store=store, progress=False)
    exp = stage_experiment(cfg)
    search.run_worker(cfg, exp)
    search.summarize(cfg, exp)
    return cfg, exp


def test_one_study_per_split_on_that_splits_shadows(lira_sweep):
    cfg, exp = lira_sweep
    names = [name for _, _, name, _ in search.studies(cfg, exp)]
    assert names == ["digits-tinycnn-lira-ft-s0", "digits-tinycnn-lira-ft-s1"]
    shadows = search.lira_shadows(cfg, exp)
    assert shadows.recipe.epochs == 2 and search.search_context(exp, cfg).e_max == 1  # E_max = ceil(0.2 x 2)
    for s, study in enumerate(search.load_studies(cfg, exp)["ft"]):
        assert len(search.complete_trials(study)) == 2
        # the objective was measured against split s's Retrained shadow on the shadow data (val = LiRA val)
        sdata = shadows.shadow_data(s, 0)
        r = metrics.evaluate(shadows.reference("retrain", s, 0), sdata)
        trial = search.complete_trials(study)[0]
        u = trial.user_attrs["metrics"]
        assert trial.values[0] == pytest.approx(abs(u["ra"] - r["ra"]) / 3, abs=1e-12)
        assert trial.values[2] == pytest.approx(abs(u["va"] - r["va"]) / 3, abs=1e-12)


def test_best_is_the_lowest_score_over_the_splits_and_says_so(lira_sweep):
    cfg, exp = lira_sweep
    best = yaml.safe_load(paths.best_file(cfg.store, "lira", exp.dataset, exp.arch).read_text())["ft"]
    every = [(search.score(t.values), t.params["lr"]) for st in search.load_studies(cfg, exp)["ft"]
             for t in search.complete_trials(st)]
    assert best["score"] == pytest.approx(min(every)[0])
    assert best["params"]["lr"] == min(every)[1]
    assert best["ulira_splits"] == 2 and best["seeds"] == []


def test_the_attack_uses_the_lira_search_for_ulira_methods_and_the_main_choice_for_rows(lira_sweep):
    cfg, exp = lira_sweep
    best = yaml.safe_load(paths.best_file(cfg.store, "lira", exp.dataset, exp.arch).read_text())["ft"]["params"]
    # no hand-set hyperparameters (they would win over any sweep's choice, as they do over `best`)
    a = scoring.resolve(config.load("attack", "tiny", store=cfg.store, ulira_best="lira", hparams={}))
    assert dataclasses.asdict(a.ulira_hparams["ft"]) == best
    assert dataclasses.asdict(a.hparams["ft"])["lr"] != best["lr"]  # the rows keep the config's own (defaults)
    # the shadows of the search are the attack's: no shadow of split 0 or 1, forget set 0, is trained twice
    shadows = scoring.shadows(a)
    before = len(a.exp.store.artifacts())
    for s in (0, 1):
        shadows.reference("original", s, 0), shadows.reference("retrain", s, 0)
    assert len(a.exp.store.artifacts()) == before, "the attack trained a shadow the search had already trained"
    units = [u for u in attack_units(a) if u.key["stage"] == "attack-ulira"]
    assert all(u.key["methods"]["ft"]["lr"] == best["lr"] for u in units)
    reuse = scoring.resolve(config.load("attack", "tiny", store=cfg.store, hparams={}))
    assert reuse.ulira_hparams["ft"] == reuse.hparams["ft"]  # without ulira_best: the main sweep's (here, defaults)


def test_a_missing_lira_sweep_and_a_bad_split_count_are_one_sentence(lira_sweep):
    cfg, _ = lira_sweep
    with pytest.raises(UserError, match="run the sweep `nope`.*set ulira_best: null"):
        scoring.resolve(config.load("attack", "tiny", store=cfg.store, ulira_best="nope"))
    bad = dataclasses.replace(cfg, ulira_splits=0)
    with pytest.raises(UserError, match="ulira_splits=0"):
        search.check_sweep(bad, stage_experiment(bad))
