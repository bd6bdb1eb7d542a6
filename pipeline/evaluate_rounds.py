"""The evaluate stage's MLflow side: every round's model on the test (and validation) images, logged, and the
promoted round's model registered."""

from __future__ import annotations

from pipeline import artifacts
from pipeline.checkpoint import load_classifier
from pipeline.compute import Compute
from pipeline.config.evaluate import EvaluateParams
from pipeline.data.store import Prepared, Split
from pipeline.evaluation import evaluate_round
from pipeline.figures import evaluation_figures
from pipeline.promotion import Promotion
from pipeline.pseudo.report import read_analysis_labels
from pipeline.serving import log_round_model
from pipeline.tracking import StageRun


def evaluate_rounds(
    run: StageRun, params: EvaluateParams, data: Prepared, validation: Split | None, compute: Compute
) -> dict[str, dict[str, float]]:
    """{round: metrics} of every round in order, each logged at step k (its place in the order) with its
    confusion matrix and figures."""
    paths, bins, results = params.paths, params.evaluate.ece_bins, {}
    truth, labels = read_analysis_labels(paths.analysis), data.split("test").labels
    for step, name in enumerate(params.round_order()):
        result = evaluate_round(
            model_file=artifacts.round_model(paths, name), data=data, truth=truth, ece_bins=bins,
            table_file=artifacts.pseudo_labels(paths, name), validation=validation, compute=compute,
        )  # fmt: skip
        run.log(result.metrics, step)
        results[name] = result.metrics
        run.log_frame(result.confusion_frame(data.classes), f"{name}/confusion.csv")
        run.log_figures(evaluation_figures(result.confusion, result.probs, labels, data.classes, bins, name))
    return results


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
