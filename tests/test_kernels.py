"""SmallMapConv2d: the dense form of convolutions over maps smaller than the kernel equals nn.Conv2d."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deepunlearn.kernels import SmallMapConv2d, use_small_map_convs
from deepunlearn.models import create_model
from deepunlearn.training import to_device

# (in_ch, out_ch, kernel, stride, padding, bias, input h×w): ResNet-18's layer3/layer4 cases and odd ones
CASES = [
    (16, 24, 3, 1, 1, False, (1, 1)),   # layer4 block convs: only the centre tap meets the pixel
    (16, 24, 3, 2, 1, False, (2, 2)),   # layer4.0.conv1: 2×2 → 1×1, four taps
    (16, 24, 3, 1, 1, True, (2, 2)),    # layer3 block convs: 2×2 → 2×2
    (8, 8, 5, 1, 2, True, (2, 3)),      # rectangular map, 5×5 kernel
    (8, 4, (3, 1), 1, (1, 0), False, (2, 1)),  # rectangular kernel
]


def _pair(kernel, stride, padding, cin, cout, bias):
    torch.manual_seed(0)
    ref = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=bias)
    fast = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=bias)
    fast.load_state_dict(ref.state_dict())
    return ref, use_small_map_convs(fast)


@pytest.mark.parametrize("cin,cout,kernel,stride,padding,bias,hw", CASES)
def test_dense_form_matches_conv_forward_and_gradients(cin, cout, kernel, stride, padding, bias, hw, monkeypatch):
    ref, fast = _pair(kernel, stride, padding, cin, cout, bias)
    x = torch.randn(5, cin, *hw)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya = ref(xa)
    with monkeypatch.context() as m:  # the dense branch must not fall back to the convolution
        m.setattr(torch.nn.modules.conv.F, "conv2d", lambda *a, **k: pytest.fail("convolution ran"))
        yb = fast(xb)
    assert ya.shape == yb.shape
    torch.testing.assert_close(yb, ya, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(ya)
    ya.backward(g)
    yb.backward(g)
    torch.testing.assert_close(xb.grad, xa.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fast.weight.grad, ref.weight.grad, atol=1e-5, rtol=1e-5)
    if bias:
        torch.testing.assert_close(fast.bias.grad, ref.bias.grad, atol=1e-5, rtol=1e-5)


def test_taps_that_only_meet_padding_get_exactly_zero_gradient():
    _, fast = _pair(3, 1, 1, 4, 4, False)
    fast(torch.randn(3, 4, 1, 1)).sum().backward()
    grad = fast.weight.grad
    assert grad[:, :, 1, 1].abs().sum() > 0
    grad[:, :, 1, 1] = 0
    assert torch.count_nonzero(grad) == 0


def test_large_maps_and_grouped_convs_keep_the_convolution_bit_for_bit():
    ref, fast = _pair(3, 1, 1, 4, 6, True)
    x = torch.randn(2, 4, 3, 3)  # 9 pixels = kernel area: not smaller, so the convolution runs
    assert not fast._dense_ok(x)
    assert torch.equal(fast(x), ref(x))
    grouped = use_small_map_convs(nn.Conv2d(4, 4, 3, padding=1, groups=4))
    assert not grouped._dense_ok(torch.zeros(1, 4, 1, 1))


def test_to_device_switches_resnet18_convs_without_changing_parameters_or_outputs():
    plain = create_model("resnet18", 10, seed=0)
    fast = to_device(create_model("resnet18", 10, seed=0), "cpu")
    convs = [m for m in fast.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(type(m) is SmallMapConv2d for m in convs)
    assert list(fast.state_dict()) == list(plain.state_dict())
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    plain.eval(), fast.eval()
    torch.testing.assert_close(fast(x), plain(x), atol=1e-4, rtol=1e-4)
    plain.train(), fast.train()
    F.cross_entropy(plain(x), y).backward()
    F.cross_entropy(fast(x), y).backward()
    for (name, p), q in zip(plain.named_parameters(), fast.parameters()):
        torch.testing.assert_close(q.grad, p.grad, atol=1e-4, rtol=1e-3, msg=name)


def test_training_works_after_the_first_use_was_under_inference_mode():
    # the tap table is cached per shape: an evaluation (inference_mode) may be its first user
    from deepunlearn.kernels import _tap_table

    _tap_table.cache_clear()
    _, fast = _pair(3, 1, 1, 4, 4, False)
    with torch.inference_mode():
        fast(torch.randn(2, 4, 1, 1))
    fast(torch.randn(2, 4, 1, 1)).sum().backward()
    assert fast.weight.grad is not None
