"""SCRUB (spec D.7): max steps on forget, min steps on retain, checkpoint selection by forget error."""

from __future__ import annotations

import copy

import optuna
import pytest
import torch
import torch.nn.functional as F

import deepunlearn.methods.scrub as scrub_mod
from conftest import below, same_weights
from deepunlearn.methods import SearchContext, frozen_logits, get_method, run_method
from deepunlearn.methods.scrub import (
    SCRUBParams,
    distill_kl,
    forget_val,
    lr_at,
    max_step,
    min_step,
    pick_checkpoint,
)
from deepunlearn.training import accuracy, forward, sgd


def test_distill_kl_is_sum_kl_times_t_squared_over_batch():
    s, t, T = torch.randn(6, 5), torch.randn(6, 5), 3.0
    p = F.softmax(t / T, 1)
    expected = (p * (p.log() - F.log_softmax(s / T, 1))).sum() * T ** 2 / 6
    torch.testing.assert_close(distill_kl(s, t, T), expected)


def test_max_step_raises_kl_to_teacher_on_forget(fitted_tinycnn, tiny_data):
    teacher, student = copy.deepcopy(fitted_tinycnn).eval(), copy.deepcopy(fitted_tinycnn)
    x = tiny_data.inputs(tiny_data.indices("forget"))
    hp = SCRUBParams(forget_batch_size=16)

    def kl() -> float:
        with torch.no_grad():
            return distill_kl(forward(copy.deepcopy(student).train(), x), forward(teacher, x), 2.0).item()

    before = kl()
    opt = sgd(student, 0.05, 0.0, 0.0)
    for _ in range(3):
        max_step(student, frozen_logits(teacher, tiny_data, ["forget"], "t"), opt, tiny_data, hp)
    below(2 * before + 0.01, kl(), "scrub: 3 max steps more than double the forget KL")


def test_min_step_descends_gamma_ce_plus_alpha_kl(fitted_tinycnn, tiny_data):
    hp = SCRUBParams(gamma=0.3, alpha=0.8, kd_temperature=2.0, retain_batch_size=48)
    teacher, student, ref = (copy.deepcopy(fitted_tinycnn) for _ in range(3))
    teacher.eval()
    idx = tiny_data.indices("retain")
    x, y = tiny_data.inputs(idx), tiny_data.labels[idx]
    s = forward(ref.train(), x)
    loss = 0.3 * F.cross_entropy(s, y) + 0.8 * distill_kl(s, forward(teacher, x).detach(), 2.0)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    min_step(student, frozen_logits(teacher, tiny_data, ["retain"], "t"), sgd(student, 0.01, 0.0, 0.0), tiny_data, hp,
             torch.Generator().manual_seed(0))
    for p0, g, p1 in zip(fitted_tinycnn.parameters(), grads, student.parameters()):
        torch.testing.assert_close(p1, p0 - 0.01 * g, atol=1e-6, rtol=1e-4)


def test_pick_checkpoint():
    assert pick_checkpoint([0.0, 0.5, 0.3, 0.1], 0.28) == 2
    assert pick_checkpoint([0.2, 0.5, 0.9], 0.25) == 0  # the Original strictly closest
    assert pick_checkpoint([0.2, 0.2, 0.2], 0.4) == 1  # tie with the Original: first trained checkpoint
    assert pick_checkpoint([0.0, 0.3, 0.5, 0.3], 0.3) == 1  # ties among checkpoints: the first


def test_lr_decays_at_half_and_four_and_nine_fifths_of_the_epochs():
    hp = SCRUBParams(epochs=10, lr=1.0)  # decay epochs 5, 8, 9
    assert [lr_at(t, hp) for t in (1, 5, 6, 8, 9, 10)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.001])


def test_forget_val_keeps_val_samples_of_forgotten_classes(digits):
    assert torch.equal(forget_val(digits), digits.indices("val"))  # random forgetting hits every class
    one = digits.with_splits(forget=digits.indices("forget")[:1])
    c = digits.labels[one.indices("forget")][0]
    fv = forget_val(one)
    assert len(fv) > 0 and (digits.labels[fv] == c).all()
    assert (digits.labels[digits.indices("val")] == c).sum() == len(fv)


def test_selection_returns_checkpoint_k_and_the_original_for_k0(fitted_tinycnn, tiny_data, monkeypatch):
    hp = {"epochs": 2, "lr": 0.05, "retain_batch_size": 16, "forget_batch_size": 16}
    models, seen = [], {}
    for k in range(3):
        def pick(errors, err_fv, k=k):
            seen.update(errors=errors, err_fv=err_fv)
            return k

        monkeypatch.setattr(scrub_mod, "pick_checkpoint", pick)
        models.append(run_method("scrub", fitted_tinycnn, tiny_data, hp)[0])
    final = models[2]
    assert len(seen["errors"]) == 3  # err_f[0..E]
    assert seen["errors"][0] == pytest.approx(1 - accuracy(fitted_tinycnn, tiny_data, "forget"))
    assert seen["errors"][2] == pytest.approx(1 - accuracy(final, tiny_data, "forget"))
    assert seen["err_fv"] == pytest.approx(1 - accuracy(final, tiny_data, forget_val(tiny_data)))
    # k = 0 reverts to the Original (weights and BatchNorm buffers) although training ran
    assert same_weights(models[0], fitted_tinycnn)
    assert not same_weights(models[1], fitted_tinycnn) and not same_weights(models[1], final)


def _batch_choices(method: str, ctx: SearchContext) -> dict[str, list]:
    """Each categorical hyperparameter of `method`'s space and its choices, as Optuna records them."""
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    get_method(method).space(trial, ctx)
    return {n: list(d.choices) for n, d in trial.distributions.items()
            if isinstance(d, optuna.distributions.CategoricalDistribution)}


def test_utkface_keeps_256_for_scrubs_retain_and_forget_batch_sizes():
    # the reference prunes a UTKFace trial only on its `batch_size`, which SCRUB does not search
    utk = SearchContext(e_max=10, dataset="utkface")
    assert _batch_choices("scrub", utk) == {"retain_batch_size": [64, 128, 256], "forget_batch_size": [64, 128, 256]}
    assert _batch_choices("ft", utk) == {"batch_size": [64, 128]}  # a method's own batch_size stays capped
    assert _batch_choices("ft", SearchContext(e_max=10, dataset="cifar10")) == {"batch_size": [64, 128, 256]}
