"""Runtime models (ONNX Runtime, OpenVINO): outputs, accuracy, CHATS, disk size, pickling, threads."""

from __future__ import annotations

import copy
import os
import pickle

import numpy as np
import onnx
import pytest
import torch

from netzip_mlflow import model_pickle
from netzip_mlflow.compression.registry import compress
from netzip_mlflow.evaluation.accuracy import predict
from netzip_mlflow.evaluation.ops import count_ops
from netzip_mlflow.runtimes.base import RuntimeModel, module_name_for_node
from netzip_mlflow.runtimes.onnxruntime_rt import OnnxRuntime

#: int8 top-1 may differ from torch ptq's by at most this (the two quantizers round differently).
INT8_MARGIN = 0.02


def _top1(model, test) -> float:
    pred = predict(model, test)
    return float((pred.top1 == pred.labels).mean())


@pytest.mark.parametrize("label", ["onnx", "openvino"])
def test_fp32_export_matches_torch_on_real_data(label, exported, trained, digits):
    model = exported[label].model
    for inputs, _ in digits[2]:
        with torch.no_grad():
            expected = trained(inputs)
        assert torch.allclose(model(inputs), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("label", ["onnx_int8", "openvino_int8"])
def test_int8_accuracy_is_within_the_margin_of_torch_ptq(label, exported, trained, digits):
    test = digits[2]
    ptq, runtime, fp32 = _top1(exported["ptq"].model, test), _top1(exported[label].model, test), _top1(trained, test)
    assert fp32 > 0.85  # the model learned something, so the comparison means something
    assert abs(runtime - ptq) <= INT8_MARGIN, (runtime, ptq)
    assert exported[label].info["dtype"] == "int8"


@pytest.mark.parametrize("label", ["onnx_int8", "openvino_int8"])
def test_int8_graph_has_the_macs_and_chats_of_ptq(label, exported, digits):
    sample = next(iter(digits[2]))[0][:1]
    torch_ops = count_ops(exported["ptq"].model, sample)
    runtime_ops = exported[label].model.ops_report()
    assert runtime_ops.macs == torch_ops.macs
    assert runtime_ops.chats == torch_ops.chats == 8 * torch_ops.macs  # every MAC of the tiny CNN is int8


@pytest.mark.parametrize("label", ["onnx", "openvino"])
def test_fp32_graph_counts_32_bits(label, exported, trained, digits):
    sample = next(iter(digits[2]))[0][:1]
    ops = exported[label].model.ops_report()
    assert ops.macs == count_ops(trained, sample).macs
    assert ops.chats == 32 * ops.macs


def test_resnet18_int8_in_both_runtimes_has_ptq_macs_and_chats(digits):
    from netzip_mlflow.models.zoo import build_model

    split, train_data, test = digits
    model = build_model("resnet18", len(split.classes), split.input_shape, seed=0).eval()
    sample = next(iter(test))[0][:1]
    ptq = count_ops(compress(model, "ptq", {"calibration_batches": 2}, data=train_data).model, sample)
    for technique in ("onnx", "openvino"):
        result = compress(model, technique, {"quantize": "int8", "calibration_batches": 2}, data=train_data)
        ops = result.model.ops_report()
        assert (ops.macs, ops.chats) == (ptq.macs, ptq.chats), technique
        by_layer = {layer.name: layer.bits for layer in ops.per_layer if layer.macs}
        assert set(by_layer.values()) == {8}, by_layer


@pytest.mark.parametrize("label", ["onnx", "onnx_int8", "openvino", "openvino_int8"])
def test_disk_size_is_the_size_of_the_files_that_ship(label, exported):
    model = exported[label].model
    files = model.files()
    expected = {"onnx": {"model.onnx"}, "openvino": {"model.xml", "model.bin"}}[label.split("_")[0]]
    assert {path.name for path in files} == expected
    assert model.size_report().disk_bytes == sum(os.path.getsize(path) for path in files)


def test_external_data_files_ship_and_count(exported, tmp_path):
    proto = onnx.load(str(exported["onnx"].model.files()[0]))
    onnx.save_model(proto, str(tmp_path / "model.onnx"), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.data", size_threshold=0)
    (tmp_path / "unrelated.txt").write_text("not part of the model")
    model = RuntimeModel(OnnxRuntime(), tmp_path, exported["onnx"].model.source)
    assert [path.name for path in model.files()] == ["model.onnx", "weights.data"]
    assert model.size_report().disk_bytes == (
        os.path.getsize(tmp_path / "model.onnx") + os.path.getsize(tmp_path / "weights.data")
    )
    x = torch.randn(3, 1, 8, 8)
    assert torch.equal(model(x), exported["onnx"].model(x))


@pytest.mark.parametrize("label", ["onnx_int8", "openvino_int8"])
def test_pickle_and_deepcopy_carry_the_files_not_the_session(label, exported):
    model = exported[label].model
    x = torch.randn(4, 1, 8, 8)
    expected = model(x)
    for clone in (copy.deepcopy(model), pickle.loads(model_pickle.dumps(model))):
        assert clone.folder != model.folder
        assert clone._session is None
        assert torch.equal(clone(x), expected)
        assert clone.ops_report().chats == model.ops_report().chats


@pytest.mark.parametrize("label", ["onnx", "openvino"])
def test_thread_setting_goes_through_the_runtime_and_is_read_back(label, exported):
    model = copy.deepcopy(exported[label].model)
    model.set_threads(1)
    assert model.session_threads() == 1
    model.set_threads(2)
    assert model.session_threads() == 2


def test_runtime_models_refuse_a_gpu(exported):
    from netzip_mlflow.errors import ConfigError

    with pytest.raises(ConfigError, match="evaluation.device"):
        exported["onnx"].model.to("meta")


@pytest.mark.parametrize(
    ("node", "module"),
    [
        ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
        ("/layer2/layer2.0/downsample/downsample.0/Conv/WithoutBiases", "layer2.0.downsample.0"),
        ("/features/features.3/Conv", "features.3"),
        ("/fc/Gemm", "fc"),
        ("/conv1/Conv_1", "conv1"),
        ("/pool/GlobalAveragePool", None),
    ],
)
def test_node_names_map_to_modules(node, module):
    layers = {"conv1", "fc", "layer1.0.conv1", "layer2.0.downsample.0", "features.3", "features"}
    assert module_name_for_node(node, layers) == module


def test_int8_weights_are_int8_in_the_onnx_graph(exported):
    graph = onnx.load(str(exported["onnx_int8"].model.files()[0])).graph
    bits = OnnxRuntime().layer_bits(exported["onnx_int8"].model.folder)
    weighted = [n.name for n in graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert weighted and all(bits[name] == 8 for name in weighted)
    int8 = [i for i in graph.initializer if i.data_type == onnx.TensorProto.INT8]
    assert int8 and all(np.asarray(onnx.numpy_helper.to_array(i)).dtype == np.int8 for i in int8)
