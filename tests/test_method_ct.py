"""CT (spec D.17): every conv kernel is spatially transposed, then fine-tuned on retain."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from conftest import clone_state
from deepunlearn.methods import get_method, run_method
from deepunlearn.methods.ct import transpose_convs
from deepunlearn.methods.space import NONNEG
from deepunlearn.models import create_model


def conv_names(model: nn.Module) -> set[str]:
    return {f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize("arch", ["resnet18", "tinyvit"])
def test_transpose_convs_transposes_every_conv_kernel_and_nothing_else(arch):
    model = create_model(arch, 10, seed=0)
    before = clone_state(model)
    convs = conv_names(model)
    transpose_convs(model)
    after = model.state_dict()
    assert after.keys() == before.keys()
    moved = 0
    for k in before:
        if k in convs:
            assert torch.equal(after[k], before[k].transpose(2, 3))
            moved += not torch.equal(after[k], before[k])
        else:
            assert torch.equal(after[k], before[k]), k
    assert moved > 0  # 3×3 / 7×7 / depthwise kernels really changed (1×1 ones cannot)
    transpose_convs(model)  # an involution
    assert all(torch.equal(model.state_dict()[k], before[k]) for k in before)


def test_ct_starts_from_the_transposed_original_and_fine_tunes(tiny_data, monkeypatch):
    monkeypatch.setitem(get_method("ct").domains, "lr", NONNEG)  # lr 0 is no user value, but it freezes SGD here
    original = create_model("tinycnn", tiny_data.num_classes, seed=0)
    expected = create_model("tinycnn", tiny_data.num_classes, seed=0)
    transpose_convs(expected)
    # lr 0: the fine-tuning steps are no-ops, so the parameters are exactly the transposed ones
    frozen, _ = run_method("ct", original, tiny_data, {"lr": 0.0, "epochs": 1, "batch_size": 16})
    for (n, p), q in zip(frozen.named_parameters(), expected.parameters()):
        assert torch.equal(p, q), n
    tuned, _ = run_method("ct", original, tiny_data, {"lr": 0.05, "epochs": 1, "batch_size": 16})
    assert not torch.equal(tuned.fc.weight, expected.fc.weight)
