"""Evaluate your own model and a compressed copy of it with the NetZIP metrics, logged to MLflow.

Run:  .venv/bin/python examples/evaluate_your_model.py
(tracks to MLflow's default store, sqlite:///mlflow.db in the working directory)
"""

import mlflow
from torch.utils.data import DataLoader

import netzip_mlflow as nz
from netzip_mlflow.models.training import train

# 1. Data and a model: here scikit-learn's digits and a small CNN; use your own DataLoader and nn.Module.
split = nz.load_builtin("digits", test_fraction=0.25, seed=0)
train_loader = DataLoader(split.train, batch_size=64, shuffle=True)
model = nz.build_model("tiny_cnn", num_classes=10, input_shape=split.input_shape)
train(model, train_loader, epochs=3, lr=0.05, progress=False)

# 2. Measure the baseline and a compressed copy on the same data and machine.
config = nz.EvaluationConfig(latency=nz.LatencySettings(budget_s=2.0), idle_s=0.5, progress=False)
mlflow.set_experiment("netzip-example")
with mlflow.start_run(run_name="baseline"):
    baseline = nz.evaluate(model, split.test, config=config)
compressed = nz.compress(model, "prune_unstructured", params={"importance": "l1", "amount": 0.5})
# Tags name the recipe on the leaderboard; evaluate() adds the role and the baseline's run id.
with mlflow.start_run(run_name="gup_l1_50", tags={"netzip.recipe": "gup_l1_50", "netzip.technique": "prune_unstructured"}):
    report = nz.evaluate(compressed.model, split.test, config=config, baseline=baseline)

# 3. Read the numbers.
for key in ("accuracy/top1", "speed/latency_ms", "speed/macs_effective", "size/sparsity", "ratio/performance", "ocs"):
    print(f"{key:24s} baseline {baseline.metrics.get(key, float('nan')):>12.4g}   compressed {report.metrics.get(key, float('nan')):>12.4g}")
