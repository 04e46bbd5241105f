"""``netzip class-impact``: Hooker et al.'s population test over a study repeated with several seeds."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console
from rich.table import Table

from netzip_mlflow.errors import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``class-impact`` subcommand."""
    p = sub.add_parser(
        "class-impact",
        help="per-class Welch t-test of each recipe run with 2+ seeds (seed 002's population method)",
    )
    p.add_argument("--experiment", required=True)
    p.add_argument("--study", required=True)
    p.add_argument("--alpha", type=float, default=0.05, help="significance level of the t-test")
    p.add_argument("--format", default="table", choices=["table", "csv"], help="csv: one row per recipe and class")


def run(args: argparse.Namespace, console: Console) -> int:
    """Print, per recipe, the classes whose accuracy changed significantly."""
    from netzip_mlflow.analysis.population import population_impact, population_table

    results = population_impact(args.experiment, args.study, alpha=args.alpha)
    if not results:
        raise ConfigError(
            "--study",
            f"no recipe of study {args.study!r} has finished runs with two or more seeds",
            "run the study again with other seeds, e.g. netzip run STUDY.yaml --set seed=1",
        )
    if args.format == "csv":
        sys.stdout.write(population_table(results).to_csv(index=False))
        return 0
    table = Table(title=f"Class-level impact, population method (Welch t-test, alpha={args.alpha})")
    for column in ("recipe", "seeds", "top-1 base → compressed", "impacted classes", "impacted images"):
        table.add_column(column)
    for r in results:
        i = r.impact
        names = ", ".join(f"{n} ({'-' if n in i.degraded else '+'})" for n in i.impacted_names) or "none"
        table.add_row(
            r.recipe, ",".join(map(str, r.seeds)),
            f"{i.baseline_accuracy:.4f} → {i.compressed_accuracy:.4f}", names, f"{i.impacted_images:.0f}",
        )
    console.print(table)
    return 0
