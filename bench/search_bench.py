"""Compression search against the hand-written quickstart recipes, and the policy at equal MACs.

Steps, all on one baseline (the search and the extra recipes resume the same study run):

1. ``run_study(recipes/search_quickstart.yaml)``: baseline + the quickstart's three recipes;
2. ``search(...)``: the Optuna search (``--n-trials``, ``--timeout``);
3. the best trial's recipe again with its per-layer policy replaced by a uniform one (every group
   weight 1.0) and by the global ranking (no policy), at the same ``amount`` of MACs: accuracy at
   equal MACs.

Writes ``bench/search_bench.json`` (OCS, top-1, CHATS, MACs, latency, wall times). Usage::

    python bench/search_bench.py --store /tmp/search-bench [--n-trials 12] [--timeout 600]
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from netzip_mlflow.config.loader import load_study
from netzip_mlflow.config.schema import RecipeSpec
from netzip_mlflow.search.runner import search
from netzip_mlflow.study.runner import run_study
from netzip_mlflow.tracking import keys

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "recipes" / "search_quickstart.yaml"
COLUMNS = (keys.OCS, keys.TOP1, keys.CHATS, keys.MACS, keys.LATENCY_MS, keys.DISK_MB)


def _row(client: MlflowClient, run_id: str) -> dict[str, float]:
    metrics = client.get_run(run_id).data.metrics
    return {k: metrics.get(k) for k in COLUMNS}


def _variant(best: RecipeSpec, name: str, policy: str | None) -> RecipeSpec:
    steps = [dict(s, params=dict(s["params"])) for s in best.params["steps"]]
    prune = steps[0]["params"]
    if policy is None:
        prune["layer_policy"] = ""
    else:
        groups = [entry.split("=")[0] for entry in prune["layer_policy"].split(",")]
        prune["layer_policy"] = ",".join(f"{g}={policy}" for g in groups)
    return RecipeSpec(name=name, technique="pipeline", params={"steps": steps})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="folder for mlflow.db and optuna.db")
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "search_bench.json")
    parser.add_argument("--hand-written", nargs="*", help="run only these hand-written recipes (default: all)")
    parser.add_argument("--variants", nargs="*", default=["uniform", "global"], choices=["uniform", "global"],
                        help="equal-MACs comparisons of the best trial's policy")
    args = parser.parse_args()
    args.store.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{args.store.resolve()}/mlflow.db")
    client = MlflowClient()
    out: dict[str, object] = {"n_trials": args.n_trials, "timeout_s": args.timeout}

    spec = load_study(STUDY)
    if args.hand_written is not None:
        spec = spec.model_copy(update={"recipes": [r for r in spec.recipes if r.name in args.hand_written]})

    def save() -> None:  # after every stage, so a cut-short run keeps what it measured
        args.out.write_text(json.dumps(out, indent=2, default=str))

    t0 = time.perf_counter()
    study = run_study(spec, progress=False)
    out["hand_written_wall_s"] = time.perf_counter() - t0
    out["baseline"] = _row(client, study.baseline_run_id)
    out["hand_written"] = {o.recipe: _row(client, o.run_id) for o in study.outcomes}
    save()

    t0 = time.perf_counter()
    found = search(spec.model_copy(update={"search": spec.search.model_copy(
        update={"n_trials": args.n_trials, "timeout_s": args.timeout})}), progress=False)
    out["search_wall_s"] = time.perf_counter() - t0
    out["trials"] = [
        {"number": t.number, "state": t.state, "feasible": t.feasible, "note": t.note, "params": t.params,
         **(_row(client, t.run_id) if t.run_id and t.state == "COMPLETE" else {})}
        for t in found.trials
    ]
    save()
    if not found.best:
        out["best"] = None
    else:
        best = found.best[0]
        out["best"] = {"number": best.number, "params": best.params, **_row(client, best.run_id)}
        params = client.get_run(best.run_id).data.params
        steps = ast.literal_eval(params["recipe.steps"])  # the logged repr of a list of dicts (no eval)
        best_recipe = RecipeSpec(name="best", technique="pipeline", params={"steps": steps})
        made = {"uniform": lambda: _variant(best_recipe, "best_as_uniform", "1.0"),
                "global": lambda: _variant(best_recipe, "best_as_global", None)}
        variants = [made[v]() for v in args.variants]
        t0 = time.perf_counter()
        equal = run_study(spec.model_copy(update={"recipes": [*spec.recipes, *variants]}), progress=False)
        out["equal_macs_wall_s"] = time.perf_counter() - t0
        out["equal_macs"] = {o.recipe: _row(client, o.run_id) for o in equal.outcomes if o.recipe.startswith("best_as")}
    save()
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
