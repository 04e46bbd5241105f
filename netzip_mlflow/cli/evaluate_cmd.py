"""``netzip evaluate``: measure one model (an MLflow model URI or a file) and log it as a run."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import mlflow
from rich.console import Console
from rich.table import Table
from torch import nn

from netzip_mlflow.data.builtin import BUILTIN, SplitDataset, load_builtin
from netzip_mlflow.data.folder import load_image_folder
from netzip_mlflow.errors import ConfigError, ModelError
from netzip_mlflow.tracking import keys
from netzip_mlflow.cli.output import write_json
from netzip_mlflow.cli.settings_flags import SettingFlag, add_setting_flags, build_settings, given_values
from netzip_mlflow.evaluation.settings import EvaluationConfig
from netzip_mlflow.tracking.context import start_run
from netzip_mlflow.tracking.uri import mask_credentials


SETTING_FLAGS = (
    SettingFlag("--threads", "threads"),
    SettingFlag("--batch-size", "batch_size"),
    SettingFlag("--eval-batch-size", "eval_batch_size"),
    SettingFlag("--no-isolate", "isolate", negate=True),
    SettingFlag("--no-paired", "paired", negate=True),
    SettingFlag("--idle-s", "idle_s"),
    SettingFlag("--latency-budget-s", "latency.budget_s"),
    SettingFlag("--timeout-s", "timeout_s"),
    SettingFlag("--score-at-chance", "ratios.score_at_chance"),
)
"""The flags that set :class:`EvaluationConfig` fields (type, default and help from the model)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``evaluate`` subcommand."""
    p = sub.add_parser("evaluate", help="evaluate one model file or MLflow model and log it as a run")
    p.add_argument("model", help="an MLflow model URI (runs:/ID/model, models:/NAME/1) or a torch.save file")
    p.add_argument("--data", required=True, help=f"a built-in dataset ({', '.join(BUILTIN)}) or an ImageFolder path")
    p.add_argument("--arch", help="architecture of a state_dict file: resnet18, tiny_cnn or any torchvision "
                                   "classification model (mobilenet_v3_small, efficientnet_b0, ...)")
    p.add_argument(
        "--trust-model-file", action="store_true",
        help="allow unpickling a whole module from the file or the tracking store (can run code)",
    )
    p.add_argument("--experiment", default="netzip-evaluate")
    p.add_argument("--run-name")
    p.add_argument("--baseline-run", help="run id of the baseline: adds ratios, OCS and class impact")
    p.add_argument("--image-size", type=int, default=224, help="ImageFolder images: pixels per side")
    p.add_argument("--channels", type=int, choices=[1, 3], default=3, help="ImageFolder images: 1 or 3")
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    add_setting_flags(p.add_argument_group("evaluation settings (as the study YAML's evaluation: section)"),
                      EvaluationConfig, SETTING_FLAGS)
    p.add_argument("--format", default="table", choices=["table", "json"],
                   help="json: one JSON object (run id, metrics with units, tags, params) on stdout")


def _data(args: argparse.Namespace) -> SplitDataset:
    if args.data in BUILTIN:
        return load_builtin(args.data, args.test_fraction, args.seed)
    return load_image_folder(Path(args.data), args.image_size, args.channels, args.test_fraction, args.seed)


FLAGS = {"model.arch": "--arch", "model.path": "MODEL", "--trust-model-file": "--trust-model-file"}
"""Study-YAML field names in loading errors -> the flags of this command."""


def _as_flags(text: str) -> str:
    if text in FLAGS:
        return FLAGS[text]
    for field, flag in FLAGS.items():
        text = text.replace(f"({field})", f"({flag})").replace(f"{field}:", f"{flag}:").replace(f"{field} ", f"{flag} ")
    return text


def _model(args: argparse.Namespace, split: SplitDataset) -> nn.Module:
    """The model to evaluate; loading errors name this command's flags, not study YAML fields."""
    try:
        return _load(args, split)
    except ConfigError as exc:
        raise ConfigError(_as_flags(exc.field), _as_flags(exc.problem), _as_flags(exc.fix) if exc.fix else None) from None
    except ModelError as exc:
        raise ModelError(_as_flags(str(exc))) from None


def _load(args: argparse.Namespace, split: SplitDataset) -> nn.Module:
    if ":/" in args.model:
        from netzip_mlflow.tracking.stored_model import load_model_uri

        # Tensors only, hash-checked, rebuilt from the run's recipe; the pickle only with trust.
        return load_model_uri(args.model, trust=args.trust_model_file)
    from netzip_mlflow.models.loading import load_model_file
    from netzip_mlflow.models.zoo import build_model, standard_variant

    classes, shape = len(split.classes), split.input_shape
    arch = build_model(args.arch, classes, shape, args.seed) if args.arch else None
    others = [lambda: standard_variant(args.arch, classes, shape)] if args.arch else []  # torchvision's own stem
    return load_model_file(args.model, arch, trust=args.trust_model_file, alternatives=others)


def _baseline_model(args: argparse.Namespace) -> nn.Module | None:
    """The baseline run's logged MLflow model, to time against (None when it logged none)."""
    if not args.baseline_run or args.no_paired:
        return None
    uri = f"runs:/{args.baseline_run}/model"
    try:
        return mlflow.pytorch.load_model(uri, map_location="cpu")
    except Exception as exc:  # noqa: BLE001 - MLflow raises many kinds for a missing model
        message = f"baseline run {args.baseline_run} has no loadable model ({type(exc).__name__}); measuring unpaired"
        logging.getLogger(__name__).warning(message)
        return None


def evaluation_config(args: argparse.Namespace) -> EvaluationConfig:
    """The :class:`EvaluationConfig` the flags describe (a flag not given: the model's default)."""
    return build_settings(EvaluationConfig, given_values(args, SETTING_FLAGS), SETTING_FLAGS)


def run(args: argparse.Namespace, console: Console) -> int:
    """Evaluate, log, and print the headline metrics."""
    from netzip_mlflow.api import evaluate
    from netzip_mlflow.tracking.experiments import ensure_experiment

    config = evaluation_config(args)  # bad settings fail before any data or model is loaded
    split = _data(args)
    model = _model(args, split)
    config = config.model_copy(update={"class_names": tuple(split.classes)})
    mlflow.set_experiment(experiment_id=ensure_experiment(args.experiment))
    with start_run(run_name=args.run_name) as run:
        mlflow.set_tag(keys.TAG_MODEL_SOURCE, args.model)
        report = evaluate(
            model, split.test, config=config, baseline=args.baseline_run, baseline_model=_baseline_model(args)
        )
    if getattr(args, "format", "table") == "json":
        write_json({
            "run_id": run.info.run_id,
            "experiment": args.experiment,
            "tracking_uri": mask_credentials(mlflow.get_tracking_uri()),
            "metrics": dict(sorted(report.metrics.items())),
            "units": {k: keys.METRICS[k].unit for k in sorted(report.metrics) if k in keys.METRICS},
            "tags": dict(sorted(report.tags.items())),
            "params": {k: str(v) for k, v in sorted(report.params.items())},
        })
        return 0
    table = Table(title=f"run {run.info.run_id} in experiment {args.experiment}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("unit")
    for key in sorted(report.metrics):
        table.add_row(key, f"{report.metrics[key]:.6g}", keys.METRICS[key].unit if key in keys.METRICS else "")
    console.print(table)
    return 0
