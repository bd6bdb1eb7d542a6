"""DVC stage `evaluate`: test accuracy, calibration and pseudo-label statistics of every round; the round
promoted by validation (without validation images: the last) goes to the model registry."""

from pipeline import artifacts
from pipeline.checkpoint import read_checkpoint
from pipeline.compute import kernel_tags, resolve_compute
from pipeline.config.evaluate import EvaluateParams
from pipeline.data.store import load_prepared
from pipeline.data.validation import split_validation
from pipeline.evaluate_rounds import evaluate_rounds, log_outcome, register_promoted
from pipeline.files import write_csv, write_json
from pipeline.promotion import choose_round
from pipeline.stage import run_stage, start
from pipeline.summary import rounds_curve, summary_rows
from pipeline.tracking import stage_run


def main() -> None:
    params, _ = start(__doc__, EvaluateParams)
    paths, order = params.paths, params.round_order()
    data, compute = load_prepared(paths.prepared), resolve_compute(params.compute)
    train, validation = split_validation(data.split("labeled"), params.validation, params.seed)
    logged, tags = {"evaluate": params.evaluate.model_dump()}, {"round_order": ",".join(order)}
    with stage_run(params, "evaluate", logged=logged, tags=tags) as run:  # metric step k: round order[k]
        results, val_hits = evaluate_rounds(run, params, data, validation, compute)
        teacher = read_checkpoint(artifacts.round_model(paths, order[0])).get("selection")  # r0: how chosen
        promotion, logged, warnings = choose_round(
            results, order, data.images, train, validation, params.validation, len(data.classes), teacher,
            params.seed, val_hits,
        )  # fmt: skip
        first, chosen = results[order[0]]["test/accuracy"], results[promotion.round]["test/accuracy"]
        run.log({**logged, "eval/final_accuracy": chosen, "eval/gain_over_teacher": chosen - first}, 0)
        register_promoted(run, params, data, promotion, warnings)
        rows = summary_rows(results, order, run_ids={})
        log_outcome(run, params, results, rows, promotion)  # onto each round's run and the parent run
    write_json(artifacts.metrics(paths, "eval"), results)
    write_json(artifacts.metrics(paths, "kernels"), kernel_tags())  # what chose the CPU kernels
    write_csv(artifacts.plot(paths, "rounds"), rounds_curve(rows))
    print(f"evaluate: {promotion.note}; test accuracy {chosen:.2%} ({chosen - first:+.2%} over the teacher); "
          "the rounds table: python -m pipeline summary")  # fmt: skip


if __name__ == "__main__":
    run_stage(main)
