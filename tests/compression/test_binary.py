"""Binary layers: sign and its straight-through gradient, bit packing, alpha scaling, shortcuts."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from netzip_mlflow.compression.binary import (
    BinaryConv2d,
    BinaryLinear,
    BinaryOptions,
    PackedBinaryConv2d,
    PackedBinaryLinear,
    add_shortcut,
    sign_ste,
)
from netzip_mlflow.compression.bitpack import pack_signs, packed_bytes, unpack_signs


def test_sign_forward_and_straight_through_gradient_by_hand() -> None:
    x = torch.tensor([-2.0, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5], requires_grad=True)
    upstream = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    y = sign_ste(x)
    y.backward(upstream)
    assert y.tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0]  # sign(0) = +1
    # |x| <= 1 passes the gradient unchanged (the bounds included), zero outside
    assert x.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]


def test_pack_signs_layout_by_hand() -> None:
    signs = torch.tensor([1.0, -1.0, 0.0, 3.0, -2.0, -1.0, -0.1, 5.0, -1.0, 2.0])
    packed = pack_signs(signs)
    # byte 0: elements 0..7 -> bits 1,0,1,1,0,0,0,1 (LSB first) = 1 + 4 + 8 + 128
    # byte 1: elements 8, 9 -> bits 0,1, then zero padding = 2
    assert packed.dtype == torch.uint8 and packed.tolist() == [141, 2]
    assert unpack_signs(packed, (10,)).tolist() == [1, -1, 1, 1, -1, -1, -1, 1, -1, 1]


@pytest.mark.parametrize("shape", [(1,), (7,), (8,), (9,), (3, 5, 3, 3)])
def test_pack_unpack_round_trip(shape: tuple[int, ...]) -> None:
    values = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    packed = pack_signs(values)
    numel = values.numel()
    assert packed.numel() == packed_bytes(numel) == (numel + 7) // 8
    assert torch.equal(unpack_signs(packed, shape), torch.where(values >= 0, 1.0, -1.0))


def test_unpack_refuses_the_wrong_byte_count() -> None:
    with pytest.raises(ValueError, match="need 2 uint8 bytes"):
        unpack_signs(torch.zeros(3, dtype=torch.uint8), (4, 4))


def _conv(seed: int = 0, **kwargs: object) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(4, 6, 3, padding=1, **kwargs)


def test_packed_weights_are_plus_minus_alpha_per_output_channel() -> None:
    conv = _conv(bias=False)
    with torch.no_grad():
        conv.weight[2, 1, 0, 0] = 0.0  # sign(0) must be +1
    trained = BinaryConv2d.from_float(conv, BinaryOptions(scaling=True, binary_activations=True))
    packed = PackedBinaryConv2d.from_trained(trained)
    weight = packed.binary_weight()
    latent = conv.weight.detach()
    for channel in range(6):
        alpha = latent[channel].abs().sum() / latent[channel].numel()  # mean |W|, by hand
        assert torch.allclose(weight[channel].abs(), alpha.expand_as(weight[channel]), rtol=0, atol=0)
        expected = torch.where(latent[channel] >= 0, 1.0, -1.0)
        assert torch.equal(torch.sign(weight[channel]), expected)
    assert weight[2, 1, 0, 0] > 0
    assert packed.packed_weight.dtype == torch.uint8
    assert packed.packed_weight.numel() == (6 * 4 * 9 + 7) // 8
    assert set(dict(packed.named_parameters())) == set()  # only buffers: packed signs and scales


def test_without_scaling_weights_are_exactly_plus_minus_one() -> None:
    trained = BinaryConv2d.from_float(_conv(), BinaryOptions(scaling=False, binary_activations=True))
    packed = PackedBinaryConv2d.from_trained(trained)
    assert set(packed.binary_weight().unique().tolist()) <= {-1.0, 1.0}
    assert packed.scale is None
    assert torch.equal(packed.bias, trained.bias)  # the bias stays float


def test_training_and_packed_layers_compute_the_same() -> None:
    x = torch.randn(2, 4, 5, 5, generator=torch.Generator().manual_seed(1))
    for options in (BinaryOptions(True, True, True), BinaryOptions(False, False, False)):
        trained = BinaryConv2d.from_float(_conv(), options).eval()
        packed = PackedBinaryConv2d.from_trained(trained)
        with torch.no_grad():
            assert torch.equal(trained(x), packed(x))
    linear = nn.Linear(5, 3)
    trained_linear = BinaryLinear.from_float(linear, BinaryOptions(True, True)).eval()
    with torch.no_grad():
        assert torch.equal(trained_linear(x[:, 0, 0]), PackedBinaryLinear.from_trained(trained_linear)(x[:, 0, 0]))


def test_binary_activations_and_float_activations_by_hand() -> None:
    conv = _conv()
    x = torch.randn(1, 4, 5, 5, generator=torch.Generator().manual_seed(2))
    signs = torch.where(conv.weight >= 0, 1.0, -1.0)
    binary = PackedBinaryConv2d.from_trained(BinaryConv2d.from_float(conv, BinaryOptions(False, True)))
    bwn = PackedBinaryConv2d.from_trained(BinaryConv2d.from_float(conv, BinaryOptions(False, False)))
    with torch.no_grad():
        x_sign = torch.where(x >= 0, 1.0, -1.0)
        assert torch.allclose(binary(x), F.conv2d(x_sign, signs, conv.bias, padding=1))
        assert torch.allclose(bwn(x), F.conv2d(x, signs, conv.bias, padding=1))


def test_latent_weights_are_clipped_and_trained_through_the_estimator() -> None:
    conv = _conv()
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] = 3.0
    layer = BinaryConv2d.from_float(conv, BinaryOptions(False, True)).train()
    out = layer(torch.randn(2, 4, 5, 5))
    assert float(layer.weight.detach().max()) <= 1.0  # larq's weight_clip before the training forward
    out.sum().backward()
    assert layer.weight.grad is not None and float(layer.weight.grad.abs().sum()) > 0


def test_add_shortcut_pools_and_repeats_channels_by_hand() -> None:
    inputs = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    outputs = torch.zeros(1, 4, 2, 2)
    result = add_shortcut(inputs, outputs)
    pooled = inputs.reshape(1, 2, 2, 2, 2, 2).mean(dim=(3, 5))  # 2x2 average pooling
    assert torch.equal(result, torch.cat([pooled, pooled], dim=1))
    fewer = add_shortcut(inputs, torch.zeros(1, 1, 4, 4))
    assert torch.equal(fewer, inputs.mean(dim=1, keepdim=True))


def test_layer_shortcut_adds_the_real_input() -> None:
    conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)
    x = torch.randn(1, 4, 5, 5)
    plain = PackedBinaryConv2d.from_trained(BinaryConv2d.from_float(conv, BinaryOptions(False, True)))
    bireal = PackedBinaryConv2d.from_trained(BinaryConv2d.from_float(conv, BinaryOptions(False, True, True)))
    with torch.no_grad():
        assert torch.allclose(bireal(x), plain(x) + x)


def test_unpacked_cache_follows_the_packed_bytes_and_is_not_pickled() -> None:
    import pickle

    packed = PackedBinaryConv2d.from_trained(BinaryConv2d.from_float(_conv(), BinaryOptions(True, True)))
    first = packed.binary_weight()
    assert packed.binary_weight() is first  # cached
    with torch.no_grad():
        packed.packed_weight.bitwise_not_()
    assert torch.equal(packed.binary_weight(), -first)  # the cache follows the bytes
    restored = pickle.loads(pickle.dumps(packed))
    assert restored._cache is None and torch.equal(restored.binary_weight(), -first)
