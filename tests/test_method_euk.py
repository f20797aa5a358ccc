"""EU-k (spec D.12): the last k blocks and the classifier are re-initialised, then retrained; the rest untouched."""

from __future__ import annotations

import math

import torch

from conftest import clone_state
from deepunlearn.data.loader import DeviceData
from deepunlearn.methods import get_method, run_method
from deepunlearn.models import create_model

TRAINABLE = ("layer2.", "fc.")  # tinycnn: k = 1 is layer2, plus the classifier


def test_reinitialises_last_k_blocks_and_classifier(tiny_data, monkeypatch):
    augment_flags = []
    batches = DeviceData.batches

    def spy(self, split, batch_size, **kw):
        augment_flags.append((split, kw.get("augment", False)))
        return batches(self, split, batch_size, **kw)

    monkeypatch.setattr(DeviceData, "batches", spy)
    original = create_model("tinycnn", tiny_data.num_classes, seed=0)
    before = clone_state(original)
    # lr tiny: the result stays at the re-initialised values up to ~1e-6
    model, _ = run_method("euk", original, tiny_data, {"epochs": 1, "batch_size": 16, "num_blocks": 1, "lr": 1e-6})
    after = model.state_dict()
    assert augment_flags == [("retain", True)]  # train-state augmentation on the retain pass
    for name, _ in original.named_parameters():
        assert torch.equal(after[name], before[name]) != name.startswith(TRAINABLE), name
    for name, _ in original.named_buffers():  # running statistics are neither reset nor updated
        assert torch.equal(after[name], before[name]), name
    for conv in ("layer2.conv1.weight", "layer2.conv2.weight"):  # kaiming-uniform, fan_out, relu
        w = after[conv]
        bound = math.sqrt(2) * math.sqrt(3 / (w.shape[0] * w[0, 0].numel()))
        assert w.abs().max() <= bound * 1.001
        assert abs(w.std().item() / (bound / math.sqrt(3)) - 1) < 0.1
        assert not torch.allclose(w, before[conv], atol=1e-2)
    fc = after["fc.weight"]  # xavier-uniform
    bound = math.sqrt(6 / (fc.shape[0] + fc.shape[1]))
    assert fc.abs().max() <= bound * 1.001 and fc.abs().max() > 0.8 * bound
    for name in ("layer2.bn1.weight", "layer2.bn2.weight", "layer2.downsample.1.weight"):
        torch.testing.assert_close(after[name], torch.ones_like(after[name]), atol=1e-4, rtol=0)
    for name in ("layer2.bn1.bias", "layer2.bn2.bias", "fc.bias"):
        torch.testing.assert_close(after[name], torch.zeros_like(after[name]), atol=1e-4, rtol=0)


def test_dead_hyperparameters_not_searched():
    assert "training_epoch_factor" not in get_method("euk").searched()
    assert set(get_method("euk").searched()) == set(get_method("cfk").searched())
