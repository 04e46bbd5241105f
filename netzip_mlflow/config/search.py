"""The ``search:`` block of a study YAML: what ``netzip search`` explores, optimises and requires.

Example (see ``recipes/search_quickstart.yaml``)::

    search:
      recipes:                       # templates; a trial picks one (when several) and samples it
        - name: prune_ptq
          steps:
            - technique: prune_structured
              params:
                target: macs
                amount: {low: 0.3, high: 0.8}        # a range: float or int from the param's type
                importance: {choices: [l1, l2]}      # a choice
                layer_policy: {groups: auto, low: 0.2, high: 1.0}   # one weight per layer group
                finetune_epochs: 1                   # a fixed value
            - technique: ptq
      objective: ocs                 # or [accuracy/top1, speed/chats]: a Pareto search
      constraints:
        max_accuracy_drop: 0.01      # absolute drop of the performance metric vs the baseline
        max: {speed/macs: 2.0e8}
      n_trials: 12
      timeout_s: 600

The space itself (ranges against each parameter's allowed values) is checked by the loader, which
knows the techniques; this module checks the block's shape and the metric keys.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from netzip_mlflow.tracking import keys


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known(key: str) -> str:
    if key not in keys.METRICS:
        raise ValueError(f"unknown metric key {key!r}; use one of {', '.join(sorted(keys.METRICS))}")
    return key


class ObjectiveSpec(_Strict):
    """One objective: a logged metric key and whether to maximise or minimise it.

    ``direction`` defaults to the metric's own (``accuracy/top1``: maximize, ``speed/chats``: minimize).
    """

    metric: str
    direction: Literal["maximize", "minimize"] | None = None

    @field_validator("metric")
    @classmethod
    def _metric(cls, value: str) -> str:
        return _known(value)

    @property
    def resolved_direction(self) -> str:
        """``"maximize"`` or ``"minimize"``."""
        if self.direction is not None:
            return self.direction
        return "maximize" if keys.higher_is_better(self.metric) else "minimize"


class ConstraintsSpec(_Strict):
    """What a trial must meet to be feasible. Infeasible trials are kept (tagged) but never "best".

    Attributes:
        max_accuracy_drop: the largest absolute drop of the performance metric (``accuracy/top1``;
            ``accuracy/map50`` for detection) below the baseline's, as a fraction (0.01 = 1 point).
        max: ``{metric key: upper bound}`` in the metric's unit (e.g. ``speed/macs: 2.0e8``).
        min: ``{metric key: lower bound}``.
    """

    max_accuracy_drop: float | None = Field(None, ge=0, le=1)
    max: dict[str, float] = Field(default_factory=dict)
    min: dict[str, float] = Field(default_factory=dict)

    @field_validator("max", "min")
    @classmethod
    def _metrics(cls, value: dict[str, float]) -> dict[str, float]:
        for key in value:
            _known(key)
        return value

    @property
    def empty(self) -> bool:
        """Whether nothing is required."""
        return self.max_accuracy_drop is None and not self.max and not self.min


class TrialPruningSpec(_Strict):
    """Stopping trials early on a cheap proxy, before fine-tuning and the full measurement.

    The proxy is the model after the recipe's compression steps with training switched off. A trial
    is stopped (Optuna state PRUNED, said in its run's tags) when:

    * its MACs exceed a ``constraints.max`` on ``speed/macs`` (exact: training and quantization do
      not change MACs);
    * the recipe does not train and its proxy accuracy already breaks an accuracy constraint (exact:
      the proxy is the final model);
    * its proxy top-1 accuracy is below ``min_proxy_accuracy`` (a heuristic the user states).
    """

    enabled: bool = True
    min_proxy_accuracy: float | None = Field(None, ge=0, le=1)


class SearchSettings(_Strict):
    """A compression search: objectives, constraints and the budget (the study schema adds the
    recipe templates: :class:`netzip_mlflow.config.schema.SearchSpec`)."""

    objective: list[ObjectiveSpec] = Field(default_factory=lambda: [ObjectiveSpec(metric=keys.OCS)])
    constraints: ConstraintsSpec = ConstraintsSpec()
    n_trials: int = Field(20, ge=1, le=100_000)
    timeout_s: float | None = Field(None, gt=0, description="stop starting trials after this many seconds")
    sampler: Literal["auto", "tpe", "nsga2", "random"] = Field(
        "auto", description="auto: TPE for one objective, NSGA-II for several"
    )
    seed: int = Field(0, ge=0, description="the sampler's seed")
    startup_trials: int | None = Field(None, ge=1, description="TPE: random trials before modelling")
    population_size: int | None = Field(None, ge=2, description="NSGA-II population")
    pruning: TrialPruningSpec = TrialPruningSpec()
    storage: str | None = Field(
        None, description="Optuna storage URL; default: optuna.db beside a sqlite:/// tracking store"
    )

    @field_validator("objective", mode="before")
    @classmethod
    def _objective_forms(cls, value: Any) -> Any:
        """``ocs`` | ``[key, ...]`` | ``[{metric, direction}, ...]`` -> a list of mappings."""
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [{"metric": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("objective")
    @classmethod
    def _distinct(cls, value: list[ObjectiveSpec]) -> list[ObjectiveSpec]:
        if not value:
            raise ValueError("give at least one objective metric, e.g. objective: ocs")
        names = [o.metric for o in value]
        if len(set(names)) != len(names):
            raise ValueError(f"objective metrics must be distinct, got {names}")
        return value

    @model_validator(mode="after")
    def _sampler_fits(self) -> SearchSettings:
        if self.sampler == "nsga2" and len(self.objective) == 1:
            raise ValueError("sampler 'nsga2' is for several objectives; use tpe (or auto) for one")
        return self

    @property
    def multi_objective(self) -> bool:
        """Whether this is a Pareto search (several objectives)."""
        return len(self.objective) > 1
