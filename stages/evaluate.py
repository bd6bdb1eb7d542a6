"""DVC stage `evaluate`: test accuracy, calibration and pseudo-label statistics of every round."""

from pipeline import artifacts
from pipeline.compute import resolve_compute
from pipeline.config.evaluate import EvaluateParams
from pipeline.data.store import load_prepared
from pipeline.evaluation import evaluate_round
from pipeline.figures import evaluation_figures
from pipeline.files import write_csv, write_json
from pipeline.pseudo.report import read_analysis_labels
from pipeline.stage import start
from pipeline.summary import rounds_curve, summary_rows
from pipeline.tracking import stage_run


def main() -> None:
    params, _ = start(__doc__, EvaluateParams)
    paths, bins, order, results = params.paths, params.evaluate.ece_bins, params.round_order(), {}
    data, compute = load_prepared(paths.prepared), resolve_compute(params.compute)
    truth, labels = read_analysis_labels(paths.analysis), data.split("test").labels
    logged, tags = {"evaluate": params.evaluate.model_dump()}, {"round_order": ",".join(order)}
    with stage_run(params, "evaluate", logged=logged, tags=tags) as run:  # metric step k: round order[k]
        for step, name in enumerate(order):
            result = evaluate_round(
                model_file=artifacts.round_model(paths, name), data=data, truth=truth, ece_bins=bins,
                table_file=artifacts.pseudo_labels(paths, name), compute=compute,
            )  # fmt: skip
            run.log(result.metrics, step)
            results[name] = result.metrics
            run.log_frame(result.confusion_frame(data.classes), f"{name}/confusion.csv")
            run.log_figures(
                evaluation_figures(result.confusion, result.probs, labels, data.classes, bins, name)
            )
        first, last = results[order[0]]["test/accuracy"], results[order[-1]]["test/accuracy"]
        run.log({"eval/final_accuracy": last, "eval/gain_over_teacher": last - first}, 0)
    write_json(artifacts.metrics(paths, "eval"), results)
    write_csv(artifacts.plot(paths, "rounds"), rounds_curve(summary_rows(results, order, run_ids={})))
    print(f"evaluate: {order[-1]} test accuracy {last:.2%} ({last - first:+.2%} over the teacher); "
          "the rounds table: python -m pipeline summary")  # fmt: skip


if __name__ == "__main__":
    main()
