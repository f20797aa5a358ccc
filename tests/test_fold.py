"""BatchNorm folding for inference: same logits up to rounding, the input model untouched, unknown flows left alone."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from deepunlearn.fold import bn_pairs, folded
from deepunlearn.models import create_model
from deepunlearn.training import inference_model, predict, to_device


def _with_running_stats(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters (a fresh one is the identity)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))
    return model


@pytest.mark.parametrize("arch", ["tinycnn", "smallresnet", "resnet18", "tinyvit"])
def test_folded_model_gives_the_same_logits_and_has_no_batchnorm_left(arch: str) -> None:
    model = to_device(_with_running_stats(create_model(arch, 10, seed=0)), "cpu").eval()
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    f = folded(model)
    assert f is not model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in f.modules())
    with torch.no_grad():
        ref, out = model(x), f(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the input is not changed
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert folded(f) is f  # already folded: no second copy


def test_known_answer_for_one_channel() -> None:
    conv = nn.Conv2d(1, 1, 1, bias=False)
    bn = nn.BatchNorm2d(1, eps=0.0)
    with torch.no_grad():
        conv.weight.fill_(2.0)
        bn.running_mean.fill_(1.0)
        bn.running_var.fill_(4.0)
        bn.weight.fill_(3.0)
        bn.bias.fill_(0.5)
    f = folded(nn.Sequential(conv, bn).eval())
    # y = 3·(2x − 1)/2 + 0.5 = 3x − 1
    assert f[0].weight.item() == 3.0 and f[0].bias.item() == -1.0
    assert isinstance(f[1], nn.Identity)


def test_an_unknown_data_flow_is_not_folded() -> None:
    class PreAct(nn.Module):
        """bn1 runs before conv1 here: folding by names would be wrong, so it must not happen."""

        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

        def forward(self, x):
            return self.conv1(self.bn1(x))

    model = _with_running_stats(PreAct()).eval()
    assert bn_pairs(model) == []
    assert folded(model) is model


def test_predict_folds_and_leaves_the_models_mode(tiny_data) -> None:
    model = to_device(_with_running_stats(create_model("tinycnn", tiny_data.num_classes, seed=0)), "cpu").train()
    assert inference_model(model) is not model and model.training  # the caller's mode comes back
    with torch.no_grad():
        ref = model.eval()(tiny_data.inputs(tiny_data.indices("val")))
    model.train()
    out = predict(model, tiny_data, "val")
    assert model.training
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
