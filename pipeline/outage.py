"""A tracking server that stops answering mid-stage: training goes on, and no run stays RUNNING forever.

A stage's metrics go through a `MetricBuffer`: they are sent in batches, and while an http(s) server does not
answer they wait in memory and training goes on. Before a training stage saves its outputs it waits up to
`mlflow.server_wait_s` for the server to answer again, sends what waited, and carries on; a server still down
then stops the stage with a message naming the URI, its resume point kept (pipeline.resume). A run whose
process died that way (or was killed) stays RUNNING on the server; the next stage started on the same machine
ends it FAILED (`end_orphaned_runs`).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from contextlib import contextmanager

HEALTH_TIMEOUT_S = 2.0  # a server slower than this to say it is healthy counts as down, for the metrics' sake
SEND_EVERY_S = 5.0  # metrics are sent in batches at most this often (and when the stage ends)
BATCH = 1000  # MLflow's limit of metrics per log_batch call


class TrackingUnreachable(RuntimeError):
    """The tracking server named by the URI does not answer."""


def server_down(uri: str, timeout: float) -> str | None:
    """Why the http(s) tracking server at `uri` does not answer its /health within `timeout` seconds, or None
    when it does (and for a local store, which has no server)."""
    if not uri.startswith(("http://", "https://")):
        return None
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as response:
            response.read()
    except (urllib.error.URLError, OSError) as err:
        return str(getattr(err, "reason", err))
    return None


@contextmanager
def no_retries(timeout_s: int = 10):
    """MLflow's REST calls without their retries (minutes of back-off by default) while inside."""
    names = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout_s)}
    before = {name: os.environ.get(name) for name in names}
    os.environ.update(names)
    try:
        yield
    finally:
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class MetricBuffer:
    """The metrics of one run on their way to the tracking store, sent every SEND_EVERY_S seconds. An http(s)
    server that does not answer holds nothing up: the metrics wait here, with the time they were logged,
    and go when it answers again. A local store (SQLite) gets them the same way, in fewer writes."""

    def __init__(self, client, run_id: str, uri: str):
        self.client, self.run_id, self.uri = client, run_id, uri
        self.pending: list = []
        self.last_try = 0.0
        self.down_since: float | None = None

    def add(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.pending += [Metric(key, float(value), now, step) for key, value in metrics.items()]
        if time.monotonic() - self.last_try >= SEND_EVERY_S:
            self.send()

    def send(self) -> bool:
        """Send what waits; False (and a warning, once per outage) when the server does not answer."""
        self.last_try = time.monotonic()
        reason = server_down(self.uri, HEALTH_TIMEOUT_S)
        if reason is None:
            try:
                with no_retries():
                    while self.pending:
                        self.client.log_batch(self.run_id, metrics=self.pending[:BATCH])
                        del self.pending[:BATCH]
            except Exception as err:  # noqa: BLE001 - any failure to send: keep the metrics, keep training
                if not self.uri.startswith(("http://", "https://")):
                    raise  # a local store that fails is not an outage
                reason = str(err).splitlines()[0]
        if reason is not None:
            if self.down_since is None:
                self.down_since = time.monotonic()
                print(
                    f"warning: MLflow tracking server {self.uri} does not answer ({reason}); training goes "
                    "on and its metrics wait to be sent",
                    file=sys.stderr,
                )
            return False
        if self.down_since is not None:
            print(f"MLflow tracking server {self.uri} answers again; the metrics that waited are sent",
                  file=sys.stderr)  # fmt: skip
            self.down_since = None
        return True

    def drain(self, wait_s: float) -> None:
        """Send everything, waiting up to `wait_s` seconds for the server to answer; TrackingUnreachable
        naming the URI if it does not."""
        deadline = time.monotonic() + wait_s
        if self.send() and not self.pending:
            return
        print(f"waiting up to {wait_s:g} s for MLflow tracking server {self.uri}", file=sys.stderr)
        while time.monotonic() < deadline:
            time.sleep(min(SEND_EVERY_S, max(deadline - time.monotonic(), 0.1)))
            if self.send():
                return
        raise TrackingUnreachable(
            f"MLflow tracking server {self.uri} did not answer for {wait_s:g} s (mlflow.server_wait_s); the "
            "stage stopped before saving its outputs. Its resume point is kept: start the server and run "
            "`dvc repro` again to go on from there"
        )


def process_tag() -> str:
    """This process as `host:pid:start time`, to tell later whether it is still alive."""
    import psutil

    me = psutil.Process()
    return f"{socket.gethostname()}:{me.pid}:{int(me.create_time() * 1000)}"


def alive(tag: str) -> bool:
    """Whether the process of a `process_tag` runs (True for one on another machine: it cannot be told)."""
    import psutil

    host, pid, started = tag.rsplit(":", 2)
    if host != socket.gethostname():
        return True
    try:
        return int(psutil.Process(int(pid)).create_time() * 1000) == int(started)
    except (psutil.Error, ValueError):
        return False


def end_orphaned_runs(client, experiment_id: str) -> list[str]:
    """End FAILED the RUNNING stage runs of the experiment whose process on this machine is gone (killed, or
    stopped while the tracking server was down); returns their names."""
    runs = client.search_runs(
        [experiment_id], "attributes.status = 'RUNNING' and tags.kind = 'stage'", max_results=1000
    )
    ended = []
    for run in runs:
        tag = run.data.tags.get("process")
        if tag and not alive(tag):
            client.set_tag(run.info.run_id, "ended_by", "the next stage run found its process gone")
            client.set_terminated(run.info.run_id, "FAILED")
            ended.append(run.info.run_name)
    return ended
