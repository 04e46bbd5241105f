"""The types a study's runner, executors and Ray tasks share: the job, one recipe's outcome, the result.

Kept apart from the code that produces them so that :mod:`~netzip_mlflow.study.runner`,
:mod:`~netzip_mlflow.study.executors`, :mod:`~netzip_mlflow.study.recipe` and
:mod:`~netzip_mlflow.study.ray_tasks` import them without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from netzip_mlflow.config.schema import StudySpec

if TYPE_CHECKING:  # pragma: no cover - typing only
    from torch import nn

    from netzip_mlflow.evaluation.report import EvaluationReport
    from netzip_mlflow.study.context import StudyData

@dataclass(frozen=True)
class RecipeOutcome:
    """What became of one recipe."""

    recipe: str
    technique: str
    run_id: str
    status: str  # "FINISHED" or "FAILED"
    error: str | None = None
    ocs: float | None = None
    reused: bool = False  # a FINISHED run of an earlier, interrupted run of the study


@dataclass
class StudyResult:
    """The runs a study made and its leaderboard."""

    study: str
    experiment: str
    study_run_id: str
    baseline_run_id: str
    outcomes: list[RecipeOutcome] = field(default_factory=list)
    experiment_id: str = ""
    leaderboard: pd.DataFrame | None = None
    resumed: bool = False
    baseline_reused: bool = False
    killed: list[str] = field(default_factory=list)  # orphaned runs marked KILLED
    notes: list[str] = field(default_factory=list)  # e.g. why there are no plots (tag netzip.leaderboard.note)

    @property
    def failed(self) -> list[RecipeOutcome]:
        """Recipes whose run ended FAILED."""
        return [o for o in self.outcomes if o.status == "FAILED"]


@dataclass
class StudyJob:
    """What the recipes of one study share, as the runner has it once the baseline is done.

    Attributes:
        spec: the validated study.
        data: the study's data (used in this process only; Ray tasks rebuild it from ``spec``).
        baseline: the baseline model (used in this process only; Ray tasks load the logged model).
        base_report: the baseline's evaluation, with ``run_id`` set to its MLflow run, or the run id
            of a logged baseline (a resumed study).
        study_run_id: the study's parent run; every recipe run is nested under it.
        experiment_id: the study's MLflow experiment.
        tracking_uri: where runs are logged.
        progress: show progress bars.
    """

    spec: StudySpec
    data: StudyData
    baseline: nn.Module
    base_report: EvaluationReport | str
    study_run_id: str
    experiment_id: str
    tracking_uri: str
    progress: bool = True

    @property
    def baseline_run_id(self) -> str:
        """The baseline's MLflow run id ("" if it was not logged)."""
        return self.base_report if isinstance(self.base_report, str) else (self.base_report.run_id or "")


RecipeFn = Callable[..., RecipeOutcome]
"""``run_recipe(recipe, spec, data, baseline_model, base_report, progress, parent_run_id=None)``
(:func:`netzip_mlflow.study.recipe.run_recipe`)."""
