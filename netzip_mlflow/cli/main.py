"""The ``netzip`` command: a thin layer over the public API.

Subcommands: ``run`` (a study), ``search`` (a study's search block, Optuna), ``promote`` (the best
run into the Model Registry), ``leaderboard``, ``evaluate`` (one model file), ``plot`` (the paper's
plots as files) and ``techniques`` (the recipe catalogue). ``run``, ``evaluate``, ``techniques`` and
``leaderboard`` take ``--format json`` for machine-readable output on stdout. Exit codes
(:mod:`netzip_mlflow.cli.output`): 0 success; 1 a study ran but some recipe failed (the others ran);
2 a usage or input error (bad flag, bad YAML field, unreadable data or model, unreachable store),
printed as one line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from netzip_mlflow import __version__
from netzip_mlflow.cli import class_impact_cmd, evaluate_cmd, search_cmd
from netzip_mlflow.cli.output import EXIT_INTERRUPTED, EXIT_OK, EXIT_RECIPES_FAILED, EXIT_USAGE, write_json
from netzip_mlflow.cli.settings_flags import SettingFlag, add_setting_flags, build_settings, given_values
from netzip_mlflow.errors import NetzipError
from netzip_mlflow.evaluation.settings import EvaluationSettings
from netzip_mlflow.tracking.uri import mask_credentials

console = Console()
err_console = Console(stderr=True)


RATIO_FLAGS = (
    SettingFlag("--performance-metric", "performance"),
    SettingFlag("--speedup-metric", "speedup"),
    SettingFlag("--compression-metric", "compression"),
    SettingFlag("--efficiency-metric", "efficiency"),
    SettingFlag("--zeta", "zeta"),
    SettingFlag("--min-change", "min_change_rel"),
    SettingFlag("--score-at-chance", "score_at_chance"),
)
"""The flags that set :class:`~netzip_mlflow.analysis.ratios.RatioConfig` fields (``--weights`` aside)."""


RUN_FLAGS = (SettingFlag("--score-at-chance", "ratios.score_at_chance"),)
"""``netzip run`` flags that override a field of the study's ``evaluation:`` section."""


def _ratio_args(parser: argparse.ArgumentParser) -> None:
    from netzip_mlflow.analysis.ratios import RatioConfig

    g = parser.add_argument_group("recompute ratios and OCS from the logged metrics")
    add_setting_flags(g, RatioConfig, RATIO_FLAGS)
    g.add_argument("--weights", help=f"{RatioConfig.field_info('weights').description}, comma-separated, e.g. 1,1,1,1")


def _ratio_config(args: argparse.Namespace):
    from netzip_mlflow.analysis.ratios import RatioConfig
    from netzip_mlflow.errors import ConfigError

    values = given_values(args, RATIO_FLAGS)
    if args.weights:
        try:
            values["weights"] = tuple(float(w) for w in args.weights.split(","))
        except ValueError:
            raise ConfigError("--weights", f"{args.weights[:80]!r} is not four comma-separated numbers", "e.g. --weights 1,1,1,1") from None
    if not values:
        return None
    return build_settings(RatioConfig, values, {**{f.path: f.flag for f in RATIO_FLAGS}, "weights": "--weights"})


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netzip", description="Compare neural-network compression with the NetZIP metrics in MLflow.")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("-v", "--verbose", action="store_true")
    parser.add_argument("--version", action="version", version=f"netzip-mlflow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a study YAML: baseline, recipes, leaderboard")
    run.add_argument("study", type=Path)
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a field, e.g. --set data.path=/data/images (repeatable)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (phase lines still print)")
    add_setting_flags(run, EvaluationSettings, RUN_FLAGS)
    run.add_argument("--fresh", action="store_true",
                     help="start a new study run instead of resuming the last one of this study")
    run.add_argument("--trust-model-file", action="store_true",
                     help="allow model.path to be a whole pickled module, and a resumed baseline to be "
                          "loaded from its pickle when it has no tensors-only copy; unpickling can run "
                          "arbitrary code, so only for files you made and stores only you can write to")
    run.add_argument("--executor", choices=["local", "ray"],
                     help="where recipes run: one after another here (local, the default) or as Ray tasks "
                          "(needs an http:// tracking server; see docs/deployment.md)")
    run.add_argument("--address", help="Ray cluster address for --executor ray (e.g. auto, HOST:6379, ray://HOST:10001)")
    run.add_argument("--format", default="table", choices=["table", "json"],
                     help="json: the study's runs, outcomes and leaderboard as one JSON object on stdout")

    board = sub.add_parser("leaderboard", help="rank compressed runs by OCS (from MLflow queries only)")
    board.add_argument("--experiment", required=True, action="append", help="experiment name (repeatable)")
    board.add_argument("--study")
    board.add_argument("--technique")
    board.add_argument("--hardware", help="netzip.hw.id or CPU name")
    board.add_argument("--sort", default="ocs")
    board.add_argument("--format", default="table", choices=["table", "csv", "markdown", "json", "html"])
    board.add_argument("--include-failed", action="store_true")
    board.add_argument("--by", choices=["hardware", "runtime"],
                       help="hardware: recipes across machines side by side; runtime: the best run of "
                            "each runtime (torch, onnxruntime, openvino)")
    _ratio_args(board)

    plot = sub.add_parser("plot", help="write the radar, OCS bar and bubble plots as PNG files")
    plot.add_argument("--experiment", required=True, action="append")
    plot.add_argument("--study")
    plot.add_argument("--out", type=Path, default=Path("netzip-plots"), help="folder for the PNG files (created)")
    plot.add_argument("--top-k", type=int, default=5)
    _ratio_args(plot)

    techniques = sub.add_parser("techniques", help="list compression techniques and their parameters")
    techniques.add_argument("--format", default="table", choices=["table", "json"])
    evaluate_cmd.add_parser(sub)
    class_impact_cmd.add_parser(sub)
    search_cmd.add_parsers(sub)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from netzip_mlflow.analysis.render import print_table
    from netzip_mlflow.config.loader import parse_override
    from netzip_mlflow.study.runner import run_study

    overrides = dict(parse_override(o) for o in args.overrides)
    for path, value in given_values(args, RUN_FLAGS).items():
        overrides[f"{EvaluationSettings.section}.{path}"] = value
    if args.executor:
        overrides["executor.kind"] = args.executor
    if args.address:
        overrides["executor.address"] = args.address
    result = run_study(
        args.study, overrides, progress=not args.no_progress, fresh=args.fresh,
        trust_model_file=args.trust_model_file,
        on_phase=None if args.format == "json" else _print_phase,  # stdout holds only the JSON then
    )
    import mlflow

    if args.format == "json":
        board = result.leaderboard
        write_json({
            "study": result.study,
            "experiment": result.experiment,
            "tracking_uri": mask_credentials(mlflow.get_tracking_uri()),
            "study_run_id": result.study_run_id,
            "baseline_run_id": result.baseline_run_id,
            "resumed": result.resumed,
            "baseline_reused": result.baseline_reused,
            "killed": list(result.killed),
            "outcomes": [
                {"recipe": o.recipe, "technique": o.technique, "run_id": o.run_id, "status": o.status,
                 "error": o.error, "ocs": o.ocs, "reused": o.reused}
                for o in result.outcomes
            ],
            "leaderboard": [] if board is None else board.to_dict(orient="records"),
            "notes": list(result.notes),
        })
        return EXIT_RECIPES_FAILED if result.failed else EXIT_OK
    if result.resumed:
        reused = sum(o.reused for o in result.outcomes)
        console.print(
            f"Resumed study run {result.study_run_id}: baseline {'reused' if result.baseline_reused else 're-run'}, "
            f"{reused} of {len(result.outcomes)} recipe runs reused, {len(result.killed)} interrupted runs marked KILLED "
            "(--fresh starts over)",
            soft_wrap=True,
        )
    if result.leaderboard is not None and not result.leaderboard.empty:
        print_table(result.leaderboard, console=console, title=f"OCS leaderboard — study {result.study}")
        _print_caveats(result.leaderboard)
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    from netzip_mlflow.tracking.experiments import experiment_link

    uri = mask_credentials(mlflow.get_tracking_uri())
    console.print(f"\nRuns are in experiment [bold]{escape(result.experiment)}[/] at {escape(uri)}", highlight=False, soft_wrap=True)
    if uri.startswith(("http://", "https://")):
        console.print(f"Open {escape(uri.rstrip('/'))}/{experiment_link(result.experiment_id)}", soft_wrap=True, highlight=False)
    else:
        console.print(f"Open the MLflow UI:  {escape(ui_command(uri))}", soft_wrap=True, highlight=False)
        console.print(f"then http://127.0.0.1:5000/{experiment_link(result.experiment_id)}", soft_wrap=True, highlight=False)
    if result.failed:
        for outcome in result.failed:
            err_console.print(f"[red]FAILED[/] {outcome.recipe} ({outcome.technique}): {escape(outcome.error or '')}", highlight=False, soft_wrap=True)
        err_console.print(f"{len(result.failed)} of {len(result.outcomes)} recipes failed; see their runs' netzip.error tags")
        return EXIT_RECIPES_FAILED
    return EXIT_OK


def ui_command(tracking_uri: str) -> str:
    """The command that opens the MLflow UI on ``tracking_uri`` with this Python (works outside the venv)."""
    import shlex

    return f"{shlex.quote(sys.executable)} -m mlflow ui --backend-store-uri {shlex.quote(tracking_uri)}"


def _print_phase(line: str) -> None:
    """One status line per phase of a study (stdout; stderr keeps only warnings and the error line)."""
    console.print(f"[dim]→[/] {escape(line)}", highlight=False, soft_wrap=True)


def _print_caveats(board) -> None:
    """Below the table: each run's trust notes and why runs are unranked, one line each."""
    from netzip_mlflow.analysis.trust import SEPARATOR

    lines = []
    for row in board.itertuples(index=False):
        trust = getattr(row, "trust", "") or ""
        note = getattr(row, "note", "") or ""
        said = SEPARATOR.join(t for t in (trust, note) if isinstance(t, str) and t)
        if said:
            seed = getattr(row, "seed", None)
            who = f"{row.recipe}" + (f" (seed {seed})" if isinstance(seed, str) and board["seed"].nunique() > 1 else "")
            lines.append(f"  {who}: {said}")
    if lines:
        console.print("Caveats (see README 'Trust notes'):", highlight=False)
        for line in lines:
            console.print(Text(line), soft_wrap=True)


def _cmd_leaderboard(args: argparse.Namespace) -> int:
    from netzip_mlflow.analysis.leaderboard import leaderboard, leaderboard_by_hardware, leaderboard_by_runtime
    from netzip_mlflow.analysis.render import print_table, render

    kwargs = dict(study=args.study, technique=args.technique, hardware=args.hardware, ratio_config=_ratio_config(args))
    if args.by == "hardware":
        board = leaderboard_by_hardware(args.experiment, **kwargs)
    elif args.by == "runtime":
        board = leaderboard_by_runtime(args.experiment, **kwargs)
    else:
        board = leaderboard(args.experiment, sort=args.sort, include_failed=args.include_failed, with_baseline=True, **kwargs)
    if board.empty and args.format == "table":
        console.print(f"No compressed runs in experiment {escape(', '.join(args.experiment))}: run a study first "
                      "(netzip run STUDY.yaml)", highlight=False, soft_wrap=True)
        return 0
    if args.format == "table":
        print_table(board, console=console, title="OCS leaderboard")
        if args.by != "hardware":
            _print_caveats(board)
    else:
        sys.stdout.write(render(board, args.format))
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from netzip_mlflow.analysis.leaderboard import baselines, leaderboard
    from netzip_mlflow.analysis.plots import bubble_plot, ocs_bar_plot, radar_plot, save

    from netzip_mlflow.errors import ConfigError, DataError

    if args.out.exists() and not args.out.is_dir():
        raise ConfigError("--out", f"{args.out} is a file", "give a folder for the PNG files (it is created if missing)")
    if args.top_k < 1:
        raise ConfigError("--top-k", f"must be a positive count, got {args.top_k}")
    board = leaderboard(args.experiment, study=args.study, ratio_config=_ratio_config(args))
    if board.empty:
        raise DataError(f"no compressed runs to plot in experiment {', '.join(args.experiment)}: run a study first")
    base = baselines(args.experiment, study=args.study)
    star = base.iloc[0] if len(base) == 1 else None  # the baseline is drawn when there is one
    args.out.mkdir(parents=True, exist_ok=True)
    figures = (
        ("radar", lambda: radar_plot(board, top_k=args.top_k)),
        ("ocs_bars", lambda: ocs_bar_plot(board)),
        ("accuracy_latency_bubbles", lambda: bubble_plot(board, baseline=star)),
    )
    skipped = 0
    for name, draw in figures:
        try:
            fig = draw()
        except DataError as exc:  # e.g. no finite OCS: the other plots are still written
            err_console.print(f"[yellow]skipped[/] {name}: {escape(str(exc))}", highlight=False, soft_wrap=True)
            skipped += 1
            continue
        path = save(fig, args.out / f"{name}.png")
        console.print(f"wrote {escape(str(path))}", highlight=False, soft_wrap=True)
    return 1 if skipped == len(figures) else 0


def _cmd_techniques(args: argparse.Namespace) -> int:
    from rich.table import Table

    from netzip_mlflow.compression.registry import list_techniques

    if args.format == "json":
        write_json([
            {
                "name": spec.name,
                "description": spec.description,
                "params": [
                    {"name": p.name, "type": p.type.__name__, "default": p.default, "allowed": p.allowed(), "help": p.help}
                    for p in spec.params
                ],
            }
            for spec in list_techniques()
        ])
        return EXIT_OK
    table = Table(title="Compression techniques", show_lines=True)
    for col in ("technique", "description", "parameters (default)"):
        table.add_column(col)
    for spec in list_techniques():
        params = "\n".join(p.describe() for p in spec.params)
        table.add_row(Text(spec.name), Text(spec.description), Text(params or "-"))  # Text: "[nni]" is not markup
    console.print(table)
    return 0


COMMANDS = {
    "run": _cmd_run,
    "leaderboard": _cmd_leaderboard,
    "plot": _cmd_plot,
    "techniques": _cmd_techniques,
    "evaluate": lambda args: evaluate_cmd.run(args, console),
    "class-impact": lambda args: class_impact_cmd.run(args, console),
    "search": lambda args: search_cmd.run_search_cmd(args, console, err_console),
    "promote": lambda args: search_cmd.run_promote_cmd(args, console),
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``netzip`` console script; returns the exit code.

    Argument errors exit with :data:`~netzip_mlflow.cli.output.EXIT_USAGE` (argparse's own 2).
    """
    # No network at run time: MLflow 3 sends usage telemetry unless told not to. Only the CLI's own
    # process is changed (never on import); MLFLOW_DISABLE_TELEMETRY=false set by the user wins.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    args = _build_parser().parse_args(argv)
    if getattr(args, "no_progress", False):
        # MLflow's own artifact upload/download bars follow this switch; set for this CLI process only.
        os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    if not args.verbose:  # MLflow logs every failed SQL statement with its traceback; we report the cause once
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    if args.tracking_uri:
        import mlflow

        mlflow.set_tracking_uri(args.tracking_uri)
    from mlflow.exceptions import MlflowException

    try:
        return COMMANDS[args.command](args)
    except NetzipError as exc:
        _error_line(str(exc))
        return EXIT_USAGE
    except MlflowException as exc:  # the store failed outside the places that wrap its errors
        _error_line(f"MLflow tracking failed: {store_problem(exc)} (check --tracking-uri / MLFLOW_TRACKING_URI)")
        return EXIT_USAGE
    except KeyboardInterrupt:
        what = "; the interrupted run is marked KILLED: run the same command again to resume it (finished runs are reused)" if args.command == "run" else ""
        _error_line(f"interrupted by user{what}")
        return EXIT_INTERRUPTED
    except Exception as exc:  # a store that fails below MLflow's wrappers (sqlalchemy, sqlite3)
        if not _is_store_error(exc):
            raise
        _error_line(f"MLflow tracking failed: {store_problem(exc)} (check --tracking-uri / MLFLOW_TRACKING_URI)")
        return EXIT_USAGE


def _error_line(text: str) -> None:
    """The one ``error:`` line (whitespace folded, credentials masked) on stderr."""
    err_console.print(f"[red]error:[/] {escape(' '.join(mask_credentials(text).split()))}", highlight=False, soft_wrap=True)


def _is_store_error(exc: BaseException) -> bool:
    return any(type(e).__module__.split(".")[0] in ("sqlalchemy", "sqlite3") for e in _chain(exc))


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not e for e in seen) and len(seen) < 20:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def store_problem(exc: BaseException) -> str:
    """One line on why the store failed: the deepest cause in the chain (e.g. sqlite's "attempt to
    write a readonly database"), and, for a ``sqlite:///`` store whose file is gone, that it was deleted."""
    import mlflow

    from netzip_mlflow.tracking.experiments import sqlite_path

    causes = [e for e in _chain(exc) if str(e).strip()]
    root = causes[-1] if causes else exc
    text = str(root).strip().splitlines()[0][:300] if str(root).strip() else type(root).__name__
    line = text if root is exc else f"{type(root).__name__}: {text}"
    db = sqlite_path(mlflow.get_tracking_uri())
    if db is not None and not db.exists():
        line = f"the store file {db} no longer exists (deleted while this command ran?): {line}"
    return line


if __name__ == "__main__":
    sys.exit(main())
