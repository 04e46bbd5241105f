"""nz.evaluate on a tiny model: metrics against independent computations, baseline comparison."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score
from torch.utils.data import DataLoader, TensorDataset

import netzip_mlflow as nz
from netzip_mlflow.evaluation.evaluator import gather_images
from netzip_mlflow.evaluation.latency import LatencySettings
from netzip_mlflow.models.zoo import TinyCNN
from netzip_mlflow.tracking import keys

FAST = nz.EvaluationConfig(
    isolate=False, idle_s=0.0, progress=False, latency=LatencySettings(warmup_s=0.0, budget_s=0.2),
    ratios=nz.RatioConfig(score_at_chance=True),  # random models on random data: at chance by design
)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    x = torch.randn(60, 1, 8, 8)
    y = torch.randint(0, 4, (60,))
    model = TinyCNN(4, (1, 8, 8)).eval()
    return model, DataLoader(TensorDataset(x, y), batch_size=16), x, y


def test_metrics_against_independent_computation(setup):
    model, loader, x, y = setup
    report = nz.evaluate(model, loader, config=FAST, log_to_mlflow=False)
    with torch.no_grad():
        pred = model(x).argmax(1)
    assert report.metrics[keys.TOP1] == pytest.approx(accuracy_score(y, pred))
    conv1 = 1 * 16 * 9 * 64  # in x out x k*k x H*W
    conv2 = 16 * 32 * 9 * 64
    linear = 32 * 4
    assert report.metrics[keys.MACS] == conv1 + conv2 + linear
    assert report.metrics[keys.CHATS] == 32 * (conv1 + conv2 + linear)
    assert report.metrics[keys.PARAMS] == sum(p.numel() for p in model.parameters())
    assert report.metrics[keys.LATENCY_MS] > 0 and report.tags[keys.TAG_ROLE] == "baseline"
    assert report.params["eval.input_shape"] == "1x8x8"


def test_dataset_input_and_comparison_with_baseline(setup):
    model, loader, x, y = setup
    base = nz.evaluate(model, loader, config=FAST, log_to_mlflow=False)
    pruned = nz.compress(model, "prune_unstructured", {"amount": 0.6, "importance": "l1"}).model
    report = nz.evaluate(pruned, TensorDataset(x, y), config=FAST, baseline=base, log_to_mlflow=False)
    with torch.no_grad():
        agree = float((pruned(x).argmax(1) == model(x).argmax(1)).float().mean())
    assert report.metrics[keys.AGREEMENT] == pytest.approx(agree)
    assert report.metrics[keys.RATIO_PERFORMANCE] == pytest.approx(report.metrics[keys.TOP1] / base.metrics[keys.TOP1])
    assert report.metrics[keys.RATIO_SPEEDUP] == pytest.approx(1.0)  # same dense CHATS
    assert report.tags[keys.TAG_ROLE] == "compressed"
    assert report.tags[keys.ratio_metric_tag("compression")] == keys.DISK_MB
    assert report.impact is not None
    differ = np.flatnonzero(report.predictions.top1 != base.predictions.top1)
    with torch.no_grad():
        confidence = torch.softmax(pruned(x), dim=1).amax(dim=1).numpy()
    most_confident = differ[np.argsort(-confidence[differ], kind="stable")][:16]
    assert list(report.impact.exemplars["index"].head(16)) == list(most_confident)  # most confident flips first
    assert sorted(report.exemplar_images) == sorted(most_confident)
    if len(differ):
        first = int(most_confident[0])
        assert torch.equal(report.exemplar_images[first], x[first])


def test_gather_images_reads_positions_across_batches():
    x = torch.arange(10, dtype=torch.float32).reshape(10, 1, 1, 1)
    batches = [(x[:4], None), (x[4:8], None), (x[8:], None)]
    got = gather_images(batches, [9, 0, 5])
    assert {k: float(v) for k, v in got.items()} == {0: 0.0, 5: 5.0, 9: 9.0}


def test_without_an_energy_meter_energy_is_absent_and_efficiency_named_missing(setup, monkeypatch):
    from netzip_mlflow.evaluation import runtime

    monkeypatch.setattr(runtime, "best_meter", lambda **_: None)
    model, loader, _, _ = setup
    config = nz.EvaluationConfig(
        isolate=False, idle_s=0.1, progress=False, latency=LatencySettings(warmup_s=0.0, budget_s=0.2),
        ratios=nz.RatioConfig(score_at_chance=True),
    )
    base = nz.evaluate(model, loader, config=config, log_to_mlflow=False)
    report = nz.evaluate(model, loader, config=config, baseline=base, log_to_mlflow=False)
    assert not [key for key in report.metrics if key.startswith("energy/")]
    assert keys.RATIO_EFFICIENCY not in report.metrics
    assert "efficiency" in report.tags[keys.TAG_MISSING_RATIOS].split(",")
    assert report.tags[keys.TAG_ENERGY_METER].startswith("none")
    assert report.tags[keys.TAG_RUNTIME_THREADS] == "1"


def test_a_baseline_at_chance_gets_no_ratios_or_ocs_and_says_why(setup, caplog):
    model, loader, _, y = setup
    config = nz.EvaluationConfig(
        isolate=False, idle_s=0.0, progress=False, latency=LatencySettings(warmup_s=0.0, budget_s=0.2)
    )
    base = nz.evaluate(model, loader, config=config, log_to_mlflow=False)
    chance = np.bincount(y.numpy()).max() / len(y)
    assert base.metrics[keys.TOP1] <= chance + 0.05  # an untrained net on random labels
    with caplog.at_level("WARNING"):
        report = nz.evaluate(model, loader, config=config, baseline=base, log_to_mlflow=False)
    assert keys.OCS not in report.metrics and keys.RATIO_PERFORMANCE not in report.metrics
    assert report.tags[keys.TAG_OCS_WITHHELD].startswith("baseline top-1")
    assert "not above chance" in caplog.text and "--score-at-chance" in caplog.text
    assert keys.AGREEMENT in report.metrics  # the comparison itself is still made
