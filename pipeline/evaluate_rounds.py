"""The evaluate stage's MLflow side: every round's model on the test (and validation) images, logged, and the
promoted round's model registered."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline import artifacts
from pipeline.checkpoint import load_classifier
from pipeline.compute import Compute
from pipeline.config.evaluate import EvaluateParams
from pipeline.data.store import Prepared, Split
from pipeline.evaluation import evaluate_round
from pipeline.figures import evaluation_figures, round_changes_figure
from pipeline.files import file_md5
from pipeline.promotion import Promotion
from pipeline.pseudo.changes import compared_round, load_round_changes
from pipeline.pseudo.report import read_analysis_labels
from pipeline.serving import MODEL_TAG, log_round_model
from pipeline.summary import rounds_markdown
from pipeline.tracking import StageRun


def evaluate_rounds(
    run: StageRun, params: EvaluateParams, data: Prepared, validation: Split | None, compute: Compute
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray] | None]:
    """{round: metrics} of every round in order, each logged at step k (its place in the order) with its
    confusion matrix and figures; and with a `validation` split, {round: 1 per validation image it got
    right} for the promotion."""
    paths, bins, results, val_hits = params.paths, params.evaluate.ece_bins, {}, {}
    truth, test = read_analysis_labels(paths.analysis), data.split("test")  # read once, for every round
    for step, name in enumerate(params.round_order()):
        result = evaluate_round(
            model_file=artifacts.round_model(paths, name), data=data, test=test, truth=truth, ece_bins=bins,
            table_file=artifacts.pseudo_labels(paths, name), validation=validation, compute=compute,
        )  # fmt: skip
        changes = log_round_changes(run, params, data.classes, truth, name)  # MLflow only, not eval.json
        run.log({**result.metrics, **changes}, step)
        results[name], val_hits[name] = result.metrics, result.val_hits
        run.log_frame(result.confusion_frame(data.classes), f"{name}/confusion.csv")
        figures = evaluation_figures(result.confusion, result.probs, test.labels, data.classes, bins, name)
        run.log_figures(figures)
    return results, val_hits if validation is not None else None


def log_round_changes(
    run: StageRun, params: EvaluateParams, classes: list[str], truth: pd.Series, name: str
) -> dict[str, float]:
    """What round `name` changed against its previous round, when that round pseudo-labeled too: per class
    (`{name}/changes.csv`, and as `{name}/changes.png`) and the relabelings (`{name}/transitions.csv`).
    Returns the totals as metrics (changes/*), none for the first round."""
    prev = compared_round(params.rounds, name)
    if prev is None:
        return {}
    files = [artifacts.pseudo_labels(params.paths, r) for r in (prev, name)]
    changes = load_round_changes(*files, classes, truth)
    run.log_frame(changes.per_class, f"{name}/changes.csv")
    run.log_frame(changes.transitions, f"{name}/transitions.csv")
    run.log_figures(
        {f"{name}/changes.png": round_changes_figure(changes.per_class, f"{name} against {prev}")}
    )
    return changes.metrics()


def register_promoted(
    run: StageRun, params: EvaluateParams, data: Prepared, promotion: Promotion, warnings: list[str]
) -> None:
    """Tag the run with the promoted round and why, print and keep the `warnings`, and log the promoted
    round's model, registered as `mlflow.registered_model` with `mlflow.alias` pointing at it."""
    run.set_tag("promoted_round", promotion.round)
    run.set_tag("promotion", promotion.note)
    run.warn(warnings)
    model, _ = load_classifier(artifacts.round_model(params.paths, promotion.round))
    registry = (params.mlflow.registered_model, params.mlflow.alias)
    log_round_model(run, model, data, promotion.round, params.data.image_size, params.data.channels, registry)


# pl/*: the pseudo-labels the round trained on, so Compare shows them beside the accuracy they led to
ROUND_RUN_METRICS = ("test/accuracy", "test/ece", "val/accuracy", "promoted", "pl/precision", "pl/accepted")


def log_onto_round_runs(params: EvaluateParams, results: dict[str, dict[str, float]]) -> int:
    """Each round's ROUND_RUN_METRICS (step 0) onto the training runs that wrote its model file (their
    MODEL_TAG is its md5; a forced rerun writes the same bytes, so it may be several runs), so that MLflow's
    runs table and Compare view line up the rounds' own runs by accuracy. Returns how many runs got them."""
    import time

    from mlflow import MlflowClient
    from mlflow.entities import Metric

    client = MlflowClient()
    experiment = client.get_experiment_by_name(params.mlflow.experiment)
    stamp, logged = int(time.time() * 1000), 0
    for name, metrics in results.items():
        md5 = file_md5(artifacts.round_model(params.paths, name))
        values = [Metric(key, float(metrics[key]), stamp, 0) for key in ROUND_RUN_METRICS if key in metrics]
        for found in client.search_runs([experiment.experiment_id], f"tags.{MODEL_TAG} = '{md5}'"):
            client.log_batch(found.info.run_id, metrics=values)
            logged += 1
    return logged


def summarise_on_parent(run: StageRun, rows: list[dict], promotion: Promotion) -> str:
    """The pipeline execution's parent run (the one `run` is a child of) gets the outcome: tag
    `promoted_round`, metrics `promoted/test_accuracy` (and `promoted/val_accuracy`) and the rounds table as
    `rounds.md`, so the experiment's runs table compares whole pipeline executions. Returns its run id.
    The parent already carries the git commit and the data hashes as tags (pipeline.tracking.stage_run)."""
    from mlflow import MlflowClient

    client = MlflowClient()
    parent = client.get_run(run.run_id).data.tags["mlflow.parentRunId"]
    row = next(row for row in rows if row["round"] == promotion.round)
    client.set_tag(parent, "promoted_round", promotion.round)
    for key in ("test/accuracy", "val/accuracy"):
        if key in row:
            client.log_metric(parent, f"promoted/{key.replace('/', '_')}", float(row[key]), step=0)
    client.log_text(parent, rounds_markdown(rows, f"{promotion.note}."), "rounds.md")
    return parent


def log_outcome(
    run: StageRun, params: EvaluateParams, results: dict[str, dict[str, float]], rows: list[dict],
    promotion: Promotion,
) -> None:  # fmt: skip
    """Where else the rounds' results go in MLflow: onto each round's own training run
    (`log_onto_round_runs`) and onto the pipeline execution's parent run (`summarise_on_parent`)."""
    log_onto_round_runs(params, results)
    summarise_on_parent(run, rows, promotion)
