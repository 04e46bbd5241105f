"""model_size against files written here, parameter sums and known zeros."""

from __future__ import annotations

import copy
import gzip
import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.ao.quantization import quantize_dynamic
from torch.nn.utils import prune

from netzip_mlflow.errors import ModelError
from netzip_mlflow.evaluation.size import SizeReport, file_size_mb, model_size
from netzip_mlflow.tracking import keys


def _saved_bytes(model: nn.Module, folder: Path) -> bytes:
    path = folder / "model.pt"
    torch.save(model.state_dict(), path)
    return path.read_bytes()


def test_disk_size_is_that_of_the_saved_state_dict(small_cnn: nn.Module, tmp_path: Path) -> None:
    data = _saved_bytes(small_cnn, tmp_path)
    report = model_size(small_cnn)
    assert report.disk_bytes == os.path.getsize(tmp_path / "model.pt") == len(data)
    assert report.disk_mb == len(data) / 1e6
    assert report.disk_mb_gzip == len(gzip.compress(data, compresslevel=9, mtime=0)) / 1e6
    assert report.disk_mb_gzip < report.disk_mb


def test_disk_size_of_a_quantized_model_is_that_of_its_saved_state_dict(
    eager_int8_cnn: nn.Module, tmp_path: Path
) -> None:
    assert model_size(eager_int8_cnn).disk_bytes == len(_saved_bytes(eager_int8_cnn, tmp_path))


def test_params_of_a_float_model_are_its_parameters_without_buffers(
    resnet_fx_int8: tuple[nn.Module, nn.Module, torch.Tensor],
) -> None:
    model = resnet_fx_int8[0]
    report = model_size(model)
    expected = sum(p.numel() for p in model.parameters())
    assert report.params == expected
    state_elements = sum(t.numel() for t in model.state_dict().values())
    assert report.params < state_elements  # BN running stats are not parameters


def test_tied_weights_count_once() -> None:
    embedding = nn.Embedding(10, 4)
    decoder = nn.Linear(4, 10, bias=False)
    decoder.weight = embedding.weight
    model = nn.Sequential(embedding, decoder)
    assert model_size(model).params == 40 == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("quantized_fixture", ["eager_int8_cnn", "fx_int8_cnn"])
def test_static_int8_model_has_the_params_of_its_float_original(
    quantized_fixture: str, small_cnn: nn.Module, request: pytest.FixtureRequest
) -> None:
    quantized = request.getfixturevalue(quantized_fixture)
    assert sum(1 for _ in quantized.parameters()) == 0  # packed weights are not parameters
    assert model_size(quantized).params == model_size(small_cnn).params
    assert model_size(small_cnn).params == sum(p.numel() for p in small_cnn.parameters())


@pytest.mark.parametrize("dtype", [torch.qint8, torch.float16])
def test_dynamic_quantized_model_has_the_params_of_its_float_original(dtype: torch.dtype) -> None:
    model = nn.Sequential(nn.LSTM(8, 16, num_layers=2), nn.LSTMCell(8, 16), nn.Linear(16, 4))
    dynamic = quantize_dynamic(copy.deepcopy(model), {nn.LSTM, nn.LSTMCell, nn.Linear}, dtype=dtype)
    assert model_size(dynamic).params == sum(p.numel() for p in model.parameters())


def test_known_zeros_give_the_exact_sparsity() -> None:
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5))
    with torch.no_grad():
        model[0].weight[:, :3] = 0.0  # 60 zeros
        model[2].bias.zero_()  # 5 zeros
    report = model_size(model)
    total = 10 * 20 + 20 + 20 * 5 + 5
    assert report.params == total
    assert report.params_nonzero == total - 65
    assert report.sparsity == pytest.approx(65 / total)


def test_pruning_masks_are_applied_and_not_counted() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(50, 40), nn.Linear(40, 10))
    dense = model_size(model).params
    prune.global_unstructured(
        [(model[0], "weight"), (model[1], "weight")], prune.L1Unstructured, amount=0.5
    )
    report = model_size(model)
    assert report.params == dense  # weight_orig counted once, as weight; masks are buffers
    assert report.params - report.params_nonzero == (50 * 40 + 40 * 10) // 2


def test_int8_resnet_is_about_a_quarter_of_the_float_size(
    resnet_fx_int8: tuple[nn.Module, nn.Module, torch.Tensor],
) -> None:
    float_model, quantized, _ = resnet_fx_int8
    ratio = model_size(quantized).disk_mb / model_size(float_model).disk_mb
    assert 0.2 < ratio < 0.35


def test_as_metrics_uses_the_size_keys() -> None:
    report = SizeReport(2_000_000, 2.0, 1.5, 100, 75, 0.25)
    assert report.as_metrics() == {
        keys.DISK_MB: 2.0,
        keys.DISK_MB_GZIP: 1.5,
        keys.PARAMS: 100.0,
        keys.PARAMS_NONZERO: 75.0,
        keys.SPARSITY: 0.25,
    }


def test_file_size_mb_of_a_known_file(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    path.write_bytes(b"\0" * 2_500_000)
    assert file_size_mb(path) == 2.5


def test_file_size_mb_of_a_missing_file_raises_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="missing.pt"):
        file_size_mb(tmp_path / "missing.pt")
