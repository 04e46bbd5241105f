"""Models in the tracking store: logged beside MLflow's pickle as tensors + a rebuild recipe, loaded
back without unpickling unless the user says they trust the store.

Layout of a run that logged a model (``log_model_weights``):

* ``model/``: the MLflow model (``mlflow.pytorch``, a pickle: see
  :mod:`netzip_mlflow.tracking.model_logging`);
* ``weights/state_dict.pt``: the state_dict, tensors only; its SHA-256 in tag ``netzip.weights_sha256``;
* ``weights/rebuild.json``: how to build the module (:mod:`netzip_mlflow.models.rebuild`); its
  SHA-256 in tag ``netzip.rebuild_sha256``.

:func:`load_run_model` reads only the last two, checks both hashes and rebuilds the module; MLflow's
pickle is loaded only with ``trust=True`` (``--trust-model-file`` / ``model.trust_model_file``),
and only when no tensor copy can be used. A hash mismatch is refused, trusted or not.
"""

from __future__ import annotations

import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient
from torch import nn

from netzip_mlflow.errors import ModelError
from netzip_mlflow.models import rebuild
from netzip_mlflow.tracking import keys

WEIGHTS_DIR = keys.MODEL_WEIGHTS_FOLDER
WEIGHTS_FILE = keys.MODEL_WEIGHTS_FILE
MANIFEST_FILE = keys.MODEL_REBUILD_FILE
TRUST_HINT = (
    "pass --trust-model-file (YAML: model.trust_model_file: true) only if you trust everyone who can "
    "write to this tracking store: unpickling runs any code the file names"
)


class NoSafeCopy(ModelError):
    """The run's model can be restored only by unpickling it."""


def log_model_weights(model: nn.Module, manifest: rebuild.Manifest, baseline: nn.Module | None = None) -> rebuild.Manifest:
    """Log ``model``'s state_dict and its rebuild manifest to the active run, with their SHA-256 tags.

    ``manifest`` is checked first (:func:`rebuild.manifest_for`: the model must rebuild from it with
    the same outputs); the manifest actually logged is returned.
    """
    manifest = rebuild.manifest_for(model, manifest, baseline)
    weights = rebuild.weights_bytes(model)
    text = rebuild.manifest_json(manifest)
    with tempfile.TemporaryDirectory(prefix="netzip-weights-") as tmp:
        folder = Path(tmp) / WEIGHTS_DIR
        folder.mkdir()
        (folder / WEIGHTS_FILE).write_bytes(weights)
        (folder / MANIFEST_FILE).write_bytes(text)
        mlflow.log_artifacts(str(folder), WEIGHTS_DIR)
    mlflow.set_tags({keys.TAG_WEIGHTS_SHA256: rebuild.sha256_bytes(weights), keys.TAG_REBUILD_SHA256: rebuild.sha256_bytes(text)})
    return manifest


def run_manifest(run_id: str, client: MlflowClient | None = None) -> rebuild.Manifest | None:
    """The verified rebuild manifest of ``run_id``, or ``None`` if the run has none."""
    client = client or MlflowClient()
    tags = client.get_run(run_id).data.tags
    if keys.TAG_REBUILD_SHA256 not in tags:
        return None
    with tempfile.TemporaryDirectory(prefix="netzip-load-") as tmp:
        data = _download(client, run_id, MANIFEST_FILE, tmp).read_bytes()
    _check_hash(run_id, MANIFEST_FILE, data, tags[keys.TAG_REBUILD_SHA256])
    return rebuild.parse_manifest(data)


def _download(client: MlflowClient, run_id: str, name: str, dst: str) -> Path:
    try:
        return Path(client.download_artifacts(run_id, f"{WEIGHTS_DIR}/{name}", dst))
    except Exception as exc:  # noqa: BLE001 - missing artifact, unreachable artifact store
        raise ModelError(f"run {run_id}: cannot download {WEIGHTS_DIR}/{name} ({str(exc).strip()[:200]})") from exc


def _check_hash(run_id: str, name: str, data: bytes, expected: str) -> None:
    actual = rebuild.sha256_bytes(data)
    if actual != expected:
        raise ModelError(
            f"run {run_id}: {WEIGHTS_DIR}/{name} has SHA-256 {actual[:16]}..., not the {expected[:16]}... "
            "recorded when it was logged (the artifact was replaced); refusing to load it"
        )


def _load_safe(run_id: str, client: MlflowClient, depth: int) -> nn.Module:
    tags = client.get_run(run_id).data.tags
    if keys.TAG_WEIGHTS_SHA256 not in tags or keys.TAG_REBUILD_SHA256 not in tags:
        raise NoSafeCopy(f"run {run_id} holds only a pickled model (no {WEIGHTS_DIR}/ tensors with a recorded SHA-256)")
    with tempfile.TemporaryDirectory(prefix="netzip-load-") as tmp:
        text = _download(client, run_id, MANIFEST_FILE, tmp).read_bytes()
        _check_hash(run_id, MANIFEST_FILE, text, tags[keys.TAG_REBUILD_SHA256])
        manifest = rebuild.parse_manifest(text)
        if manifest["kind"] == rebuild.PICKLE_ONLY:
            raise NoSafeCopy(f"run {run_id}'s model can only be restored from its pickle ({manifest.get('reason')})")
        weights = _download(client, run_id, WEIGHTS_FILE, tmp).read_bytes()
        _check_hash(run_id, WEIGHTS_FILE, weights, tags[keys.TAG_WEIGHTS_SHA256])
        try:
            state = rebuild.read_weights_bytes(weights)  # the very bytes that were checked
        except ModelError as exc:
            raise ModelError(f"run {run_id}: {exc}") from exc
    if depth > 1:
        raise ModelError(f"run {run_id}: its baseline is itself a compressed model; refusing a chain of rebuilds")

    def baseline(base_id: str) -> nn.Module:
        try:
            return _load_safe(base_id, client, depth + 1)
        except NoSafeCopy as exc:
            raise NoSafeCopy(f"run {run_id}'s baseline: {exc}") from exc

    try:
        return rebuild.rebuild(manifest, state, baseline)
    except NoSafeCopy:
        raise
    except ModelError as exc:
        raise ModelError(f"run {run_id}: {exc}") from exc


def load_pickled(run_id: str) -> nn.Module:
    """MLflow's pickled model of ``run_id`` (``runs:/<id>/model``): runs code from the store."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return mlflow.pytorch.load_model(f"runs:/{run_id}/model", map_location="cpu").eval()
    except Exception as exc:  # noqa: BLE001 - missing artifact, unreadable pickle, version mismatch
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load the pickled model logged by run {run_id} ({first})") from exc


def load_run_model(run_id: str, trust: bool = False, client: MlflowClient | None = None) -> nn.Module:
    """The model logged by run ``run_id``, in eval mode on the CPU, loaded without unpickling.

    Reads ``weights/rebuild.json`` and ``weights/state_dict.pt``, checks both against the run's
    SHA-256 tags and rebuilds the module (a compressed model through its baseline run). Only when the
    run has no usable tensor copy, and ``trust`` is set, is MLflow's pickle loaded instead.

    Raises:
        ModelError: one line: a hash mismatch (always refused), a run with only a pickle and no
            ``trust`` (names the flag), weights that do not fit the rebuilt module.
    """
    client = client or MlflowClient()
    try:
        return _load_safe(run_id, client, 0)
    except NoSafeCopy as exc:
        if not trust:
            raise ModelError(f"{exc}; {TRUST_HINT}") from None
    return load_pickled(run_id)


_RUNS_URI = re.compile(r"^runs:/([0-9a-zA-Z_-]+)/model/?$")
_LOGGED_MODEL_URI = re.compile(r"^models:/(m-[0-9a-f]+)$")
_REGISTERED_URI = re.compile(r"^models:/([^/]+)/(\d+)$")


def run_of_model_uri(uri: str, client: MlflowClient | None = None) -> str:
    """The run that logged the model at ``uri`` (``runs:/ID/model``, ``models:/m-...``, ``models:/NAME/V``)."""
    client = client or MlflowClient()
    try:
        if match := _RUNS_URI.match(uri):
            return match.group(1)
        if match := _LOGGED_MODEL_URI.match(uri):
            return str(client.get_logged_model(match.group(1)).source_run_id)
        if match := _REGISTERED_URI.match(uri):
            return str(client.get_model_version(match.group(1), match.group(2)).run_id)
    except Exception as exc:  # noqa: BLE001 - unknown model id, name or version
        raise ModelError(f"cannot find the run of model {uri!r} ({str(exc).strip()[:200]})") from exc
    raise ModelError(
        f"model URI {uri!r}: use runs:/<run id>/model, models:/<model id> or models:/<name>/<version>"
    )


def load_model_uri(uri: str, trust: bool = False) -> nn.Module:
    """:func:`load_run_model` for an MLflow model URI (see :func:`run_of_model_uri`)."""
    return load_run_model(run_of_model_uri(uri), trust=trust)


def load_pyfunc(uri: str, trust: bool = False, device: str = "cpu") -> Any:
    """A ``PyFuncModel`` for ``mlflow.models.evaluate(model=...)`` built from the safe copy of ``uri``.

    ``mlflow.models.evaluate(model="runs:/...")`` loads the URI itself, through whatever loader the
    stored ``MLmodel`` file names (a pickle for ``mlflow.pytorch``), before any evaluator runs; pass
    ``model=load_pyfunc(uri)`` instead to evaluate a model from a store you do not fully trust. The
    model's metadata (and so its model id, to which metrics are linked) is read from ``MLmodel``,
    which is YAML read with a safe loader.
    """
    from mlflow.models import Model
    from mlflow.pyfunc import PyFuncModel
    from mlflow.pytorch import _PyTorchWrapper

    module = load_model_uri(uri, trust=trust)
    try:
        meta = Model.load(uri)
    except Exception:  # noqa: BLE001 - the metadata is optional; the model is what matters
        meta = Model()
    return PyFuncModel(model_meta=meta, model_impl=_PyTorchWrapper(module, device), model_id=getattr(meta, "model_id", None))
