"""GA (spec D.3): gradient ascent on the forget set only."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from conftest import below, same_weights
from deepunlearn.methods import run_method
from deepunlearn.training import forward, per_sample_loss


def test_ga_raises_forget_loss(fitted_tinycnn, tiny_data):
    before = per_sample_loss(fitted_tinycnn, tiny_data, "forget").mean()
    model, _ = run_method("ga", fitted_tinycnn, tiny_data, {"epochs": 3, "batch_size": 8, "lr": 0.05})
    below(before + 1.0, per_sample_loss(model, tiny_data, "forget").mean(), "ga: forget loss rises by > 1 nat")


def test_ga_step_is_plus_lr_times_forget_gradient(fitted_tinycnn, tiny_data):
    # one batch holding all 16 forget samples, plain SGD: θ' = θ + lr·∇CE_f (train-mode BN)
    lr = 0.01
    ref = copy.deepcopy(fitted_tinycnn).train()
    loss = F.cross_entropy(forward(ref, tiny_data.inputs(tiny_data.indices("forget"))),
                           tiny_data.labels[tiny_data.indices("forget")])
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    model, _ = run_method("ga", fitted_tinycnn, tiny_data,
                          {"epochs": 1, "batch_size": 16, "lr": lr, "momentum": 0.0, "weight_decay": 0.0})
    for p0, g, p1 in zip(fitted_tinycnn.parameters(), grads, model.parameters()):
        torch.testing.assert_close(p1, p0 + lr * g, atol=1e-6, rtol=1e-4)


def test_ga_never_reads_the_retain_set(fitted_tinycnn, tiny_data, digits):
    other = tiny_data.with_splits(retain=digits.splits["retain"][100:140])
    hp = {"epochs": 2, "batch_size": 8}
    a, _ = run_method("ga", fitted_tinycnn, tiny_data, hp)
    b, _ = run_method("ga", fitted_tinycnn, other, hp)
    assert same_weights(a, b)
