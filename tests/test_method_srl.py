"""SRL (spec D.4): forget samples get uniform random labels, retain samples keep theirs."""

from __future__ import annotations

import copy

import torch

from conftest import same_weights, train_tiny
from deepunlearn.data.loader import make_generator
from deepunlearn.methods import run_method
from deepunlearn.methods.srl import relabeled_batches
from deepunlearn.training import sgd, train_epoch


def _epoch(data, gen):
    idx, y = zip(*[(i, yy) for _, yy, i in relabeled_batches(data, 64, gen, label_seed=123)])
    return torch.cat(idx), torch.cat(y)


def test_forget_labels_are_random_and_retain_labels_true(digits):
    idx, y = _epoch(digits, make_generator("cpu", 0))
    expected = torch.cat([digits.indices("forget"), digits.indices("retain")])
    assert torch.equal(idx.sort().values, expected.sort().values)  # each sample exactly once
    forget = torch.isin(idx, digits.indices("forget"))
    assert torch.equal(y[~forget], digits.labels[idx[~forget]])
    assert y.min() >= 0 and y.max() < digits.num_classes
    # uniform labels equal the true one for ~1/C of the 128 forget samples: expect ~90% changed
    changed = (y[forget] != digits.labels[idx[forget]]).float().mean()
    assert 0.8 < changed < 0.98
    assert y[forget].unique().numel() == digits.num_classes


def test_label_stream_restarts_each_epoch_on_other_samples(digits):
    gen = make_generator("cpu", 0)
    (i1, y1), (i2, y2) = _epoch(digits, gen), _epoch(digits, gen)
    f1, f2 = torch.isin(i1, digits.indices("forget")), torch.isin(i2, digits.indices("forget"))
    assert torch.equal(y1[f1], y2[f2])  # the same label sequence in access order...
    assert not torch.equal(i1[f1], i2[f2])  # ...lands on different forget samples
    by_sample1 = dict(zip(i1[f1].tolist(), y1[f1].tolist()))
    by_sample2 = dict(zip(i2[f2].tolist(), y2[f2].tolist()))
    assert by_sample1 != by_sample2


def test_srl_without_forget_samples_is_plain_sgd_on_retain(tiny_data):
    original = train_tiny("tinycnn", tiny_data)
    data = tiny_data.with_splits(forget=torch.empty(0, dtype=torch.int64))
    hp = {"epochs": 2, "batch_size": 16, "lr": 0.05}
    model, _ = run_method("srl", original, data, hp)
    ref = copy.deepcopy(original)
    opt, gen = sgd(ref, 0.05, 0.9, 5e-4), make_generator("cpu", 123)
    for _ in range(2):  # no scheduler
        train_epoch(ref, opt, data.batches("retain", 16, shuffle=True, generator=gen))
    assert same_weights(model, ref)
