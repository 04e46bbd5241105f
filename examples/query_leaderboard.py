"""Query the OCS leaderboard of a study from MLflow, recomputing OCS with measured latency as speed.

Run after `make demo`:  .venv/bin/python examples/query_leaderboard.py [EXPERIMENT]
"""

import sys

import netzip_mlflow as nz
from netzip_mlflow.analysis.render import render

experiment = sys.argv[1] if len(sys.argv) > 1 else "netzip-quickstart"
logged = nz.leaderboard(experiment)  # ratios and OCS as logged (speedup from CHATS)
by_latency = nz.leaderboard(experiment, ratio_config=nz.RatioConfig(speedup="speed/latency_ms"))
print("OCS as logged (S from CHATS):")
print(render(logged[["recipe", "technique", "ocs"]], "markdown"))
print("OCS recomputed with S from measured latency:")
print(render(by_latency[["recipe", "technique", "ocs"]], "markdown"))
