"""CFW (spec D.15): stem confuser, "balanced" class-weighted fine-tuning, final confuser after epoch E−2."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.utils.class_weight import compute_class_weight

from conftest import clone_state
from deepunlearn.methods import get_method, run_method
from deepunlearn.methods.cfw import balanced_class_weights, class_weighted_ce, confuse
from deepunlearn.methods.space import NONNEG
from deepunlearn.models import create_model


def changed(a: dict, model: torch.nn.Module) -> set[str]:
    return {n for n, p in model.named_parameters() if not torch.equal(a[n], p)}


def test_confuser_adds_noise_of_the_requested_std_to_conv1_only_on_resnet():
    model = create_model("resnet18", 10, seed=0)
    before = clone_state(model)
    torch.manual_seed(0)
    assert confuse(model, 0.3) == ["conv1"]
    assert changed(before, model) == {"conv1.weight"}
    noise = model.conv1.weight.detach() - before["conv1.weight"]
    assert abs(noise.std().item() - 0.3) < 0.015 and abs(noise.mean().item()) < 0.015  # 9,408 draws


def test_confuser_is_a_no_op_on_tinyvit():
    model = create_model("tinyvit", 10, seed=0)
    before = clone_state(model)
    assert confuse(model, 0.6) == []
    assert not changed(before, model)


def test_balanced_class_weights_are_n_over_c_times_n_c():
    labels = torch.tensor([0, 0, 0, 1, 2, 2, 0, 1])
    w = balanced_class_weights(labels, 4)  # class 3 absent: sklearn counts only the present classes
    expected = compute_class_weight("balanced", classes=np.array([0, 1, 2]), y=labels.numpy())
    torch.testing.assert_close(w[:3], torch.tensor(expected, dtype=torch.float32))
    assert w[3] == 0
    torch.testing.assert_close(w[:3], torch.tensor([8 / (3 * 4), 8 / (3 * 2), 8 / (3 * 2)]))


def test_loss_is_batch_mean_ce_times_mean_class_weight():
    logits, y = torch.randn(5, 3), torch.tensor([0, 1, 1, 2, 2])
    w = torch.tensor([1.0, 2.0, 4.0])
    torch.testing.assert_close(class_weighted_ce(logits, y, w), F.cross_entropy(logits, y) * (13 / 5))


def test_cfw_confuses_again_only_when_there_is_a_penultimate_epoch(tiny_data, monkeypatch):
    monkeypatch.setitem(get_method("cfw").domains, "lr", NONNEG)  # lr 0 is no user value, but it freezes SGD here
    original = create_model("tinycnn", tiny_data.num_classes, seed=0)
    before = clone_state(original)
    hp = {"lr": 0.0, "start_confuser_std": 0.0, "final_confuser_std": 0.1, "batch_size": 16}
    one, _ = run_method("cfw", original, tiny_data, {**hp, "epochs": 1})
    assert not changed(before, one)  # no epoch E−2, no final confuser, lr 0
    two, _ = run_method("cfw", original, tiny_data, {**hp, "epochs": 2})
    assert changed(before, two) == {"conv1.weight"}
    noise = two.conv1.weight.detach() - before["conv1.weight"]
    assert 0.08 < noise.std().item() < 0.12  # 216 draws of std 0.1
    start, _ = run_method("cfw", original, tiny_data, {**hp, "epochs": 1, "start_confuser_std": 0.1})
    assert changed(before, start) == {"conv1.weight"}
