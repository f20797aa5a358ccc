"""BT (spec D.6): retain outputs follow the Original, forget outputs follow a random ResNet-18."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision

from conftest import below, same_weights
from deepunlearn.methods import run_method
from deepunlearn.methods.bt import bt_loss, bt_targets, incompetent_teacher
from deepunlearn.training import predict


def _kl(teacher_logits, student_logits):
    """Mean over samples of KL(softmax(t) ‖ softmax(s))."""
    p = F.softmax(teacher_logits, 1)
    return (p * (F.log_softmax(teacher_logits, 1) - F.log_softmax(student_logits, 1))).sum(1).mean().item()


def test_loss_is_kl_averaged_over_batch_and_classes_without_tau_squared():
    s, t, tau = torch.randn(5, 4), torch.randn(5, 4), 2.5
    p, log_q = F.softmax(t / tau, 1), F.log_softmax(s / tau, 1)
    expected = (p * (p.log() - log_q)).sum() / (5 * 4)
    torch.testing.assert_close(bt_loss(s, p, tau), expected)


def test_incompetent_teacher_is_a_seeded_random_resnet18(tiny_data):
    torch.manual_seed(123)
    a, b = incompetent_teacher(tiny_data), incompetent_teacher(tiny_data)
    assert isinstance(a, torchvision.models.ResNet) and not a.training
    assert same_weights(a, b)  # drawn from the run seed, whatever the student is


def test_targets_pick_the_bad_teacher_for_forget_rows(fitted_tinycnn, tiny_data):
    bad = incompetent_teacher(tiny_data)
    x = tiny_data.inputs(tiny_data.indices("retain")[:6])
    is_forget = torch.tensor([True, False, True, False, False, True])
    p = bt_targets(x, is_forget, fitted_tinycnn.eval(), bad, 2.0)
    torch.testing.assert_close(p[is_forget], F.softmax(predict(bad, tiny_data, tiny_data.indices("retain")[:6])
                                                       / 2.0, 1)[is_forget])
    torch.testing.assert_close(p[~is_forget], F.softmax(predict(fitted_tinycnn, tiny_data,
                                                                tiny_data.indices("retain")[:6]) / 2.0, 1)[~is_forget])
    # a batch of one kind only: the other teacher is not run, and the targets are still each row's
    for rows in (torch.zeros(6, dtype=torch.bool), torch.ones(6, dtype=torch.bool)):
        want = predict(bad if rows[0] else fitted_tinycnn, tiny_data, tiny_data.indices("retain")[:6])
        torch.testing.assert_close(bt_targets(x, rows, fitted_tinycnn.eval(), bad, 2.0), F.softmax(want / 2.0, 1))


def test_student_follows_each_sets_teacher(fitted_tinycnn, tiny_data):
    # Optimised near convergence at a stable step size (Adam 3e-3, 30 epochs of 2 batches), the property
    # does not hinge on SGD's chaos: `make test-margins` (fixture seeds 0-4, and the portable float path)
    # shows each check holding with >= 3x to spare. BT's default lr 0.01 for 5 epochs left the student
    # far from both teachers, on one side or the other by seed and CPU: the old first check failed on 5 of
    # fixture seeds 0-5 on this machine.
    data = tiny_data.with_splits(retain=tiny_data.indices("retain")[:16])
    torch.manual_seed(123)  # the run seed, so this is the teacher the method draws
    bad = incompetent_teacher(data)
    bad_f, bad_r = predict(bad, data, "forget"), predict(bad, data, "retain")
    good_f, good_r = predict(fitted_tinycnn, data, "forget"), predict(fitted_tinycnn, data, "retain")
    model, _ = run_method("bt", fitted_tinycnn, data, {"epochs": 30, "batch_size": 16, "lr": 3e-3})
    s_f, s_r = predict(model, data, "forget"), predict(model, data, "retain")
    # forget outputs pulled towards the random teacher, and away from the Original; retain outputs stay
    below(_kl(bad_f, s_f), 0.25 * _kl(bad_f, good_f), "bt: KL(bad, student) on forget < 0.25 x at start")
    below(_kl(bad_f, s_f), 0.5 * _kl(good_f, s_f), "bt: forget closer to bad than to Original (x2)")
    below(_kl(good_r, s_r), _kl(bad_r, s_r), "bt: retain closer to Original than to bad")
