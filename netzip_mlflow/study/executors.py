"""Where a study's recipes run: one after another here (:class:`LocalExecutor`, the default) or as
tasks on a Ray cluster (:class:`RayExecutor`).

The runner trains and evaluates the baseline, opens the study's parent run, then hands the recipes
to an executor with the function that runs one recipe (compress, evaluate, log into its nested run).
The local executor calls it in this process. The Ray executor runs it as one Ray task per recipe with
the resources the recipe declares (``resources: {num_cpus, num_gpus, custom}``); the task loads the
baseline model from the baseline run's logged MLflow model, rebuilds the data from the study spec,
and logs its own run under the study's parent run on the shared tracking server. Recipes that target
a machine class (a custom resource such as ``{"rpi4": 1}``) are compared against a baseline evaluated
by a task with the same resource, so ratios never mix hardware.

Nothing here imports Ray unless the Ray executor is used.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlparse

from netzip_mlflow.config.schema import ExecutorSpec, RecipeSpec, StudySpec
from netzip_mlflow.errors import ConfigError
from netzip_mlflow.study.jobs import RecipeFn, RecipeOutcome, StudyJob
from netzip_mlflow.tracking import keys
from netzip_mlflow.tracking.uri import mask_credentials

if TYPE_CHECKING:  # pragma: no cover - typing only
    from netzip_mlflow.study.context import StudyData

log = logging.getLogger(__name__)

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "RecipeFn", "StudyJob", "make_executor"]

REMOTE_TRACKING_SCHEMES = ("http", "https")
CREDENTIAL_ENV = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
)
"""Environment variables the Ray executor forwards to its tasks (how workers reach the server)."""

TAG_EXECUTOR = keys.TAG_EXECUTOR
TAG_HW_CLASS = keys.TAG_HW_CLASS
TAG_RAY_NODE_ID = keys.TAG_RAY_NODE_ID
TAG_RAY_NODE_IP = keys.TAG_RAY_NODE_IP
TAG_RAY_HOSTNAME = keys.TAG_RAY_HOSTNAME
TAG_RAY_RESOURCES = keys.TAG_RAY_RESOURCES


class Executor(Protocol):
    """Runs a study's recipes; ``prepare`` checks everything that can be checked before any work."""

    def prepare(self, spec: StudySpec, tracking_uri: str) -> None:
        """Refuse, with a :class:`ConfigError`, a study this executor cannot run."""

    def run_recipes(self, job: StudyJob, recipes: Sequence[RecipeSpec], run_recipe: RecipeFn) -> list[RecipeOutcome]:
        """Run every recipe; one outcome per recipe, in the order of ``recipes``."""

    def close(self) -> None:
        """Release what ``prepare`` acquired (the runner calls it in a ``finally``)."""


def reset_data_order(data: StudyData, seed: int) -> None:
    """Reseed the training loader's shuffle so each recipe sees the data in the same order.

    Without this, a recipe's calibration and fine-tuning batches would depend on how much of the
    shuffle the baseline and earlier recipes consumed, so results would depend on recipe order (and
    a recipe run alone, or on another machine, would differ).
    """
    generator = getattr(data.train, "generator", None)
    if generator is not None:
        generator.manual_seed(seed)


class LocalExecutor:
    """The recipes one after another in this process (the default; needs no Ray)."""

    def prepare(self, spec: StudySpec, tracking_uri: str) -> None:
        """Nothing to check locally; recipes' ``resources`` are noted and ignored."""
        for recipe in spec.recipes:
            if recipe.resources.custom:
                log.info("recipe %s declares resources %s; the local executor runs it on this machine",
                         recipe.name, recipe.resources.custom)

    def run_recipes(self, job: StudyJob, recipes: Sequence[RecipeSpec], run_recipe: RecipeFn) -> list[RecipeOutcome]:
        """Call ``run_recipe`` for each recipe in turn."""
        outcomes = []
        for recipe in recipes:
            reset_data_order(job.data, job.spec.seed)
            outcomes.append(run_recipe(recipe, job.spec, job.data, job.baseline, job.base_report, job.progress))
        return outcomes

    def close(self) -> None:
        """Nothing to release."""


def check_remote_tracking_uri(tracking_uri: str) -> None:
    """Refuse a tracking URI that Ray workers on other machines cannot reach.

    Raises :class:`ConfigError` for ``sqlite:///``, ``file:`` and plain paths (and direct database
    URIs, whose artifacts would land on each worker's local disk).
    """
    scheme = urlparse(tracking_uri).scheme.lower()
    if scheme in REMOTE_TRACKING_SCHEMES:
        return
    raise ConfigError(
        "tracking_uri",
        f"{mask_credentials(tracking_uri)!r} is not reachable from Ray workers: with --executor ray every worker logs "
        "its runs itself, so tracking must be an MLflow server (http:// or https://)",
        "start `mlflow server --backend-store-uri postgresql://... --artifacts-destination DIR "
        "--serve-artifacts --host 0.0.0.0` (see docs/deployment.md) and pass "
        "--tracking-uri http://HOST:5000, or use --executor local",
    )


class RayExecutor:
    """Each recipe as one Ray task on the cluster at ``address``, with the resources it declares.

    Args:
        address: the Ray cluster (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``); ``None``
            connects to ``RAY_ADDRESS`` if set, otherwise starts a single-machine Ray.
        init_kwargs: more ``ray.init`` arguments (e.g. ``num_cpus`` for a local Ray).
    """

    def __init__(self, address: str | None = None, **init_kwargs: Any) -> None:
        self.address = address
        self.init_kwargs = init_kwargs
        self._connected_here = False

    # -- checks ------------------------------------------------------------------------------

    def _connect(self) -> Any:
        try:
            import ray
        except ImportError:
            raise ConfigError(
                "executor", "the Ray executor needs the 'ray' package", "pip install 'netzip-mlflow[ray]'"
            ) from None
        if not ray.is_initialized():
            import os

            env = {name: os.environ[name] for name in CREDENTIAL_ENV if os.environ.get(name)}
            env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
            env.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no bars in task logs
            try:
                ray.init(address=self.address, runtime_env={"env_vars": env}, log_to_driver=True,
                         **self.init_kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(
                    "executor.address", f"cannot connect to the Ray cluster at {self.address or 'auto'!r}: {exc}",
                    "start it with `ray start --head` and pass its address (--address HOST:6379)",
                ) from exc
            self._connected_here = True
        return ray

    @staticmethod
    def _node_resources(ray: Any) -> list[dict[str, float]]:
        return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]

    @staticmethod
    def _request(recipe: RecipeSpec) -> dict[str, float]:
        r = recipe.resources
        return {"CPU": r.num_cpus, "GPU": r.num_gpus, **r.custom}

    def prepare(self, spec: StudySpec, tracking_uri: str) -> None:
        """Check the tracking URI, connect to Ray, and check that some node can run every recipe.

        A recipe whose resources no node offers would wait forever in Ray's queue: it is refused
        here, before the baseline is trained.
        """
        check_remote_tracking_uri(tracking_uri)
        ray = self._connect()
        nodes = self._node_resources(ray)
        for i, recipe in enumerate(spec.recipes):
            need = {k: v for k, v in self._request(recipe).items() if v > 0}
            if not any(all(node.get(k, 0) >= v for k, v in need.items()) for node in nodes):
                offered = "; ".join(
                    ", ".join(f"{k}={v:g}" for k, v in sorted(n.items()) if not k.startswith(("node:", "memory", "object_store")))
                    for n in nodes
                ) or "no alive nodes"
                raise ConfigError(
                    f"recipes[{i}].resources",
                    f"recipe {recipe.name!r} needs {need} but no node of the Ray cluster offers it "
                    f"(nodes offer: {offered})",
                    "start a worker that has it, e.g. ray start --address HEAD:6379 --resources "
                    f"'{{\"{next(iter(recipe.resources.custom), 'name')}\": 1}}', or change the recipe's resources",
                )

    # -- running -----------------------------------------------------------------------------

    def run_recipes(self, job: StudyJob, recipes: Sequence[RecipeSpec], run_recipe: RecipeFn) -> list[RecipeOutcome]:
        """Submit every recipe (and one baseline evaluation per machine class), then collect them.

        Recipes without custom resources compare against the baseline the runner evaluated; each
        machine class gets a baseline run ``baseline@<class>`` evaluated by a task holding the same
        custom resources, and its recipes compare against that one.
        """
        from netzip_mlflow.study import ray_tasks

        ray = self._connect()
        remote = ray_tasks.RemoteJob(
            spec=job.spec, tracking_uri=job.tracking_uri, experiment_id=job.experiment_id,
            study_run_id=job.study_run_id, baseline_run_id=job.baseline_run_id,
        )
        base_refs: dict[str, Any] = {"": ray.put(job.base_report)}
        for recipe in recipes:
            hw_class = recipe.resources.hardware_class
            if hw_class and hw_class not in base_refs:
                base_refs[hw_class] = ray_tasks.baseline_task.options(
                    **ray_tasks.task_options(recipe.resources)
                ).remote(remote, hw_class, recipe.resources.model_dump())
        # The task imports netzip_mlflow.study.recipe.run_recipe itself; only another function
        # (a test's stand-in) travels pickled.
        from netzip_mlflow.study.recipe import run_recipe as default_recipe

        shipped = None if run_recipe is default_recipe else run_recipe
        refs = [
            ray_tasks.recipe_task.options(**ray_tasks.task_options(recipe.resources)).remote(
                remote, recipe, base_refs[recipe.resources.hardware_class], shipped
            )
            for recipe in recipes
        ]
        return self._collect(ray, job, recipes, refs)

    def _collect(self, ray: Any, job: StudyJob, recipes: Sequence[RecipeSpec], refs: list[Any]) -> list[RecipeOutcome]:
        from tqdm.auto import tqdm

        from netzip_mlflow.study import ray_tasks

        outcomes: dict[int, RecipeOutcome] = {}
        index = {ref: i for i, ref in enumerate(refs)}
        pending = list(refs)
        with tqdm(total=len(refs), desc="recipes on ray", unit="recipe", disable=not job.progress) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    i = index[ref]
                    try:
                        outcomes[i] = ray.get(ref)
                    except Exception as exc:  # noqa: BLE001 - a lost task must not lose the other recipes
                        outcomes[i] = ray_tasks.record_lost_task(job, recipes[i], exc)
                    bar.update(1)
        return [outcomes[i] for i in range(len(refs))]

    def close(self) -> None:
        """Disconnect from Ray if this executor connected."""
        if self._connected_here:
            import ray

            ray.shutdown()
            self._connected_here = False


def make_executor(spec: ExecutorSpec) -> LocalExecutor | RayExecutor:
    """The executor a study's ``executor:`` section (or ``--executor``/``--address``) asks for."""
    if spec.kind == "ray":
        return RayExecutor(spec.address)
    if spec.address:
        raise ConfigError("executor.address", "an address is only used with the Ray executor", "add --executor ray")
    return LocalExecutor()
