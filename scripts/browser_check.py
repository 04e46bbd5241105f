"""Open the MLflow UI on a demo store in headless Chromium and check where a netzip experiment lands.

Usage (Debian: ``apt-get install chromium``; nothing is downloaded)::

    .venv/bin/python scripts/browser_check.py [--out DIR] [--chromium PATH] [--keep]

It runs a tiny study (8x8 digits, a tiny CNN, seconds) into a fresh ``sqlite:///`` store, creates a
second, plain experiment with ``mlflow.create_experiment`` as a control, starts ``mlflow server`` on a
free local port, and loads each experiment's page (``#/experiments/<id>``) in headless Chromium,
saving a screenshot and the page text (with the URL it landed on) of each, and of the study run's
artifact page (``leaderboard.html``). It asserts that:

* the link ``netzip run`` prints (:func:`netzip_mlflow.tracking.experiments.experiment_link`) lands
  on the runs view (``…/runs``; the study's run names are on the page), not on the GenAI overview
  ("Traces" / "No data available"); where a bare ``#/experiments/<id>`` lands, for the netzip
  experiment (tagged ``mlflow.experimentKind``) and the plain one, is printed;
* ``leaderboard.html`` shows its Pareto symbols, not mojibake such as "â—†".

Exit 0 when every check holds, 1 otherwise (each failed check printed). Screenshots are in ``--out``
(default ``browser-check/``) for a person to look at.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from netzip_mlflow.tracking.experiments import experiment_link

STUDY = {
    "study": "browser_check",
    "experiment": "netzip-browser-check",
    "data": {"builtin": "digits", "limit": 200, "batch_size": 32},
    "model": {"arch": "tiny_cnn", "train": {"epochs": 2, "lr": 0.1}},
    "evaluation": {
        "isolate": False, "idle_s": 0.0, "system_metrics": False,
        "latency": {"warmup_s": 0.02, "budget_s": 0.3, "min_samples": 5},
        "ratios": {"score_at_chance": True},
    },
    "recipes": [
        {"name": "ptq_int8", "technique": "ptq", "params": {"calibration_batches": 1}},
        {"name": "gup_l1_50", "technique": "prune_unstructured", "params": {"amount": 0.5}},
    ],
}
GENAI_MARKERS = ("No data available", "Traces 0")
MOJIBAKE = ("â—", "Ã")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout_s:.0f} s")


class Browser:
    """Headless Chromium driven over the DevTools protocol (a websocket; ``websockets`` ships with MLflow)."""

    def __init__(self, binary: str) -> None:
        from websockets.sync.client import connect

        self.port = _free_port()
        self.profile = tempfile.mkdtemp(prefix="chromium-")
        self.process = subprocess.Popen(
            [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--window-size=1500,950", f"--remote-debugging-port={self.port}",
             f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        _wait_for(f"http://127.0.0.1:{self.port}/json/version", 60)
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/list", timeout=5) as response:
            import json

            page = next(t for t in json.load(response) if t["type"] == "page")
        self.socket = connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=30).__enter__()
        self.next_id = 0

    def call(self, method: str, **params: object) -> dict:
        """Send one DevTools command and return its result (events in between are skipped)."""
        import json

        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=120))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> object:
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def open(self, url: str, ready: str, timeout_s: float = 90.0) -> tuple[str, str]:
        """Navigate, wait until the JS expression ``ready`` is true (or the timeout), settle 2 s;
        returns (final URL, page text)."""
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self.evaluate(ready):
            time.sleep(1.0)
        time.sleep(2.0)
        return str(self.evaluate("location.href")), str(self.evaluate("document.body ? document.body.innerText : ''"))

    def frame_evaluate(self, expression: str) -> list[object]:
        """``expression`` evaluated in every child frame (an isolated world, so sandboxed iframes too)."""
        tree = self.call("Page.getFrameTree")["frameTree"]
        values = []
        for child in tree.get("childFrames", []):
            try:
                world = self.call("Page.createIsolatedWorld", frameId=child["frame"]["id"], worldName="check")
                result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                                   contextId=world["executionContextId"])
            except RuntimeError:  # a frame that cannot be entered
                continue
            values.append(result["result"].get("value"))
        return values

    def screenshot(self, path: Path) -> None:
        import base64

        path.write_bytes(base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"]))

    def close(self) -> None:
        try:
            self.socket.__exit__(None, None, None)
        finally:  # Chromium and its helper processes: their own process group
            import signal

            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
            shutil.rmtree(self.profile, ignore_errors=True)


def _make_store(folder: Path) -> tuple[str, str, str, str]:
    """A study into a fresh store; returns (uri, netzip experiment id, plain experiment id, study run id)."""
    import mlflow
    import yaml

    from netzip_mlflow.study.runner import run_study

    uri = f"sqlite:///{folder}/mlflow.db"
    os.chdir(folder)  # MLflow puts a sqlite store's artifacts under ./mlruns: keep them in the folder
    mlflow.set_tracking_uri(uri)
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(STUDY))
    result = run_study(path, progress=False)
    plain = mlflow.create_experiment("plain-mlflow-experiment")
    experiment = mlflow.get_experiment_by_name(STUDY["experiment"]).experiment_id
    return uri, experiment, plain, result.study_run_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("browser-check"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    parser.add_argument("--keep", action="store_true", help="keep the temporary store")
    args = parser.parse_args(argv)
    if not args.chromium:
        print("error: no chromium found (Debian: apt-get install chromium; or pass --chromium PATH)")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="netzip-browser-"))
    server = None
    failures: list[str] = []
    try:
        print("running a tiny study into", folder)
        uri, experiment, plain, study_run = _make_store(folder)
        port = _free_port()
        env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", "127.0.0.1",
             "--port", str(port), "--workers", "1", "--default-artifact-root", str(folder / "artifacts")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        _wait_for(f"{base}/health", 120)
        pages = {
            "plain_experiment": f"{base}/#/experiments/{plain}",
            "netzip_experiment": f"{base}/#/experiments/{experiment}",
            "netzip_experiment_link": f"{base}/{experiment_link(experiment)}",
            "study_run_artifacts": f"{base}/#/experiments/{experiment}/runs/{study_run}/artifacts/leaderboard/leaderboard.html",
        }
        loaded = "document.body && !/Loading\\.\\.\\./.test(document.body.innerText) && document.body.innerText.length > 300"
        ready = {  # what each page shows once its data is in (the runs table lists the study run)
            "netzip_experiment_link": "document.body && /browser_check/.test(document.body.innerText)",
            "study_run_artifacts": "document.body && document.querySelector('iframe') !== null",
        }
        browser = Browser(args.chromium)
        landed = {}
        try:
            for name, url in pages.items():
                final, text = browser.open(url, ready.get(name, loaded), timeout_s=150)
                if name == "study_run_artifacts":  # the viewer's iframe: its own text and charset
                    frames = browser.frame_evaluate("[document.characterSet, document.body ? document.body.innerText : '']")
                    charset = frames[0][0] if frames and isinstance(frames[0], list) else None
                    text += "\n" + "\n".join(str(f[1]) for f in frames if f)
                shot = args.out / f"{name}.png"
                browser.screenshot(shot)
                (args.out / f"{name}.txt").write_text(f"{final}\n\n{text}")
                landed[name] = (final, text)
                print(f"{name}: {url}\n  landed on {final}\n  screenshot {shot}")
        finally:
            browser.close()
        for name in ("plain_experiment", "netzip_experiment"):
            print(f"without the link's workflowType: {name} lands on {landed[name][0]}")
        final, text = landed["netzip_experiment_link"]
        if "/runs" not in final:
            failures.append(f"the printed experiment link landed on {final}, not on the runs view")
        if "browser_check" not in text:  # the study run; its baseline and recipes are nested under it
            failures.append("the printed experiment link: the study run is not in the runs table")
        if any(marker in text for marker in GENAI_MARKERS):
            failures.append("the printed experiment link: the GenAI overview is shown")
        _, page = landed["study_run_artifacts"]
        if charset is None:  # the viewer's frame could not be read: check what the server sends it
            with urllib.request.urlopen(f"{base}/get-artifact?path=leaderboard/leaderboard.html&run_uuid={study_run}") as r:
                raw = r.read()
            page = raw.decode("utf-8")
            charset = "UTF-8" if b'<meta charset="utf-8">' in raw else "undeclared"
            print("note: leaderboard.html checked as served (the viewer's frame was not readable); see the screenshot")
        if charset.upper() != "UTF-8":
            failures.append(f"leaderboard.html: read as {charset}, not UTF-8")
        if "◆" not in page and "●" not in page:
            failures.append("leaderboard.html: no Pareto symbol")
        if any(bad in page for bad in MOJIBAKE):
            failures.append("leaderboard.html: mojibake (UTF-8 read as Latin-1)")
    finally:
        if server is not None:  # the server, its workers and its job consumers (own sessions)
            import signal

            import psutil

            helpers = psutil.Process(server.pid).children(recursive=True)
            os.killpg(server.pid, signal.SIGTERM)
            for helper in helpers:
                try:
                    helper.terminate()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(helpers, timeout=20)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    for failure in failures:
        print("FAILED:", failure)
    print("all browser checks hold" if not failures else f"{len(failures)} browser checks failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
