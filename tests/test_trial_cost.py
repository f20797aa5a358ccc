"""Cheaper sweep trials, same results: per-study reuse of Original-only work, the search's own splits, study claims."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import same_weights
from deepunlearn import metrics, search
from deepunlearn.methods import memo, run_method, study_cache
from deepunlearn.methods.base import SearchContext


def test_memo_computes_every_time_outside_a_study_and_once_per_key_inside():
    calls = []

    def compute():
        calls.append(1)
        return len(calls)

    assert memo("k", compute) == 1 and memo("k", compute) == 2  # a final run: all of its work, every time
    cache: dict = {}
    with study_cache(cache):
        assert memo("k", compute) == 3 and memo("k", compute) == 3 and memo("j", compute) == 4
    assert memo("k", compute) == 5, "the cache leaked out of its study"
    with study_cache(None):
        assert memo("k", compute) == 6


def _counting(monkeypatch, module, name: str) -> list:
    real, calls = getattr(module, name), []
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def test_a_studys_ff_trials_share_one_fisher_pass_for_every_searched_batch_size(tiny_data, originals, monkeypatch):
    from deepunlearn.methods import ff

    calls = _counting(monkeypatch, ff, "fisher_diagonals")
    o = originals["tinycnn"]
    alone = {b: run_method("ff", o, tiny_data, {"batch_size": b, "alpha": 0.3})[0] for b in (64, 128)}
    assert len(calls) == 2, "a final run computes its own Fisher"
    with study_cache({}):
        first = run_method("ff", o, tiny_data, {"batch_size": 64, "alpha": 0.3})[0]
        assert len(calls) == 3
        again = run_method("ff", o, tiny_data, {"batch_size": 64, "alpha": 0.7})[0]
        wider = run_method("ff", o, tiny_data, {"batch_size": 128, "alpha": 0.3})[0]
        assert len(calls) == 3, "a later trial recomputed the Fisher that the study's first pass made"
        run_method("ff", o, tiny_data, {"batch_size": 16, "alpha": 0.3})
        assert len(calls) == 4, "a batch size the search never proposes gets its own Fisher"
    # at the chunk size (the smallest searched) the pass is the reference's computation: bit-identical
    assert same_weights(first, alone[64]) and not same_weights(first, again)
    # a wider batch is built from chunks: the same model up to float rounding
    for (k, a), b in zip(wider.state_dict().items(), alone[128].state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), k


def test_one_fisher_pass_gives_each_batch_sizes_fisher(tiny_data, originals):
    import copy

    from deepunlearn.methods import ff

    o = originals["tinycnn"]
    shared = ff.fisher_diagonals(copy.deepcopy(o), tiny_data, (16, 32, 64))  # 48 samples: full and partial batches
    for b in (16, 32, 64):
        alone = ff.fisher_diagonal(copy.deepcopy(o), tiny_data, b)
        for s, a in zip(shared[b], alone):
            assert s.shape == a.shape and (a > 0).any()
            assert torch.allclose(s, a, rtol=1e-4, atol=1e-6 * float(a.abs().max())), b
    assert not all(torch.allclose(x, y) for x, y in zip(shared[16], shared[64])), "the sizes' Fishers differ"


def test_a_studys_iu_trials_share_one_influence_direction_whatever_their_batch_size(
        tiny_data, originals, monkeypatch):
    from deepunlearn.methods import iu

    calls = _counting(monkeypatch, iu, "influence_direction")
    o = originals["tinycnn"]
    alone = {b: run_method("iu", o, tiny_data, {"batch_size": b, "alpha": 0.3})[0] for b in (16, 8)}
    assert len(calls) == 2
    with study_cache({}):
        first = run_method("iu", o, tiny_data, {"batch_size": 16, "alpha": 0.3})[0]
        again = run_method("iu", o, tiny_data, {"batch_size": 16, "alpha": 0.7})[0]
        other = run_method("iu", o, tiny_data, {"batch_size": 8, "alpha": 0.3})[0]
    assert len(calls) == 3, "a later trial recomputed the study's influence direction"
    assert same_weights(first, alone[16]) and not same_weights(first, again)
    # the batch size only groups a sum of per-sample gradients (eval mode): equal up to float rounding
    for (k, a), b in zip(other.state_dict().items(), alone[8].state_dict().values()):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6), k


@pytest.mark.parametrize("method", ["salun", "msg"])
def test_a_studys_trials_share_the_forget_pass_on_the_original_and_give_the_final_runs_model(
        tiny_data, originals, monkeypatch, method):
    import importlib

    module = importlib.import_module(f"deepunlearn.methods.{method}")
    calls = _counting(monkeypatch, module, "forget_saliency" if method == "salun" else "accumulate_gradients")
    o = originals["tinycnn"]
    hps = [{"epochs": 1, "batch_size": 16, "lr": 0.01}, {"epochs": 2, "batch_size": 16, "lr": 0.05}]
    alone = [run_method(method, o, tiny_data, hp)[0] for hp in hps]
    assert len(calls) == 2
    with study_cache({}):
        shared = [run_method(method, o, tiny_data, hp)[0] for hp in hps]
        assert len(calls) == 3, "the second trial with the same batch size redid the pass on the Original"
        run_method(method, o, tiny_data, {**hps[0], "batch_size": 8})
        assert len(calls) == 4, "another batch size must not reuse the first one's pass"
    for a, b in zip(alone, shared):
        assert same_weights(a, b), "reusing the study's pass changed the unlearned model"


@pytest.mark.parametrize("method", ["scrub", "rni"])
def test_a_sweep_trial_skips_the_references_unused_evaluations_and_gives_the_final_runs_model(
        tiny_data, originals, monkeypatch, method):
    import importlib

    module = importlib.import_module(f"deepunlearn.methods.{method}")
    real, calls = module.accuracy, []
    monkeypatch.setattr(module, "accuracy", lambda *a, **k: calls.append(a[2]) or real(*a, **k))
    o = originals["tinycnn"]
    hp = {"epochs": 2, "batch_size": 16} if method == "scrub" else {}
    final, _ = run_method(method, o, tiny_data, hp)
    n_final, calls[:] = len(calls), []
    with study_cache({}):
        trial, _ = run_method(method, o, tiny_data, hp)
    assert same_weights(final, trial), "skipping the unused evaluations changed the unlearned model"
    # SCRUB keeps the forget passes its checkpoint choice reads (and the last forget-val one); RNI keeps none
    kept = len(calls)
    assert kept == (2 + 1 + 1 if method == "scrub" else 0), calls
    assert n_final - kept == (3 * 2 if method == "scrub" else n_final) and n_final > kept


def test_the_search_evaluation_skips_the_test_split_and_keeps_the_objectives(tiny_data, originals):
    model = originals["tinycnn"]
    full = metrics.evaluate(model, tiny_data)
    searched = metrics.evaluate(model, tiny_data, splits=metrics.SEARCH_SPLITS)
    assert set(searched) == {"ra", "fa", "va", "val_mia"}
    for k, v in searched.items():
        assert v == full[k]  # the same passes over the same splits: bit-identical
    r = metrics.evaluate(originals["resnet18"], tiny_data)
    assert search.objectives(searched, r) == search.objectives(full, r)


def test_a_claimed_study_is_skipped_by_other_workers_and_free_once_its_holder_lets_go(tmp_path):
    path = tmp_path / "sweep" / "s.claim"
    with search.claim(path) as first:
        assert first
        with search.claim(path) as second:  # another open file: flock refuses it, as it would another process
            assert not second
    with search.claim(path) as again:
        assert again


def test_two_workers_without_joining_draw_what_one_worker_draws(tmp_path):
    """Two studies, another worker holding one: this one does the other, then waits for the held one to be done."""
    import threading

    from deepunlearn.config import make_config
    from deepunlearn.experiment import stage_experiment

    cfg = make_config("sweep", profile="tiny", methods=["ft", "ga"], n_trials=2, store=str(tmp_path / "store"),
                      name="claims", progress=False)
    exp = stage_experiment(cfg)
    (_, _, held, _), (_, _, free, _) = list(search.studies(cfg, exp))
    done: dict = {}
    with search.claim(search.sweep_dir(cfg, exp) / f"{held}.claim") as mine:
        assert mine
        worker = threading.Thread(target=lambda: done.update(search.run_worker(cfg, exp, worker=0, join=False)))
        worker.start()
        studies = search.load_studies(cfg, exp)
        for _ in range(600):  # until the free study is complete and the worker waits on the held one
            if search.n_complete(studies["ga"][0]) == 2:
                break
            worker.join(0.5)
        assert worker.is_alive(), "the worker did not wait for the study another worker holds"
        assert search.n_complete(studies["ft"][0]) == 0, "the worker drew trials in a study another worker holds"
    worker.join(300)  # released: the worker takes the study over, as it would from a worker that died
    assert done == {free: 2, held: 2}
    one = make_config("sweep", profile="tiny", methods=["ga"], n_trials=2, store=str(tmp_path / "one"),
                      name="claims", progress=False)
    one_exp = stage_experiment(one)
    search.run_worker(one, one_exp)
    mine, ref = search.load_studies(cfg, exp)["ga"][0], search.load_studies(one, one_exp)["ga"][0]
    assert [t.params for t in search.complete_trials(mine)] == [t.params for t in search.complete_trials(ref)]
    for a, b in zip(search.complete_trials(mine), search.complete_trials(ref)):
        assert all(math.isclose(x, y, abs_tol=1e-12) for x, y in zip(a.values, b.values))


def test_objective_with_and_without_sharing_scores_a_trial_alike(tiny_data, originals):
    import optuna

    o, r = originals["tinycnn"], originals["resnet18"]
    r_metrics = metrics.evaluate(r, tiny_data)
    ctx = SearchContext(e_max=2, dataset="digits")
    values = []
    for shared in (False, True):
        study = optuna.create_study(directions=["minimize"] * 4, sampler=optuna.samplers.RandomSampler(seed=3))
        objective = search.Objective("ff", o, tiny_data, r_metrics, ctx, n_trials=2, shared=shared)
        study.optimize(objective, n_trials=2)
        values.append([t.values for t in study.trials])
        assert (len(objective.cache) > 0) == shared
    assert values[0] == values[1]
