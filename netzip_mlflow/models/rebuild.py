"""Rebuilding a logged model without unpickling it: a weights file plus a JSON recipe for the module.

A model logged by a study is stored twice (see :mod:`netzip_mlflow.tracking.stored_model`): as
MLflow's pickled model (loaded only by users who trust the store) and as

* ``state_dict.pt``: ``torch.save(model.state_dict())``, read back with ``torch.load(weights_only=True)``,
  which rebuilds tensors (quantized ones included) and plain containers and cannot run code;
* ``rebuild.json``: a :data:`Manifest` saying how to build a module the state_dict fits:

  - ``kind: "architecture"``: a built-in architecture (``arch``, ``task``, ``num_classes``,
    ``input_shape``), as the study's ``model`` section builds it;
  - ``kind: "recipe"``: the baseline of run ``baseline_run_id`` (rebuilt the same way), to which the
    recipe (``technique``, ``params``) is re-applied *for its structure only*: every training epoch
    parameter is set to 0 and calibration runs on a few random batches; quantized models come out
    of the same prepare/convert steps, so their converted structure (fused, packed, quantized
    modules) is the one the weights were saved from. The weights then overwrite everything learned
    or calibrated;
  - ``kind: "pickle_only"``: no rebuild is possible (a whole pickled module from ``model.path``, a
    technique whose structure depends on training); ``reason`` says why.

Loading is strict (every key, every shape), and :func:`manifest_for` proves at logging time that a
``recipe`` manifest rebuilds the same outputs, falling back to ``pickle_only`` if not.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from netzip_mlflow.errors import ModelError

FORMAT = 1
Manifest = dict[str, Any]
ARCHITECTURE, RECIPE, PICKLE_ONLY = "architecture", "recipe", "pickle_only"
_CALIBRATION_BATCHES = 2


def sha256_bytes(data: bytes) -> str:
    """Hex SHA-256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def weights_bytes(model: nn.Module) -> bytes:
    """``torch.save(model.cpu().state_dict())`` as bytes.

    The state_dict itself is saved (not a copy of its items): its ``_metadata`` holds each module's
    state version, without which quantized modules read their state the legacy way and fail.
    """
    buffer = io.BytesIO()
    torch.save(model.cpu().state_dict(), buffer)
    return buffer.getvalue()


def read_weights(path: str | Path) -> dict[str, Any]:
    """A state_dict file read with ``weights_only=True`` (never runs code from the file)."""
    return read_weights_bytes(Path(path).read_bytes(), Path(path).name)


def read_weights_bytes(data: bytes, name: str = "state_dict.pt") -> dict[str, Any]:
    """:func:`read_weights` for bytes already in memory (e.g. just hash-checked)."""
    try:
        with warnings.catch_warnings():  # torch's own quantized-tensor unpickling uses TypedStorage
            warnings.filterwarnings("ignore", message="TypedStorage is deprecated", category=UserWarning)
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt zip, foreign objects, truncated file...
        if "weights_only" in str(exc) or "Weights only" in str(exc):
            why = "it holds objects other than tensors, which could run code when loaded; refused"
        else:
            why = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"the weights file {name} cannot be read as tensors only ({why})") from exc
    if not isinstance(state, dict):
        raise ModelError(f"the weights file {name} holds a {type(state).__name__}, not a state_dict")
    return state


def manifest_json(manifest: Manifest) -> bytes:
    """The manifest as canonical JSON bytes (sorted keys)."""
    return json.dumps(manifest, sort_keys=True, indent=1).encode()


def parse_manifest(data: bytes) -> Manifest:
    """A manifest from JSON bytes; :class:`ModelError` if it is not one this version reads."""
    try:
        manifest = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise ModelError(f"rebuild.json is not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ModelError(f"rebuild.json has an unknown format (expected format {FORMAT})")
    if manifest.get("kind") not in (ARCHITECTURE, RECIPE, PICKLE_ONLY):
        raise ModelError(f"rebuild.json has an unknown kind {manifest.get('kind')!r}")
    if manifest["kind"] != PICKLE_ONLY:
        _check_sizes(manifest)
    return manifest


MAX_CLASSES, MAX_SIDE = 100_000, 4096


def _check_sizes(manifest: Manifest) -> None:
    """Bounds on what a manifest may make a reader allocate (a forged one could ask for terabytes)."""
    shape, classes = manifest.get("input_shape"), manifest.get("num_classes")
    ok_shape = (
        isinstance(shape, list) and len(shape) == 3
        and all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= MAX_SIDE for d in shape)
    )
    ok_classes = isinstance(classes, int) and not isinstance(classes, bool) and 0 < classes <= MAX_CLASSES
    if not (ok_shape and ok_classes and isinstance(manifest.get("arch"), str)):
        raise ModelError(
            f"rebuild.json: arch, num_classes (1-{MAX_CLASSES}) and input_shape (3 sides of 1-{MAX_SIDE}) "
            f"are out of bounds: {manifest.get('arch')!r}, {classes!r}, {shape!r}"
        )


def architecture_manifest(task: str, arch: str, num_classes: int, input_shape: tuple[int, ...], seed: int) -> Manifest:
    """The manifest of a built-in architecture (classification: ``input_shape`` is (C, H, W))."""
    return {
        "format": FORMAT, "kind": ARCHITECTURE, "task": task, "arch": arch,
        "num_classes": int(num_classes), "input_shape": [int(d) for d in input_shape], "seed": int(seed),
    }


def recipe_manifest(base: Manifest, technique: str, params: Mapping[str, Any], seed: int, baseline_run_id: str) -> Manifest:
    """The manifest of ``technique`` (resolved ``params``) applied to the baseline of ``baseline_run_id``."""
    if base.get("kind") != ARCHITECTURE:
        return pickle_only(f"its baseline cannot be rebuilt ({base.get('reason', base.get('kind'))})")
    return {
        **{k: base[k] for k in ("task", "arch", "num_classes", "input_shape")},
        "format": FORMAT, "kind": RECIPE, "technique": technique,
        "params": json.loads(json.dumps(dict(params), default=str)), "seed": int(seed),
        "baseline_run_id": baseline_run_id,
    }


def pickle_only(reason: str) -> Manifest:
    """The manifest of a model that only its pickle can restore."""
    return {"format": FORMAT, "kind": PICKLE_ONLY, "reason": reason}


def build_architecture(manifest: Manifest) -> nn.Module:
    """The module of an ``architecture`` manifest, with seeded random weights (the caller's random
    stream is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        return _build_architecture(manifest)


def _build_architecture(manifest: Manifest) -> nn.Module:
    shape = tuple(int(d) for d in manifest["input_shape"])
    if manifest.get("task") == "detection":
        from netzip_mlflow.models.detection_zoo import build_detector

        return build_detector(manifest["arch"], int(manifest["num_classes"]), shape[1], seed=int(manifest["seed"]))
    from netzip_mlflow.models.zoo import build_model

    return build_model(manifest["arch"], int(manifest["num_classes"]), shape, seed=int(manifest["seed"]))


def structure_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with every training-epoch parameter (``*epochs``) set to 0, pipeline steps included."""
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key == "steps" and isinstance(value, list):
            out[key] = [{**step, "params": structure_params(step.get("params") or {})} for step in value]
        elif key.endswith("epochs") and isinstance(value, int) and not isinstance(value, bool):
            out[key] = 0
        else:
            out[key] = value
    return out


def _calibration(manifest: Manifest) -> tuple[list[tuple[torch.Tensor, torch.Tensor]] | None, torch.Tensor]:
    shape = tuple(int(d) for d in manifest["input_shape"])
    generator = torch.Generator().manual_seed(0)
    if manifest.get("task") == "detection":
        return None, torch.rand(1, *shape, generator=generator)
    batches = [
        (torch.randn(4, *shape, generator=generator), torch.randint(0, int(manifest["num_classes"]), (4,), generator=generator))
        for _ in range(_CALIBRATION_BATCHES)
    ]
    return batches, batches[0][0][:1]


def apply_structure(manifest: Manifest, baseline: nn.Module) -> nn.Module:
    """The recipe of a ``recipe`` manifest re-applied, without training, to a copy of ``baseline``."""
    from netzip_mlflow.compression.registry import apply_technique, get_technique
    from netzip_mlflow.compression.spec import TrainingHooks

    data, example = _calibration(manifest)
    spec = get_technique(manifest["technique"])
    params = structure_params(spec.validate(manifest["params"]))
    with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
        torch.manual_seed(int(manifest["seed"]))
        work = copy.deepcopy(baseline).eval()
        return apply_technique(spec, work, params, data, example, TrainingHooks(progress=False)).model.eval()


def load_strict(module: nn.Module, state: Mapping[str, Any], what: str) -> nn.Module:
    """``module`` with ``state`` loaded (every key and shape must match); :class:`ModelError` otherwise."""
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        details = [line.strip() for line in str(exc).splitlines() if line.strip()]
        raise ModelError(f"the weights do not fit the module rebuilt from {what} ({' '.join(details)[:300]})") from exc
    return module.eval()


def rebuild(manifest: Manifest, state: Mapping[str, Any], load_baseline: Callable[[str], nn.Module]) -> nn.Module:
    """The module ``manifest`` describes with ``state`` loaded into it.

    Args:
        manifest: a parsed ``rebuild.json``.
        state: the state_dict read by :func:`read_weights`.
        load_baseline: loads the (verified, rebuilt) baseline of a run id, for ``recipe`` manifests.

    Raises:
        ModelError: ``pickle_only`` manifests, unknown architectures or techniques, weights that do
            not fit.
    """
    kind = manifest["kind"]
    if kind == PICKLE_ONLY:
        raise ModelError(f"it can only be restored from its pickle: {manifest.get('reason', 'no reason given')}")
    try:
        if kind == ARCHITECTURE:
            return load_strict(build_architecture(manifest), state, f"architecture {manifest['arch']!r}")
        module = apply_structure(manifest, load_baseline(str(manifest["baseline_run_id"])))
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - a manifest naming an unknown arch, bad params, ...
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"the module cannot be rebuilt from rebuild.json ({type(exc).__name__}: {first})") from exc
    return load_strict(module, state, f"recipe {manifest['technique']!r}")


def _same_outputs(a: nn.Module, b: nn.Module, example: torch.Tensor) -> bool:
    with torch.inference_mode():
        out_a, out_b = a(example), b(example)
    if not (isinstance(out_a, torch.Tensor) and isinstance(out_b, torch.Tensor)):
        return True  # detectors return box lists; their structure was checked key by key
    return out_a.shape == out_b.shape and torch.allclose(out_a.float(), out_b.float(), rtol=1e-4, atol=1e-5)


def manifest_for(model: nn.Module, manifest: Manifest, baseline: nn.Module | None) -> Manifest:
    """``manifest`` if the model really rebuilds from it, else a ``pickle_only`` one saying why.

    Checks at logging time what a reader will do: build the module (re-applying the recipe to
    ``baseline`` for ``recipe`` manifests), load ``model``'s state_dict strictly and compare the
    outputs on a random input of the manifest's shape.
    """
    if manifest["kind"] == PICKLE_ONLY:
        return manifest
    state = read_weights_bytes(weights_bytes(model))  # exactly what a reader gets
    try:
        if manifest["kind"] == ARCHITECTURE:
            rebuilt = load_strict(build_architecture(manifest), state, "its architecture")
        else:
            if baseline is None:
                return pickle_only("the baseline model was not available when it was logged")
            rebuilt = load_strict(apply_structure(manifest, baseline), state, "its recipe")
        if manifest.get("task") != "detection":
            _, example = _calibration(manifest)
            dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
            example = example.to(dtype)
            if not _same_outputs(model.cpu().eval(), rebuilt, example):
                return pickle_only("the module rebuilt from its recipe does not compute the same outputs")
    except Exception as exc:  # noqa: BLE001 - any failure means: not rebuildable
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return pickle_only(f"rebuilding it failed at logging time ({type(exc).__name__}: {first[:120]})")
    return manifest
