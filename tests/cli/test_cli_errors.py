"""Bad inputs: each prints one line ``error: ...`` naming the problem and the fix, and exits 2.

Everything here fails before the tracking store is written to (config, data and model are checked
first), except the unreachable tracking server, which fails after bounded retries.
"""

from __future__ import annotations

import copy

import mlflow
import pytest
import torch
import yaml
from torch import nn

from netzip_mlflow.cli.main import main
from netzip_mlflow.models.zoo import build_model

BASE = {
    "study": "bad",
    "seed": 0,
    "data": {"builtin": "digits", "limit": 100, "batch_size": 32},
    "model": {"arch": "tiny_cnn", "train": {"epochs": 0}},
    "evaluation": {"isolate": False, "idle_s": 0.0},
    "recipes": [{"name": "q", "technique": "ptq"}],
}


def _study(tmp_path, **changes):
    raw = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[last] = value
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def run(tmp_path, capsys):
    """``run(path, *extra_args)`` -> (exit code, stderr); fails if stdout or the store got anything."""
    previous = mlflow.get_tracking_uri()
    store = tmp_path / "mlflow.db"

    def _run(path, *extra, uri=None):
        code = main(["--tracking-uri", uri or f"sqlite:///{store}", "run", str(path), "--no-progress", *extra])
        out = capsys.readouterr()
        return code, out.err

    yield _run
    mlflow.set_tracking_uri(previous)
    assert not store.exists(), "a bad input must fail before anything is logged"


def _save_module(path, module):
    torch.save(module, path)
    return path


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), err
    return lines[0]


CASES = {
    # id: (changes to the study, CLI args, fragments the message must contain)
    "unknown technique": ({"recipes": [{"name": "q", "technique": "zip_it"}]}, [], ["recipes[0].technique", "unknown technique 'zip_it'", "known techniques: ptq"]),
    "unknown parameter": ({"recipes": [{"name": "q", "technique": "ptq", "params": {"speed": 2}}]}, [], ["recipes[0].params.speed", "unknown parameter", "known parameters: "]),
    "amount out of range": ({"recipes": [{"name": "p", "technique": "prune_unstructured", "params": {"amount": 1.5}}]}, [], ["recipes[0].params.amount", "must be in (0, 1), got 1.5"]),
    "wrong parameter type": ({"recipes": [{"name": "p", "technique": "prune_unstructured", "params": {"amount": "half"}}]}, [], ["recipes[0].params.amount", "must be a number", "'half' (str)"]),
    "bad override": ({}, ["--set", "recipes.0.params.calibration_batches=-1"], ["recipes[0].params.calibration_batches", "must be"]),
}


@pytest.mark.parametrize("case", CASES)
def test_config_errors(case, tmp_path, run):
    changes, args, fragments = CASES[case]
    code, err = run(_study(tmp_path, **changes), *args)
    line = _one_error_line(err)
    assert code == 2
    for fragment in fragments:
        assert fragment in line, (fragment, line)


def test_dataset_path_missing(tmp_path, run):
    code, err = run(_study(tmp_path, data={"path": str(tmp_path / "nowhere"), "channels": 1, "image_size": 8}))
    line = _one_error_line(err)
    assert code == 2 and "data.path" in line and "does not exist" in line and "ImageFolder" in line


def test_dataset_path_empty(tmp_path, run):
    (tmp_path / "images" / "cat").mkdir(parents=True)
    code, err = run(_study(tmp_path, data={"path": str(tmp_path / "images"), "channels": 1, "image_size": 8}))
    line = _one_error_line(err)
    assert code == 2 and "data.path" in line and "holds no images" in line and "root/<class name>/<image>" in line


def test_corrupt_and_truncated_model_files(tmp_path, run):
    good = tmp_path / "good.pt"
    torch.save(build_model("tiny_cnn", 10, (1, 8, 8)).state_dict(), good)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a torch file at all\n" * 10)
    for file in (truncated, garbage):
        code, err = run(_study(tmp_path, model={"arch": "tiny_cnn", "path": str(file)}))
        line = _one_error_line(err)
        assert code == 2 and str(file.name) in line and "corrupt or truncated" in line and "torch.save" in line


def test_model_file_for_other_classes(tmp_path, run):
    five = tmp_path / "five.pt"
    torch.save(build_model("tiny_cnn", 5, (1, 8, 8)).state_dict(), five)
    code, err = run(_study(tmp_path, model={"arch": "tiny_cnn", "path": str(five)}))
    line = _one_error_line(err)
    assert code == 2 and "does not fit the architecture TinyCNN" in line and "size mismatch for classifier.weight" in line


def test_whole_module_needs_trust(tmp_path, run):
    path = _save_module(tmp_path / "whole.pt", nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))
    code, err = run(_study(tmp_path, model={"arch": "tiny_cnn", "path": str(path)}))
    line = _one_error_line(err)
    assert code == 2 and "--trust-model-file" in line and "can run code" in line


def test_labels_out_of_range_for_the_model(tmp_path, run):
    path = _save_module(tmp_path / "five.pt", nn.Sequential(nn.Flatten(), nn.Linear(64, 5)))
    code, err = run(_study(tmp_path, model={"arch": "tiny_cnn", "path": str(path)}), "--trust-model-file")
    line = _one_error_line(err)
    assert code == 2 and "has 5 outputs but the data has 10 classes" in line and "num_classes" in line


def test_input_shape_mismatch(tmp_path, run):
    rgb = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    path = _save_module(tmp_path / "rgb.pt", rgb)
    code, err = run(_study(tmp_path, model={"arch": "tiny_cnn", "path": str(path)}), "--trust-model-file")
    line = _one_error_line(err)
    assert code == 2 and "fails on data of shape (20, 1, 8, 8)" in line and "data.channels" in line


def test_output_not_logits(tmp_path, run):
    path = _save_module(tmp_path / "maps.pt", nn.Sequential(nn.Conv2d(1, 10, 3)))
    code, err = run(_study(tmp_path, model={"arch": "tiny_cnn", "path": str(path), "trust_model_file": True}))
    line = _one_error_line(err)
    assert code == 2 and "logits of shape (batch, classes)" in line and "(20, 10, 6, 6)" in line


def test_unreachable_tracking_server(tmp_path, run, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    code, err = run(_study(tmp_path), uri="http://127.0.0.1:9")
    line = _one_error_line(err)
    assert code == 2 and "http://127.0.0.1:9" in line and "MLFLOW_TRACKING_URI" in line


# ---- the second catalogue (issue #19): hostile inputs, still one line, exit 2, nothing logged ----

BOMB = """\
a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""

HOSTILE = {
    # id: (changes to the study, CLI args, fragments the message must contain)
    "--set below a scalar": ({}, ["--set", "data.batch_size.x=1"], ["--set data.batch_size.x", "data.batch_size is a single value (int)"]),
    "--set index out of range": ({}, ["--set", "recipes.5.name=x"], ["--set recipes.5.name", "recipes has 1 items; index 5 is out of range", "use 0 to 0"]),
    "--set index not a number": ({}, ["--set", "recipes.first.name=x"], ["--set recipes.first.name", "recipes is a list; 'first' is not an index"]),
    "--set unparsable value": ({}, ["--set", "data.limit=[1,"], ["--set data.limit", "is not valid YAML"]),
    "--set python tag": ({}, ["--set", "data.limit=!!python/object/apply:os.system ['echo x']"], ["--set data.limit", "tag that is not allowed", "python/object/apply:os.system"]),
    "--set empty key": ({}, ["--set", "data..limit=30"], ["--set", "empty key part"]),
    "device banana": ({"evaluation__device": "banana"}, [], ["evaluation.device", "unknown device 'banana'", "cpu, cuda or cuda:N"]),
    "missing power log": ({"evaluation__power_log": "/nowhere/power.csv"}, [], ["evaluation.power_log", "/nowhere/power.csv does not exist"]),
    "batch size 1e9": ({"evaluation__batch_size": 1.0e9}, [], ["evaluation.batch_size", "less than or equal to 4096"]),
    "eval batch size unbounded": ({"evaluation__eval_batch_size": 10**9}, [], ["evaluation.eval_batch_size", "less than or equal to 4096"]),
    "empty train split": ({"data__limit": 20, "data__test_fraction": 0.99}, [], ["data.test_fraction", "the train split is empty", "data.limit"]),
    "detection metric in a classification study": ({"evaluation__ratios": {"performance": "accuracy/map50"}}, [], ["evaluation.ratios.performance", "accuracy/map50 is a detection metric", "accuracy/top1"]),
    "ratio of a ratio": ({"evaluation__ratios": {"speedup": "ocs"}}, [], ["evaluation.ratios.speedup", "computed against the baseline"]),
}

CASES.update(HOSTILE)  # run by test_config_errors (pytest reads CASES when it collects the module)


def test_cuda_without_a_gpu(tmp_path, run):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, err = run(_study(tmp_path, evaluation={"isolate": False, "idle_s": 0.0, "device": "cuda"}))
    line = _one_error_line(err)
    assert code == 2 and "evaluation.device" in line and "no CUDA GPU" in line and "device: cpu" in line


def test_power_log_that_is_not_text(tmp_path, run):
    log = tmp_path / "power.csv"
    log.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    code, err = run(_study(tmp_path, evaluation={"isolate": False, "idle_s": 0.0, "power_log": str(log)}))
    line = _one_error_line(err)
    assert code == 2 and "evaluation.power_log" in line and "is not UTF-8 text (byte 0 is 0x89)" in line


def test_non_utf8_study_file(tmp_path, run):
    path = _study(tmp_path)
    path.write_bytes(path.read_bytes().replace(b"study: bad", b"study: b\xe4d"))
    code, err = run(path)
    line = _one_error_line(err)
    assert code == 2 and "study.yaml" in line and "is not UTF-8 text" in line and "0xe4" in line


@pytest.mark.parametrize("where", ["params.amount", "steps"])
def test_yaml_alias_bomb_is_refused_quickly(tmp_path, run, where):
    """9 aliases deep: 9^9 = 387 million values if expanded; the message must not expand them."""
    recipe = "{name: p, technique: prune_unstructured, params: {amount: *i}}" if where == "params.amount" else "{name: p, steps: *i}"
    path = tmp_path / "study.yaml"
    path.write_text(BOMB + yaml.safe_dump({k: v for k, v in BASE.items() if k != "recipes"}) + f"recipes: [{recipe}]\n")
    assert path.stat().st_size < 1200
    code, err = run(path)
    line = _one_error_line(err)
    assert code == 2 and "expands to more than 100,000 values" in line and "alias" in line and len(line) < 300


def _png(path, value=0, size=(8, 8)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)
    return path


def _folder(tmp_path, classes=("cat", "dog"), per_class=6):
    root = tmp_path / "images"
    for c, name in enumerate(classes):
        for i in range(per_class):
            _png(root / name / f"{i}.png", 40 * c + i)
    return root


def _folder_study(tmp_path, root, **data):
    return _study(tmp_path, data={"path": str(root), "channels": 1, "image_size": 8, "batch_size": 4, **data})


@pytest.mark.parametrize("fault", ["truncated", "zero-byte", "not an image"])
def test_corrupt_image_is_named_before_anything_runs(tmp_path, run, fault):
    root = _folder(tmp_path)
    bad = root / "dog" / "3.png"
    if fault == "truncated":
        bad.write_bytes(bad.read_bytes()[:40])
    elif fault == "zero-byte":
        bad.write_bytes(b"")
    else:
        bad.write_text("just some text with a .png name\n")
    code, err = run(_folder_study(tmp_path, root))
    line = _one_error_line(err)
    assert code == 2 and f"{bad} cannot be read as an image" in line and "data.skip_corrupt: true" in line


def test_decompression_bomb_image(tmp_path, run, monkeypatch):
    from PIL import Image

    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # a 100x100 image stands in for a 50k x 50k one
    root = _folder(tmp_path)
    bomb = _png(root / "cat" / "bomb.png", size=(100, 100))
    code, err = run(_folder_study(tmp_path, root))
    line = _one_error_line(err)
    assert code == 2 and f"{bomb} cannot be read as an image" in line and "decompression bomb" in line


def test_single_class_folder(tmp_path, run):
    root = _folder(tmp_path, classes=("cat",))
    code, err = run(_folder_study(tmp_path, root))
    line = _one_error_line(err)
    assert code == 2 and "one class folder (cat)" in line and "at least two classes" in line


def test_symlink_loop_is_refused(tmp_path, run):
    root = _folder(tmp_path)
    (root / "cat" / "loop").symlink_to("..")
    code, err = run(_folder_study(tmp_path, root))
    line = _one_error_line(err)
    assert code == 2 and "symlink loop" in line and str(root / "cat" / "loop") in line


def test_symlink_into_another_class_is_refused(tmp_path, run):
    root = _folder(tmp_path)
    (root / "cat" / "also_dogs").symlink_to(root / "dog")
    code, err = run(_folder_study(tmp_path, root))
    line = _one_error_line(err)
    assert code == 2 and "are the same file" in line and "counted twice" in line
