"""Screenshots of the MLflow UI where users compare rounds (headless Chromium), for the README.

Starts `mlflow server` on the repository's mlflow.db; for the latest pipeline run with an evaluation it saves:

- `mlflow_runs.png`: the experiment's runs table, the round models' runs (r0/teacher, rK/student) with their
  test and validation accuracy, the precision and count of the pseudo-labels each trained on, and `promoted`;
- `mlflow_compare.png`: the top of the *Compare* view of those runs (its parallel-coordinates plot of
  parameters against test accuracy, then every parameter and metric side by side, further down);
- `mlflow_changes.png`: the last round's `changes.png` in the evaluate run's artifact browser.

The runs table's columns and grouping come from a shared view (an experiment tag
`mlflow.sharedViewState.<key>` holding the UI state, what the UI's *Share* button writes), opened by its URL.
The server listens on 127.0.0.2, not 127.0.0.1: the UI opens its assistant panel over the page on `localhost`
addresses only. Needs Debian's chromium (`apt-get install chromium`). Usage:

    python bench/ui_screenshot.py --out docs/img
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.compare import find_pipelines  # noqa: E402
from pipeline.config.full import load_params  # noqa: E402

HOST = "127.0.0.2"
VIEW_KEY = "rounds"
COLUMNS = ["test/accuracy", "val/accuracy", "pl/precision", "pl/accepted", "promoted"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start_server(db: Path) -> tuple[subprocess.Popen, str]:
    """`mlflow server` on `db`, answering requests addressed to HOST; returns the process and its URI."""
    port = free_port()
    uri = f"http://{HOST}:{port}"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{db}",
           "--host", HOST, "--port", str(port), "--workers", "1",
           "--allowed-hosts", f"{HOST}:{port}", "--cors-allowed-origins", uri]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{uri}/health", timeout=2):
                return server, uri
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError(f"mlflow server on {uri} did not start") from None
            time.sleep(0.5)


def share_runs_view(client, experiment_id: str, run_ids: list[str]) -> None:
    """The runs table's state as a shared view: the given runs, oldest first, COLUMNS and the `round` tag,
    grouped by the `kind` tag (one expanded group of stage runs: not folded under their parent run)."""
    ids = ", ".join(f"'{run_id}'" for run_id in run_ids)
    state = {
        "searchFilter": f"attributes.run_id IN ({ids})",
        "orderByKey": "attributes.start_time",
        "orderByAsc": True,
        "selectedColumns": [f"metrics.`{key}`" for key in COLUMNS] + ["tags.`round`"],
        "groupBy": {"aggregateFunction": "max", "groupByKeys": [{"mode": "tag", "groupByData": "kind"}]},
        "groupsExpanded": {"tag.kind.stage": True},
    }
    now = int(time.time() * 1000)
    envelope = {"name": "rounds", "createdAt": now, "updatedAt": now, "state": json.dumps(state)}
    client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{VIEW_KEY}", json.dumps(envelope))


def screenshot(url: str, out: Path, size: str, wait_ms: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [shutil.which("chromium") or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
             f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={size}",
             f"--virtual-time-budget={wait_ms}", f"--screenshot={out.resolve()}", url],
            check=True, capture_output=True, timeout=180,
        )  # fmt: skip
    print(f"{url}\n-> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img", help="folder of the PNGs")
    parser.add_argument("--wait-ms", type=int, default=15000, help="virtual time for each page to render")
    args = parser.parse_args()

    from mlflow import MlflowClient

    params = load_params(ROOT / "params.yaml")
    server, uri = start_server(ROOT / "mlflow.db")
    try:
        client = MlflowClient(uri)
        pipelines = find_pipelines(client, params.mlflow.experiment, [])
        if not pipelines:
            sys.exit("error: no pipeline run with an evaluation in mlflow.db; run `dvc repro` first")
        latest = pipelines[0]
        exp = client.get_experiment_by_name(params.mlflow.experiment).experiment_id
        model_runs = [r for r in latest.rounds["model run"] if r != "(cached)"]
        args.out.mkdir(parents=True, exist_ok=True)

        share_runs_view(client, exp, model_runs)
        size = f"1500,{420 + 34 * len(model_runs)}"
        url = f"{uri}/#/experiments/{exp}/runs?viewStateShareKey={VIEW_KEY}"
        screenshot(url, args.out / "mlflow_runs.png", size, args.wait_ms)

        query = urllib.parse.urlencode(
            {"runs": json.dumps(model_runs), "experiments": json.dumps([exp])}, quote_via=urllib.parse.quote
        )
        url = f"{uri}/#/compare-runs?{query}"
        screenshot(url, args.out / "mlflow_compare.png", "1500,1100", args.wait_ms)

        (evaluate,) = client.search_runs(
            [exp], f"tags.mlflow.parentRunId = '{latest.run_id}' and tags.stage = 'evaluate'"
        )
        last = latest.rounds.index[-1]
        url = f"{uri}/#/experiments/{exp}/runs/{evaluate.info.run_id}/artifacts/{last}/changes.png"
        screenshot(url, args.out / "mlflow_changes.png", "1500,900", args.wait_ms)
    finally:
        server.terminate()
        server.wait(timeout=20)


if __name__ == "__main__":
    main()
