"""count_ops against closed forms, FlopCounterMode and the paper's ResNet18 figures."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.ao.quantization import get_default_qat_qconfig_mapping, quantize_dynamic
from torch.ao.quantization.quantize_fx import prepare_qat_fx
from torch.utils.flop_counter import FlopCounterMode

from netzip_mlflow.errors import DataError, ModelError
from netzip_mlflow.evaluation.ops import (
    COLUMNS,
    LayerOps,
    OpsReport,
    count_ops,
    recurrent_macs,
)
from netzip_mlflow.tracking import keys

SMALL_CNN_MACS = (
    16 * 16 * 8 * 3 * 3 * 3  # conv1: 16x16 out, 8 channels, 3 in-channels x 3x3
    + 8 * 8 * 8 * 1 * 3 * 3  # conv2: stride 2 -> 8x8, depthwise: 1 in-channel per group
    + 8 * 8 * 16 * 8  # conv3: 1x1
    + 16 * 10  # fc
)


def _conv_out(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _by_name(report: OpsReport) -> dict[str, LayerOps]:
    return {layer.name: layer for layer in report.per_layer}


class QKt(nn.Module):
    """A weightless layer: attention scores Q K^T of (B, L, D) x (B, D, L)."""

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return torch.bmm(q, k.transpose(1, 2))


class Sdpa(nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v)


class AttentionBlock(nn.Module):
    """A parent that owns no weights and does its own matmul between its children's outputs."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.q(x) @ self.k(x).transpose(-1, -2)


# --- closed forms -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("c_in", "c_out", "kernel", "stride", "padding", "dilation", "groups", "bias"),
    [
        (3, 8, 3, 1, 0, 1, 1, True),
        (3, 8, 3, 1, 0, 1, 1, False),  # bias does not change MACs
        (4, 6, 5, 2, 2, 1, 1, True),
        (8, 8, 3, 1, 1, 1, 8, True),  # depthwise
        (8, 12, 3, 2, 1, 1, 4, False),  # grouped
        (6, 4, 3, 1, 2, 2, 2, True),  # dilated, grouped
    ],
)
def test_conv2d_macs(
    c_in: int,
    c_out: int,
    kernel: int,
    stride: int,
    padding: int,
    dilation: int,
    groups: int,
    bias: bool,
) -> None:
    conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, dilation, groups, bias)
    height, width = 13, 10
    report = count_ops(conv, torch.randn(2, c_in, height, width))
    out_h = _conv_out(height, kernel, stride, padding, dilation)
    out_w = _conv_out(width, kernel, stride, padding, dilation)
    expected = 2 * c_out * out_h * out_w * (c_in // groups) * kernel * kernel
    assert report.macs == expected
    assert report.chats == 32 * expected
    assert report.per_layer[0].bits == 32


def test_linear_macs_on_a_batch_of_vectors_and_of_sequences() -> None:
    linear = nn.Linear(7, 5)
    assert count_ops(linear, torch.randn(3, 7)).macs == 3 * 7 * 5
    assert count_ops(linear, torch.randn(4, 9, 7)).macs == 4 * 9 * 7 * 5


def test_matmul_of_activations_macs_and_bits_follow_the_operands() -> None:
    batch, length, dim = 2, 6, 8
    q, k = torch.randn(batch, length, dim), torch.randn(batch, length, dim)
    report = count_ops(QKt(), (q, k))
    assert report.macs == batch * length * length * dim
    assert report.per_layer[0].bits == 32
    assert report.per_layer[0].params == 0
    half = count_ops(QKt().half(), (q.half(), k.half()))
    assert half.per_layer[0].bits == 16
    assert half.chats == 16 * half.macs


def test_scaled_dot_product_attention_macs() -> None:
    batch, heads, length, dim = 2, 3, 7, 8
    q = torch.randn(batch, heads, length, dim)
    report = count_ops(Sdpa(), (q, q, q))
    assert report.macs == 2 * batch * heads * length * length * dim  # Q K^T and A V


class SelfAttention(nn.Module):
    """``mha(x, x, x)`` as a module (MultiheadAttention returns the weights too)."""

    def __init__(self, mha: nn.MultiheadAttention) -> None:
        super().__init__()
        self.attn = mha

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x, x, x)[0]


def test_multihead_attention_macs() -> None:
    batch, length, dim, heads = 2, 5, 16, 4
    mha = nn.MultiheadAttention(dim, heads, batch_first=True)
    x = torch.randn(batch, length, dim)

    report = count_ops(SelfAttention(mha), x)
    projections = batch * length * dim * 3 * dim + batch * length * dim * dim
    attention = 2 * batch * length * length * dim
    assert report.macs == projections + attention


def test_transformer_encoder_layer_macs_and_fastpath_restored() -> None:
    batch, length, dim, heads, ff = 2, 6, 16, 4, 32
    layer = nn.TransformerEncoderLayer(dim, heads, ff, batch_first=True)
    fastpath = torch.backends.mha.get_fastpath_enabled()
    report = count_ops(layer, torch.randn(batch, length, dim))
    tokens = batch * length
    expected = tokens * (4 * dim * dim + 2 * dim * ff) + 2 * batch * length * length * dim
    assert report.macs == expected
    assert torch.backends.mha.get_fastpath_enabled() == fastpath


def test_macs_of_a_weightless_parent_go_to_the_parent() -> None:
    batch, length, dim = 1, 4, 6
    report = count_ops(AttentionBlock(dim), torch.randn(batch, length, dim))
    layers = _by_name(report)
    assert layers["q"].macs == layers["k"].macs == batch * length * dim * dim
    assert layers["(model)"].macs == batch * length * length * dim
    assert layers["(model)"].bits == 32
    assert report.macs == 2 * batch * length * dim * dim + batch * length * length * dim


@pytest.mark.parametrize(
    ("module", "per_token"),
    [
        (nn.LSTM(8, 16, num_layers=2), 4 * 16 * (8 + 16) + 4 * 16 * (16 + 16)),
        (nn.GRU(8, 16, bidirectional=True), 2 * 3 * 16 * (8 + 16)),
        (nn.RNN(8, 16), 16 * (8 + 16)),
        (nn.LSTM(8, 16, proj_size=4), 4 * 16 * (8 + 4) + 16 * 4),
        (nn.LSTMCell(8, 16), 4 * 16 * (8 + 16)),
        (nn.GRUCell(8, 16), 3 * 16 * (8 + 16)),
    ],
)
def test_recurrent_macs_closed_form(module: nn.Module, per_token: int) -> None:
    cell = isinstance(module, nn.RNNCellBase)
    x = torch.randn(3, 8) if cell else torch.randn(5, 3, 8)
    tokens = 3 if cell else 15
    assert count_ops(module, x).macs == tokens * per_token
    assert recurrent_macs(module, x) == tokens * per_token


def test_dynamic_quantized_lstm_and_linear_keep_macs_and_count_8_bits() -> None:
    class Tagger(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True)
            self.cell = nn.LSTMCell(16, 16)
            self.fc = nn.Linear(16, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.lstm(x)[0]
            return self.fc(self.cell(out[:, -1])[0])

    torch.manual_seed(0)
    model = Tagger().eval()
    x = torch.randn(3, 5, 8)
    dynamic = quantize_dynamic(
        copy.deepcopy(model), {nn.LSTM, nn.LSTMCell, nn.Linear}, dtype=torch.qint8
    )
    float_report, dynamic_report = count_ops(model, x), count_ops(dynamic, x)
    expected = 15 * (4 * 16 * 24 + 4 * 16 * 32) + 3 * 4 * 16 * 32 + 3 * 16 * 4
    assert float_report.macs == dynamic_report.macs == expected
    assert {layer.bits for layer in dynamic_report.per_layer} == {8}
    assert dynamic_report.chats * 4 == float_report.chats


def test_dynamic_fp16_linear_and_lstm_count_16_bits() -> None:
    model = nn.Sequential(nn.LSTM(8, 4), nn.Linear(4, 4)).eval()

    class Last(nn.Module):
        def forward(self, out: tuple[torch.Tensor, object]) -> torch.Tensor:
            return out[0]

    model.insert(1, Last())
    dynamic = quantize_dynamic(copy.deepcopy(model), {nn.LSTM, nn.Linear}, dtype=torch.float16)
    report = count_ops(dynamic, torch.randn(5, 2, 8))
    assert report.macs == count_ops(model, torch.randn(5, 2, 8)).macs == 10 * (4 * 4 * 12 + 4 * 4)
    assert [layer.bits for layer in report.per_layer] == [16, 16]


# --- quantized, fp16, QAT models ----------------------------------------------------------------


def test_float_small_cnn_matches_hand_count(small_cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    report = count_ops(small_cnn, cnn_input)
    assert report.macs == SMALL_CNN_MACS
    assert report.chats == 32 * SMALL_CNN_MACS


@pytest.mark.parametrize("quantized_fixture", ["eager_int8_cnn", "fx_int8_cnn"])
def test_static_int8_model_keeps_macs_and_quarters_chats(
    quantized_fixture: str,
    small_cnn: nn.Module,
    cnn_input: torch.Tensor,
    request: pytest.FixtureRequest,
) -> None:
    quantized = request.getfixturevalue(quantized_fixture)
    report = count_ops(quantized, cnn_input)
    assert report.macs == count_ops(small_cnn, cnn_input).macs == SMALL_CNN_MACS
    assert report.chats == 8 * SMALL_CNN_MACS
    mac_layers = [layer for layer in report.per_layer if layer.macs]
    assert len(mac_layers) == 4
    assert all(layer.bits == 8 and layer.type.startswith("Quantized") for layer in mac_layers)


def test_quantized_resnet_macs_equal_float_and_chats_are_a_quarter(
    resnet_fx_int8: tuple[nn.Module, nn.Module, torch.Tensor],
) -> None:
    float_model, quantized, x = resnet_fx_int8
    float_report, quantized_report = count_ops(float_model, x), count_ops(quantized, x)
    assert quantized_report.macs == float_report.macs
    assert quantized_report.chats * 4 == float_report.chats


def test_fp16_model_runs_on_fp32_inputs_and_counts_16_bits(
    small_cnn: nn.Module, cnn_input: torch.Tensor
) -> None:
    half = copy.deepcopy(small_cnn).half()
    report = count_ops(half, cnn_input)
    assert report.macs == SMALL_CNN_MACS
    assert report.chats == 16 * SMALL_CNN_MACS
    assert next(half.parameters()).dtype == torch.float16


def test_qat_model_keeps_macs_and_computes_in_fp32(
    small_cnn: nn.Module, cnn_input: torch.Tensor
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qat = prepare_qat_fx(
            copy.deepcopy(small_cnn).train(), get_default_qat_qconfig_mapping("x86"), (cnn_input,)
        )
    report = count_ops(qat, cnn_input)
    assert report.macs == SMALL_CNN_MACS
    assert report.chats == 32 * SMALL_CNN_MACS
    assert qat.training


# --- sparsity -----------------------------------------------------------------------------------


def test_effective_macs_scale_with_the_weight_density() -> None:
    conv = nn.Conv2d(4, 8, 3)
    with torch.no_grad():
        conv.weight.view(-1)[: conv.weight.numel() // 4] = 0.0  # 25% of the weights, bias untouched
    report = count_ops(conv, torch.randn(1, 4, 10, 10))
    dense = 8 * 8 * 8 * 4 * 3 * 3
    assert report.macs == dense
    assert report.macs_effective == pytest.approx(0.75 * dense)
    assert report.chats_effective == pytest.approx(32 * 0.75 * dense)
    layer = report.per_layer[0]
    assert layer.params == 8 * 4 * 9 + 8
    assert layer.params_nonzero == 8 * 4 * 9 * 3 // 4 + 8
    assert layer.sparsity == pytest.approx(1 - layer.params_nonzero / layer.params)


def test_effective_macs_of_an_int8_model_count_zeros_of_the_integers(
    small_cnn: nn.Module, cnn_input: torch.Tensor, cnn_quantizer: Callable[[nn.Module], nn.Module]
) -> None:
    with torch.no_grad():
        small_cnn.conv3.weight.view(-1)[::2] = 0.0  # half of conv3's weights
    quantized = cnn_quantizer(small_cnn)
    conv3 = _by_name(count_ops(quantized, cnn_input))["conv3"]
    zeros = int((quantized.conv3.weight().int_repr() == 0).sum())
    assert zeros >= 64  # the pruned weights stay exactly zero after quantization
    assert conv3.macs_effective == pytest.approx(conv3.macs * (1 - zeros / 128))


# --- the paper's check and agreement with FlopCounterMode ---------------------------------------


def test_resnet18_matches_paper_table_3_and_flop_counter() -> None:
    model = torchvision.models.resnet18().eval()
    x = torch.randn(1, 3, 224, 224)
    report = count_ops(model, x)
    assert report.macs == pytest.approx(1.81e9, rel=0.01)
    assert report.chats == 32 * report.macs
    assert report.chats / 1e9 == pytest.approx(57.92, rel=0.01)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    assert report.macs == counter.get_total_flops() // 2


@pytest.mark.parametrize(
    "builder", [torchvision.models.mobilenet_v3_small, torchvision.models.squeezenet1_1]
)
def test_torchvision_models_agree_with_flop_counter(builder: object) -> None:
    model = builder().eval()  # type: ignore[operator]
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    assert count_ops(model, x).macs == pytest.approx(counter.get_total_flops() / 2, rel=0.01)


# --- contract: report, model untouched, errors --------------------------------------------------


def test_report_metrics_dataframe_and_csv(
    small_cnn: nn.Module, cnn_input: torch.Tensor, tmp_path: Path
) -> None:
    report = count_ops(small_cnn, cnn_input)
    assert report.as_metrics() == {
        keys.MACS: float(report.macs),
        keys.MACS_EFFECTIVE: report.macs_effective,
        keys.CHATS: float(report.chats),
        keys.CHATS_EFFECTIVE: report.chats_effective,
    }
    frame = report.to_dataframe()
    assert tuple(frame.columns) == COLUMNS == (
        "name", "type", "macs", "macs_effective", "bits", "params", "params_nonzero", "sparsity"
    )  # fmt: skip
    assert list(frame["name"]) == ["conv1", "conv2", "conv3", "fc"]
    assert frame["macs"].sum() == report.macs
    path = report.write_csv(tmp_path / "ops.csv")
    pd.testing.assert_frame_equal(pd.read_csv(path), frame, check_dtype=False)


def test_model_is_left_as_it_was(small_cnn: nn.Module, cnn_input: torch.Tensor) -> None:
    small_cnn.train()
    small_cnn.conv2.eval()
    before = copy.deepcopy(small_cnn.state_dict())
    count_ops(small_cnn, cnn_input)
    assert small_cnn.training and small_cnn.conv1.training and not small_cnn.conv2.training
    assert all(torch.equal(before[k], v) for k, v in small_cnn.state_dict().items())
    assert all(
        not m._forward_hooks and not m._forward_pre_hooks for m in small_cnn.modules()
    )


def test_model_that_fails_to_run_raises_model_error_with_the_shape(small_cnn: nn.Module) -> None:
    with pytest.raises(ModelError, match=r"\(1, 5\).*RuntimeError"):
        count_ops(small_cnn, torch.randn(1, 5))


def test_inputs_that_are_not_tensors_raise_data_error(small_cnn: nn.Module) -> None:
    with pytest.raises(DataError, match="tensor or a tuple of tensors"):
        count_ops(small_cnn, {"x": torch.randn(1, 3, 16, 16)})  # type: ignore[arg-type]


def test_counts_scale_with_the_batch(small_cnn: nn.Module) -> None:
    single = count_ops(small_cnn, torch.rand(1, 3, 16, 16)).macs
    assert single == SMALL_CNN_MACS
    assert count_ops(small_cnn, torch.rand(5, 3, 16, 16)).macs == 5 * single


# --- fused, QAT with BatchNorm, pruned, sparse-layout and quantized transformer models -----------


def test_float_fused_conv_bn_relu_keeps_the_macs() -> None:
    from torch.ao.quantization import fuse_modules

    from tests.evaluation.conftest import resnet_ish

    torch.manual_seed(0)
    model = resnet_ish().eval()
    x = torch.rand(1, 3, 32, 32)
    fused = fuse_modules(copy.deepcopy(model), [["0", "1", "2"]])
    assert type(fused[0]).__name__ == "ConvReLU2d"
    assert count_ops(fused, x).macs == count_ops(model, x).macs == 32 * 32 * 32 * 3 * 9 + _resnet_ish_rest()


def _resnet_ish_rest(width: int = 32) -> int:
    """Closed-form MACs of resnet_ish after its stem, on a 32x32 input."""
    def conv(c_in: int, c_out: int, k: int, side: int) -> int:
        return side * side * c_out * c_in * k * k

    stage1 = 2 * conv(width, width, 3, 32)
    stage2 = conv(width, 2 * width, 3, 16) + conv(2 * width, 2 * width, 3, 16) + conv(width, 2 * width, 1, 16)
    stage3 = (
        conv(2 * width, 4 * width, 3, 8) + conv(4 * width, 4 * width, 3, 8) + conv(2 * width, 4 * width, 1, 8)
    )
    return stage1 + stage2 + stage3 + 4 * width * 10


def test_qat_conv_bn_modules_count_each_convolution_once() -> None:
    from tests.evaluation.conftest import resnet_ish

    torch.manual_seed(0)
    model = resnet_ish().eval()
    x = torch.rand(1, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qat = prepare_qat_fx(copy.deepcopy(model).train(), get_default_qat_qconfig_mapping("x86"), (x,))
    report = count_ops(qat, x)
    assert any(layer.type == "ConvBnReLU2d" for layer in report.per_layer)
    assert report.macs == count_ops(model, x).macs == 32 * 32 * 32 * 3 * 9 + _resnet_ish_rest()
    assert report.chats == 32 * report.macs


def test_eager_qat_fused_conv_bn_relu() -> None:
    from torch.ao.quantization import DeQuantStub, QuantStub, fuse_modules_qat, get_default_qat_qconfig, prepare_qat

    model = nn.Sequential(QuantStub(), nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), DeQuantStub()).train()
    fused = fuse_modules_qat(model, [["1", "2", "3"]])
    fused.qconfig = get_default_qat_qconfig("x86")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qat = prepare_qat(fused)
    report = count_ops(qat, torch.rand(1, 3, 10, 10))
    assert report.macs == 8 * 8 * 8 * 3 * 9
    assert [layer.bits for layer in report.per_layer if layer.macs] == [32]


def test_pruned_with_torch_prune_counts_the_mask() -> None:
    from torch.nn.utils import prune

    torch.manual_seed(0)
    linear = nn.Linear(10, 20)
    prune.l1_unstructured(linear, "weight", amount=0.3)  # 60 of 200 weights
    report = count_ops(linear, torch.rand(4, 10))
    assert report.macs == 4 * 10 * 20
    assert report.macs_effective == pytest.approx(0.7 * 4 * 10 * 20)
    layer = report.per_layer[0]
    assert (layer.params, layer.params_nonzero) == (220, 140 + int(torch.count_nonzero(linear.bias)))


class SparseLinear(nn.Module):
    """A Linear whose weight is stored in a sparse layout and applied with ``torch.sparse.mm``."""

    def __init__(self, weight: torch.Tensor, functional: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.functional = functional

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.functional:
            return F.linear(x, self.weight)
        return torch.sparse.mm(self.weight, x.t()).t()


@pytest.mark.parametrize("layout", ["coo", "csr"])
@pytest.mark.parametrize("functional", [False, True])
def test_sparse_layout_weights_count_dense_macs_and_their_density(layout: str, functional: bool) -> None:
    torch.manual_seed(0)
    dense = torch.randn(20, 10)
    dense[:, :4] = 0.0  # 40 % zeros
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        weight = dense.to_sparse() if layout == "coo" else dense.to_sparse_csr()
        report = count_ops(SparseLinear(weight, functional), torch.rand(3, 10))
    assert report.macs == 3 * 10 * 20
    assert report.macs_effective == pytest.approx(0.6 * 3 * 10 * 20)
    layer = report.per_layer[0]
    assert (layer.params, layer.params_nonzero) == (200, 120)
    assert layer.sparsity == pytest.approx(0.4)


def test_dynamic_int8_transformer_keeps_macs_and_bits_follow_each_layer() -> None:
    batch, length, dim, heads, ff = 2, 6, 16, 4, 32
    torch.manual_seed(0)
    encoder = nn.TransformerEncoder(
        nn.TransformerEncoderLayer(dim, heads, ff, batch_first=True), 2, enable_nested_tensor=False
    ).eval()
    x = torch.randn(batch, length, dim)
    dynamic = quantize_dynamic(copy.deepcopy(encoder), {nn.Linear}, dtype=torch.qint8)
    float_report, dynamic_report = count_ops(encoder, x), count_ops(dynamic, x)
    tokens = batch * length
    attention = tokens * 4 * dim * dim + 2 * batch * length * length * dim
    feed_forward = tokens * 2 * dim * ff
    assert float_report.macs == dynamic_report.macs == 2 * (attention + feed_forward)
    layers = _by_name(dynamic_report)
    # the feed-forward Linears are quantized; MultiheadAttention keeps its float in_proj (32 bits)
    assert layers["layers.0.linear1"].bits == layers["layers.1.linear2"].bits == 8
    assert layers["layers.0.self_attn"].bits == 32
    assert dynamic_report.chats == 2 * (32 * attention + 8 * feed_forward)


def _zero_share(weight: torch.Tensor, share: float, seed: int = 0) -> float:
    """Zero ``share`` of ``weight``'s elements in place at random; returns the density left."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        flat = weight.view(-1)
        flat[torch.randperm(flat.numel(), generator=generator)[: int(share * flat.numel())]] = 0.0
    return float(torch.count_nonzero(weight)) / weight.numel()


def test_multihead_attention_charges_each_product_at_the_weight_it_multiplies() -> None:
    batch, length, dim, heads = 2, 5, 16, 4
    torch.manual_seed(0)
    mha = nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    d_in = _zero_share(mha.in_proj_weight, 0.5)
    d_out = _zero_share(mha.out_proj.weight, 0.75, seed=1)  # never called as a module

    report = count_ops(SelfAttention(mha), torch.randn(batch, length, dim))
    tokens = batch * length
    in_proj, out_proj = tokens * dim * 3 * dim, tokens * dim * dim
    attention = 2 * batch * length * length * dim  # Q K^T and A V: no weight, density 1
    assert report.macs == in_proj + out_proj + attention
    assert report.macs_effective == pytest.approx(in_proj * d_in + out_proj * d_out + attention)


class FunctionalChildren(nn.Module):
    """Attention that uses its child Linears' weights functionally (as Swin's window attention)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = F.linear(x, self.qkv.weight, self.qkv.bias).chunk(3, dim=-1)
        attn = (q @ k.transpose(-2, -1)).softmax(-1)
        return F.linear(attn @ v, self.proj.weight, self.proj.bias)


def test_functional_use_of_child_linears_is_charged_at_their_density() -> None:
    batch, length, dim = 1, 6, 8
    torch.manual_seed(0)
    model = FunctionalChildren(dim).eval()
    d_qkv = _zero_share(model.qkv.weight, 0.6)
    d_proj = _zero_share(model.proj.weight, 0.2, seed=1)
    report = count_ops(model, torch.randn(batch, length, dim))
    qkv, proj = length * dim * 3 * dim, length * dim * dim
    attention = 2 * length * length * dim
    assert report.macs == qkv + proj + attention
    assert report.macs_effective == pytest.approx(qkv * d_qkv + proj * d_proj + attention)
    assert _by_name(report)["(model)"].macs == report.macs  # all run inside the parent


def test_swin_window_attention_charges_its_functional_linears() -> None:
    from torchvision.models.swin_transformer import ShiftedWindowAttention

    dim, heads, size = 16, 2, 8
    torch.manual_seed(0)
    attn = ShiftedWindowAttention(dim, [4, 4], [0, 0], heads).eval()
    d_qkv = _zero_share(attn.qkv.weight, 0.6)
    d_proj = _zero_share(attn.proj.weight, 0.3, seed=1)
    report = count_ops(attn, torch.randn(1, size, size, dim))
    tokens = size * size
    qkv, proj = tokens * dim * 3 * dim, tokens * dim * dim
    attention = 2 * tokens * 16 * dim  # each token attends to the 16 of its 4x4 window
    assert report.macs == qkv + proj + attention
    assert report.macs_effective == pytest.approx(qkv * d_qkv + proj * d_proj + attention)
