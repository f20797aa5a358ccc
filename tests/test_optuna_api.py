"""search.py leans on private Optuna internals; this fails loudly, naming what moved, when Optuna changes them."""

from __future__ import annotations

import inspect

import optuna

from deepunlearn import search


def test_optuna_is_the_tested_minor_version():
    assert optuna.__version__.startswith("5.0."), (
        f"optuna {optuna.__version__}: search.HeartbeatStorage and TrialSeededNSGAIII were written against 5.0; "
        f"check the internals below, then move the pin in pyproject.toml")


def test_the_private_storage_internals_that_heartbeat_storage_overrides_exist():
    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    assert callable(_create_scoped_session)
    assert {"trial_id", "heartbeat"} <= set(models.TrialHeartbeatModel.__table__.columns.keys())
    stale = optuna.storages.RDBStorage._get_stale_trial_ids
    assert list(inspect.signature(stale).parameters) == ["self", "study_id"]
    assert issubclass(search.HeartbeatStorage, optuna.storages.RDBStorage)


def test_the_private_sampler_streams_that_trial_seeding_reseeds_exist(tmp_path):
    sampler = search.TrialSeededNSGAIII(seed=3)
    # before_trial reseeds these two numpy generators; a rename would leave the draws unseeded
    assert hasattr(sampler._random_sampler._rng, "rng") and hasattr(sampler._rng, "rng")
    study = search.open_study(f"sqlite:///{tmp_path / 's.db'}", "api", seed=3, heartbeat=60)
    trial = study.ask()
    x = trial.suggest_float("x", 0, 1)
    study.tell(trial, [x, 0, 0, 0])
    again = search.open_study(f"sqlite:///{tmp_path / 't.db'}", "api", seed=3, heartbeat=60).ask()
    assert again.suggest_float("x", 0, 1) == x  # the same seed and draw index give the same draw
