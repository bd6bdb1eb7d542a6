"""Screenshot of the MLflow UI compare view of the latest pipeline run's pseudolabel runs (headless Chromium).

Starts `mlflow ui` on the repository's mlflow.db (or $MLFLOW_TRACKING_URI's server is used as it is), opens
the compare view of the pseudolabel runs of the latest pipeline run with an evaluation (their metrics have the
same names every round), and saves a PNG. Needs Debian's chromium (`apt-get install chromium`). Usage:

    python bench/ui_screenshot.py --out docs/img/mlflow_compare.png --size 1400,3400

docs/img/mlflow_compare.png is that screenshot cropped to its top 2050 pixels.
"""

from __future__ import annotations

import argparse
import json
import os
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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer in {seconds:.0f} s") from None
            time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "mlflow_compare.png")
    parser.add_argument("--size", default="1600,1000", help="window width,height in pixels")
    parser.add_argument("--wait-ms", type=int, default=15000, help="virtual time for the page to render")
    args = parser.parse_args()

    from mlflow import MlflowClient

    params = load_params(ROOT / "params.yaml")
    server = None
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        port = free_port()
        cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", f"sqlite:///{ROOT / 'mlflow.db'}",
               "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        uri = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{uri}/health")
        client = MlflowClient(uri)
        (latest,) = find_pipelines(client, params.mlflow.experiment, [])
        exp = client.get_experiment_by_name(params.mlflow.experiment)
        children = client.search_runs(
            [exp.experiment_id],
            f"tags.mlflow.parentRunId = '{latest.run_id}' and tags.stage = 'pseudolabel'",
            order_by=["attributes.start_time ASC"],
        )
        runs = [r.info.run_id for r in children]
        query = urllib.parse.urlencode(
            {"runs": json.dumps(runs), "experiments": json.dumps([exp.experiment_id])},
            quote_via=urllib.parse.quote,
        )
        url = f"{uri}/#/compare-runs?{query}"
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as profile:
            subprocess.run(
                [shutil.which("chromium") or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
                 f"--user-data-dir={profile}", "--hide-scrollbars", f"--window-size={args.size}",
                 f"--virtual-time-budget={args.wait_ms}", f"--screenshot={args.out.resolve()}", url],
                check=True, capture_output=True, timeout=180,
            )  # fmt: skip
        print(f"{url}\n-> {args.out}")
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=20)


if __name__ == "__main__":
    main()
