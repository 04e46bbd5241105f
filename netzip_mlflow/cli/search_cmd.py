"""``netzip search`` (a study's ``search:`` block with Optuna) and ``netzip promote`` (Model Registry)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from netzip_mlflow.errors import ConfigError
from netzip_mlflow.tracking import keys


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register the ``search`` and ``promote`` subcommands."""
    s = sub.add_parser("search", help="search a study's recipe space with Optuna (the study's search: block)")
    s.add_argument("study", type=Path)
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set search.n_trials=4 (repeatable)")
    s.add_argument("--n-trials", type=int, help="total trials of the search (search.n_trials)")
    s.add_argument("--timeout", type=float, help="stop starting trials after this many seconds (search.timeout_s)")
    s.add_argument("--storage", help="Optuna storage URL (default: optuna.db beside a sqlite:/// tracking store)")
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--fresh", action="store_true", help="start a new search instead of resuming the last one")
    s.add_argument("--trust-model-file", action="store_true",
                   help="allow model.path to be a whole pickled module (only files you made yourself)")

    p = sub.add_parser("promote", help="register a study's best compressed run in the MLflow Model Registry")
    p.add_argument("--experiment", required=True)
    p.add_argument("--study", required=True)
    p.add_argument("--by", default=keys.OCS, help="metric key to rank by (default ocs)")
    p.add_argument("--where", help="conditions on logged metrics, e.g. \"accuracy/top1 >= 0.95 and speed/chats <= 2e9\"")
    p.add_argument("--model-name", required=True, help="registered model name (created if new)")
    p.add_argument("--alias", default="champion", help="alias set on the new version (default champion; '' for none)")


def run_search_cmd(args: argparse.Namespace, console: Console, err_console: Console) -> int:
    from netzip_mlflow.config.loader import parse_override
    from netzip_mlflow.search.runner import search

    overrides = dict(parse_override(o) for o in args.overrides)
    if args.n_trials is not None:
        if args.n_trials < 1:
            raise ConfigError("--n-trials", f"must be at least 1, got {args.n_trials}")
        overrides["search.n_trials"] = args.n_trials
    if args.timeout is not None:
        overrides["search.timeout_s"] = args.timeout
    _require_optuna()
    result = search(args.study, overrides, progress=not args.no_progress, fresh=args.fresh,
                    trust_model_file=args.trust_model_file, storage=args.storage)
    table = Table(title=f"Search {result.study}: trials (objectives {', '.join(result.objectives)})")
    for col in ("trial", "state", "feasible", *result.objectives, "note"):
        table.add_column(col)
    best = {t.number for t in result.best}
    for t in result.trials:
        values = [f"{v:.4g}" for v in t.values] if t.values else ["-"] * len(result.objectives)
        feasible = "-" if t.feasible is None else ("yes" if t.feasible else "no: " + ",".join(t.violated))
        name = f"{t.number}{' *' if t.number in best else ''}"
        table.add_row(name, t.state, feasible, *values, escape((t.note or "")[:80]))
    console.print(table)
    import mlflow

    if result.resumed:
        console.print(f"Resumed search run {result.study_run_id} (--fresh starts over)")
    console.print(f"Optuna study {result.optuna_study} in {result.storage}")
    console.print(f"Runs are in experiment [bold]{result.experiment}[/] at {mlflow.get_tracking_uri()}; "
                  f"best (*): {', '.join(t.run_id or '' for t in result.best) or 'no feasible trial'}", soft_wrap=True)
    if not result.best:
        err_console.print("no trial met the constraints; see the trials' netzip.search.violated tags")
    if result.failed:
        err_console.print(f"{len(result.failed)} of {len(result.trials)} trials failed; see their runs' netzip.error tags")
        return 1
    return 0 if result.best else 1


def _require_optuna() -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError("netzip search", "needs Optuna, which is not installed",
                          "pip install 'netzip-mlflow[search]'") from None


def run_promote_cmd(args: argparse.Namespace, console: Console) -> int:
    from netzip_mlflow.tracking.promote import promote

    done = promote(args.experiment, args.study, args.model_name, by=args.by, where=args.where, alias=args.alias or None)
    alias = f", alias {done.alias!r}" if done.alias else ""
    console.print(f"Registered {done.model_name!r} version {done.version}{alias} from run {done.run_id} "
                  f"({done.by} = {done.value:.4g})", soft_wrap=True)
    return 0
