"""KDE (spec D.18): reset conv1 + classifier, KL warm-up on the val split, CE + distillation on retain."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from conftest import below, clone_state, same_weights, train_tiny
from deepunlearn.methods import run_method
from deepunlearn.methods.kde import kl_soft, retain_loss
from deepunlearn.models import create_model
from deepunlearn.training import predict

NO_TRAIN = {"epochs": 0, "retain_epochs": 0, "batch_size": 16}


def changed(before: dict, model: torch.nn.Module) -> set[str]:
    return {n.rsplit(".", 1)[0] for n, p in model.named_parameters() if not torch.equal(before[n], p)}


def test_kde_resets_conv1_and_the_classifier_only(tiny_data):
    original = create_model("tinycnn", tiny_data.num_classes, seed=0)
    model, _ = run_method("kde", original, tiny_data, NO_TRAIN)
    assert changed(clone_state(original), model) == {"conv1", "fc"}


def test_kde_resets_only_the_classifier_on_tinyvit(tiny_data):
    original = create_model("tinyvit", tiny_data.num_classes, seed=0)
    model, _ = run_method("kde", original, tiny_data, NO_TRAIN)
    assert changed(clone_state(original), model) == {"head.fc"}


@pytest.mark.learned
def test_warm_up_distils_the_original_on_the_val_split(tiny_data):
    original = train_tiny("tinycnn", tiny_data, epochs=10)  # a confident teacher, so the KL is not tiny
    reset, _ = run_method("kde", original, tiny_data, NO_TRAIN)
    warm = {"epochs": 5, "retain_epochs": 0, "batch_size": 16, "lr": 0.1, "temperature": 1.0}
    # with an empty val split the warm-up has nothing to train on; retain is never touched
    no_val = tiny_data.with_splits(val=torch.empty(0, dtype=torch.int64))
    idle, _ = run_method("kde", original, no_val, warm)
    assert same_weights(idle, reset)
    model, _ = run_method("kde", original, tiny_data, warm)
    other_retain = tiny_data.with_splits(retain=tiny_data.indices("retain")[:8])
    same, _ = run_method("kde", original, other_retain, warm)
    assert same_weights(model, same)
    # and it moves the student towards the teacher on val
    t = predict(original, tiny_data, "val")
    before = kl_soft(predict(reset, tiny_data, "val"), t, 1.0)
    below(kl_soft(predict(model, tiny_data, "val"), t, 1.0), 0.5 * before, "kde: warm-up halves the val KL")


def test_retain_loss_is_ce_plus_twice_the_kl_up_to_the_teacher_entropy():
    s, t, y = torch.randn(6, 4), torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    tau = 2.5
    p_t = F.softmax(t / tau, 1)
    teacher_entropy = -(p_t * p_t.log()).sum(1).mean()
    expected = F.cross_entropy(s, y) + 2 * kl_soft(s, t, tau) + teacher_entropy
    torch.testing.assert_close(retain_loss(s, t, y, tau), expected)
    # KL direction: KL(teacher ‖ student), batch mean, no τ² factor
    log_q = F.log_softmax(s / tau, 1)
    torch.testing.assert_close(kl_soft(s, t, tau), (p_t * (p_t.log() - log_q)).sum(1).mean())


def test_retain_phase_trains_on_retain(tiny_data):
    original = create_model("tinycnn", tiny_data.num_classes, seed=0)
    hp = {"epochs": 0, "retain_epochs": 1, "batch_size": 16, "retain_lr": 0.05}
    reset, _ = run_method("kde", original, tiny_data, NO_TRAIN)
    model, _ = run_method("kde", copy.deepcopy(original), tiny_data, hp)
    assert changed(clone_state(reset), model) >= {"layer1.conv1", "layer2.conv2", "fc"}
