"""BT (spec D.6): retain outputs follow the Original, forget outputs follow a random ResNet-18."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision

from conftest import below, same_weights
from deepunlearn.methods import frozen_logits, run_method, study_cache
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
    good_t = frozen_logits(fitted_tinycnn.eval(), tiny_data, ["retain"], "original")
    bad_t = frozen_logits(bad, tiny_data, ["forget"], "bad")
    idx = torch.cat([tiny_data.indices("retain")[:3], tiny_data.indices("forget")[:3]])[[0, 3, 1, 4, 2, 5]]
    is_forget = torch.zeros(tiny_data.labels.numel(), dtype=torch.bool)
    is_forget[tiny_data.indices("forget")] = True
    p = bt_targets(idx, is_forget, good_t, bad_t, 2.0)
    rows = is_forget[idx]
    assert rows.tolist() == [False, True, False, True, False, True]
    # each row is its own teacher's softmax at τ, as the teachers run on the batch itself (reference) give it
    torch.testing.assert_close(p[rows], F.softmax(predict(bad, tiny_data, idx) / 2.0, 1)[rows])
    torch.testing.assert_close(p[~rows], F.softmax(predict(fitted_tinycnn, tiny_data, idx) / 2.0, 1)[~rows])


def test_a_teachers_table_is_its_logits_once_per_study(fitted_tinycnn, tiny_data, monkeypatch):
    calls = []
    model = fitted_tinycnn.eval()
    real = model.forward
    monkeypatch.setattr(model, "forward", lambda x: calls.append(len(x)) or real(x))  # undone even on failure
    want = predict(model, tiny_data, "retain")
    calls.clear()
    table = frozen_logits(model, tiny_data, ["retain"], "original")
    torch.testing.assert_close(table[tiny_data.indices("retain")], want)
    assert table[tiny_data.indices("forget")].abs().max() == 0  # rows outside its splits stay zero
    assert calls, "the table did not run the teacher"
    calls.clear()
    with study_cache({}):
        first = frozen_logits(model, tiny_data, ["retain"], "original")
        n_first = len(calls)
        again = frozen_logits(model, tiny_data, ["retain"], "original")
        assert again is first and len(calls) == n_first, "a later trial of the study ran the teacher again"
        frozen_logits(model, tiny_data, ["forget"], "original")
        assert len(calls) > n_first, "other splits must get their own table"


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
