"""MLflow tracking: one parent run per pipeline execution, one child run per stage and round.

DVC runs each stage as its own process, so the stages of one `dvc repro` find their common parent run by a
`pipeline_id` tag: the id of the `dvc` process that started them (or $PIPELINE_ID when set). The default
tracking store is a SQLite database at the repository root ($DVC_ROOT, so `dvc exp run` in a temporary
workspace logs to the same place); $MLFLOW_TRACKING_URI overrides it.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline.config.common import Common
from pipeline.outage import (
    MetricBuffer,
    TrackingUnreachable,
    end_orphaned_runs,
    no_retries,
    process_tag,
    server_down,
)
from pipeline.provenance import dvc_data_hash, git_commit

PIPELINE_TAG = "pipeline_id"


def project_root() -> Path:
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri(root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{root / 'mlflow.db'}"


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Fail within `timeout` seconds, naming the URI, when an http(s) tracking server does not answer.

    MLflow's own client retries for minutes; a stage calls this first, before any data is read or trained.
    """
    reason = server_down(uri, timeout)
    if reason is not None:
        raise TrackingUnreachable(
            f"MLflow tracking server {uri} is unreachable ({reason}); start it, or unset "
            "MLFLOW_TRACKING_URI to log to the local mlflow.db"
        )


def run_name(params: Common, stage: str, round_name: str | None) -> str:
    """`<position> <round>/<stage>`, e.g. '04 r1/student': sorted by name, runs list in pipeline order."""
    order = ["prepare", "pretrain"]
    for k, name in enumerate(params.round_order()):
        order += [f"{name}/teacher"] if k == 0 else [f"{name}/pseudolabel", f"{name}/student"]
    order.append("evaluate")
    label = f"{round_name}/{stage}" if round_name else stage
    return f"{order.index(label):02d} {label}" if label in order else label


def pipeline_id() -> str:
    """This pipeline execution: $PIPELINE_ID, else the nearest ancestor `dvc` process, else unique."""
    if os.environ.get("PIPELINE_ID"):
        return os.environ["PIPELINE_ID"]
    try:
        import psutil

        proc = psutil.Process().parent()
        while proc is not None:
            cmd = proc.cmdline()
            if any(Path(part).name == "dvc" for part in cmd[:3]):  # dvc, python dvc, python -m dvc
                return f"{os.uname().nodename}-{proc.pid}-{int(proc.create_time() * 1000)}"
            proc = proc.parent()
    except Exception:  # noqa: BLE001 - no process tree access: fall back to one run per stage
        pass
    return f"standalone-{uuid.uuid4().hex[:12]}"


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: nested params as MLflow's flat keys."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


class StageRun:
    """The MLflow child run of one stage: metrics with a step (sent in batches: pipeline.outage), artifacts,
    and the run id for the summary."""

    def __init__(self, run_id: str, tags: dict[str, str], metrics: MetricBuffer, wait_s: float):
        self.run_id, self.tags = run_id, tags
        self.metrics, self.wait_s = metrics, wait_s

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.metrics.add(metrics, step)

    def sync(self) -> None:
        """Send the metrics that wait, waiting up to `mlflow.server_wait_s` for a server that does not
        answer (TrackingUnreachable after that)."""
        self.metrics.drain(self.wait_s)

    def set_tag(self, key: str, value: str) -> None:
        import mlflow

        mlflow.set_tag(key, value)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        import mlflow

        mlflow.log_artifact(str(path), artifact_path)

    def log_frame(self, frame, artifact_file: str) -> None:
        """A pandas DataFrame as a CSV artifact (index kept), e.g. 'confusion/r1.csv'."""
        import mlflow

        mlflow.log_text(frame.to_csv(), artifact_file)

    def log_figure(self, figure, artifact_file: str) -> None:
        """A matplotlib figure as a PNG artifact, e.g. 'figures/confidence.png'; the figure is closed."""
        import matplotlib.pyplot as plt
        import mlflow

        mlflow.log_figure(figure, artifact_file)
        plt.close(figure)

    def warn(self, warnings: list[str]) -> None:
        """Print each warning to stderr and keep them on the run as its `warnings` tag (nothing if none)."""
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if warnings:
            self.set_tag("warnings", "\n".join(warnings))

    def log_figures(self, figures: dict) -> None:
        """Each {artifact file: matplotlib figure} as a PNG artifact; the figures are closed."""
        for artifact_file, figure in figures.items():
            self.log_figure(figure, artifact_file)

    def log_model(self, model, example, metadata: dict[str, Any]) -> str:
        """The model as an MLflow PyTorch model (torch.export 'pt2' format, no pickled code) with a signature
        from `example` (float32 N, C, H, W in [0, 1]) and `metadata` (classes, image size, channels).
        Returns its model URI."""
        import mlflow.pytorch
        import torch
        from mlflow.models import infer_signature

        model.eval()
        with torch.no_grad():
            output = model(torch.from_numpy(example)).numpy()
        requirements = [f"torch=={torch.__version__.split('+')[0]}"]  # given: no slow requirement inference
        with warnings.catch_warnings():  # torch's pt2 packager warns about CPU weights it handles fine
            warnings.filterwarnings("ignore", message="No complete tensor found in the group")
            info = mlflow.pytorch.log_model(
                model,
                name="model",
                input_example=example,
                signature=infer_signature(example, output),
                pip_requirements=requirements,
                metadata=metadata,
            )
        return info.model_uri


def register_model(model_uri: str, name: str, alias: str, tags: dict[str, str]) -> str:
    """Register `model_uri` as a new version of `name`, tagged, point `alias` at it; return the version."""
    import mlflow
    from mlflow import MlflowClient

    version = mlflow.register_model(model_uri, name, tags=tags).version
    MlflowClient().set_registered_model_alias(name, alias, version)
    return str(version)


def _experiment_id(client, name: str, root: Path, uri: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    # Keep artifacts beside the local database rather than wherever the stage happens to run.
    location = (root / "mlartifacts").as_uri() if uri.startswith("sqlite:") else None
    return client.create_experiment(name, artifact_location=location)


def _parent_run(client, experiment_id: str, pid: str, tags: dict[str, str]) -> str:
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.{PIPELINE_TAG} = '{pid}' and tags.kind = 'pipeline'",
        max_results=1,
    )
    if found:
        return found[0].info.run_id
    name = "pipeline " + time.strftime("%Y-%m-%d %H:%M:%S")
    run = client.create_run(
        experiment_id, run_name=name, tags={**tags, PIPELINE_TAG: pid, "kind": "pipeline"}
    )
    client.set_terminated(run.info.run_id)  # the parent only groups; each child carries its own status
    return run.info.run_id


@contextmanager
def stage_run(
    params: Common,
    stage: str,
    round_name: str | None = None,
    logged: dict[str, Any] | None = None,
    system_metrics: bool = False,
    tags: dict[str, str] | None = None,
):
    """Start the child run `NN <round>/<stage>` under this pipeline execution's parent; log params and tags
    (`tags`: the stage's own, besides the ones below).

    Tags: stage, round, DVC stage, git commit, the DVC hash of each input folder, $DVC_EXP_NAME when set,
    the CPU kernels' capability and pins (`pipeline.compute.kernel_tags`). `logged` is the params section(s)
    of the stage, logged once as flattened params. `system_metrics` samples CPU and memory (and GPU, when
    one and its NVML library are present) in the background.
    """
    import logging

    import mlflow
    from mlflow import MlflowClient

    from pipeline.compute import kernel_tags

    logging.getLogger("mlflow.system_metrics").setLevel(logging.WARNING)  # no start/stop chatter per stage
    root = project_root()
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    experiment_id = _experiment_id(client, params.mlflow.experiment, root, uri)
    p = params.paths
    folders = {"labeled": p.labeled, "unlabeled": p.unlabeled, "test": p.test}
    hashes = {f"data_hash.{k}": dvc_data_hash(v) for k, v in folders.items()}
    common = {"git_commit": git_commit(root), **hashes}
    if os.environ.get("DVC_EXP_NAME"):
        common["dvc_exp_name"] = os.environ["DVC_EXP_NAME"]
    pid = pipeline_id()
    parent = _parent_run(client, experiment_id, pid, common)
    tags = {
        **(tags or {}),
        **common,
        "kind": "stage",
        "stage": stage,
        "dvc_stage": os.environ.get("DVC_STAGE", stage),
        "round": round_name or "",
        PIPELINE_TAG: pid,
        **kernel_tags(),
    }
    for name in end_orphaned_runs(client, experiment_id):
        print(f"MLflow run '{name}' had lost its process; it is now FAILED", file=sys.stderr)
    run = mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name(params, stage, round_name),
        parent_run_id=parent,
        tags={**tags, "process": process_tag()},
        log_system_metrics=system_metrics,
    )
    status = "FAILED"
    try:
        mlflow.log_params(flatten(logged or {}))
        staged = StageRun(
            run.info.run_id, tags, MetricBuffer(client, run.info.run_id, uri), params.mlflow.server_wait_s
        )
        yield staged
        staged.sync()
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        with no_retries():  # a server that is down: the next stage's start ends this run (end_orphaned_runs)
            try:
                mlflow.end_run(status)
            except Exception:  # noqa: BLE001
                print(f"warning: could not end MLflow run {run.info.run_id} as {status}", file=sys.stderr)


def latest_round_runs(experiment: str, stages: tuple[str, ...] = ("teacher", "student")) -> dict[str, str]:
    """{round: run_id} of the most recent finished model-training run of each round in the experiment."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri(project_root()))
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return {}
    runs = client.search_runs(
        [exp.experiment_id],
        filter_string="tags.kind = 'stage' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )
    out: dict[str, str] = {}
    for run in runs:
        if run.data.tags.get("stage") in stages:
            out.setdefault(run.data.tags.get("round", ""), run.info.run_id)
    return out
