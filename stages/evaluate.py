"""DVC stage `evaluate`: test accuracy, calibration and pseudo-label statistics of every round."""

from pathlib import Path

import pandas as pd

from pipeline.checkpoint import load_classifier
from pipeline.compute import resolve_compute
from pipeline.data.store import load_prepared
from pipeline.figures import evaluation_figures
from pipeline.files import write_csv, write_json
from pipeline.pseudo.report import pseudo_label_stats, read_analysis_labels
from pipeline.pseudo.select import softmax
from pipeline.stage import start
from pipeline.summary import rounds_curve, summary_rows, test_metrics
from pipeline.tracking import stage_run
from pipeline.train import predict, seed_everything


def main() -> None:
    params, _ = start(__doc__)
    paths = params.paths
    seed_everything(params.seed)
    data = load_prepared(paths.prepared)
    test = data.split("test")
    truth = read_analysis_labels(paths.analysis)
    order, results = params.round_order(), {}
    compute = resolve_compute(params.compute)

    with stage_run(params, "evaluate", logged={"evaluate": params.evaluate.model_dump()}) as run:
        run.set_tag("round_order", ",".join(order))  # metric step k is round order[k]; `compare` reads it
        for step, round_name in enumerate(order):
            model, _ = load_classifier(Path(paths.rounds) / round_name / "model.pt")
            logits, _ = predict(model, data.images, test.index, compute=compute)
            probs = softmax(logits)
            metrics, confusion = test_metrics(probs, test.labels, params.evaluate.ece_bins)
            table_path = Path(paths.pseudolabels) / f"{round_name}.parquet"
            if table_path.is_file():
                metrics.update(pseudo_label_stats(pd.read_parquet(table_path), data.classes, truth))
            run.log(metrics, step)
            results[round_name] = metrics
            run.log_frame(
                pd.DataFrame(confusion, index=data.classes, columns=data.classes),
                f"{round_name}/confusion.csv",
            )
            bins = params.evaluate.ece_bins
            figures = evaluation_figures(confusion, probs, test.labels, data.classes, bins, round_name)
            for name, figure in figures.items():
                run.log_figure(figure, name)
        first, last = results[order[0]]["test/accuracy"], results[order[-1]]["test/accuracy"]
        run.log({"eval/final_accuracy": last, "eval/gain_over_teacher": last - first}, 0)

    write_json(Path(paths.metrics) / "eval.json", results)
    write_csv(Path(paths.plots) / "rounds.csv", rounds_curve(summary_rows(results, order, run_ids={})))
    print(
        f"evaluate: {order[-1]} test accuracy {last:.2%} ({last - first:+.2%} over the teacher); "
        "the rounds table: python -m pipeline summary"
    )


if __name__ == "__main__":
    main()
