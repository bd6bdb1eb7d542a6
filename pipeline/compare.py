"""`python -m pipeline compare`: the rounds of one pipeline run, or of two side by side, read from MLflow.

A pipeline run is the parent run of one `dvc repro`; its `evaluate` child holds one step per round (step k is
round k of its `round_order` tag) and its `pseudolabel` children hold the pseudo-label statistics. Where
MLflow holds no evaluated pipeline run (a fresh clone whose `dvc repro` had nothing to rerun), the rounds come
from metrics/eval.json, which `evaluate` wrote and git versions with the code.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from rich.table import Table

from pipeline.summary import format_metric

METRICS = {  # column -> metric of the evaluate run (named as in the rounds table of `summary`)
    "test accuracy": "test/accuracy",
    "ECE": "test/ece",
    "PL accepted": "pl/accepted",
    "OOD rejected": "ood/rejected",
    "PL precision": "pl/precision",
}


@dataclass(frozen=True)
class PipelineRounds:
    run_id: str  # the parent (pipeline) run
    name: str
    rounds: pd.DataFrame  # index: round; columns: METRICS keys, plus 'model run'


def pipeline_runs(client, experiment_id: str, max_results: int = 50) -> list:
    """Parent runs of pipeline executions, newest first."""
    return client.search_runs(
        [experiment_id],
        filter_string="tags.kind = 'pipeline'",
        order_by=["attributes.start_time DESC"],
        max_results=max_results,
    )


def pipeline_rounds(client, experiment_id: str, parent) -> PipelineRounds | None:
    """The rounds table of one pipeline run, or None when it has no finished `evaluate` child."""
    children = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'", max_results=1000
    )
    evaluate = [r for r in children if r.data.tags.get("stage") == "evaluate" and r.info.status == "FINISHED"]
    if not evaluate:
        return None
    order = evaluate[0].data.tags.get("round_order", "").split(",")
    table = pd.DataFrame(index=pd.Index(order, name="round"), columns=[*METRICS, "model run"], dtype=object)
    for column, key in METRICS.items():
        for point in client.get_metric_history(evaluate[0].info.run_id, key):
            if 0 <= point.step < len(order):
                table.loc[order[point.step], column] = point.value
    for run in children:
        if run.data.tags.get("stage") in ("teacher", "student") and run.data.tags.get("round") in order:
            table.loc[run.data.tags["round"], "model run"] = run.info.run_id
    table["model run"] = table["model run"].fillna("(cached)")  # DVC did not rerun it in this execution
    return PipelineRounds(parent.info.run_id, parent.info.run_name, table)


def rounds_from_metrics(results: dict[str, dict[str, float]], order: list[str], name: str) -> PipelineRounds:
    """The rounds table from `evaluate`'s metrics file ({round: {metric: value}}), rounds in `order`."""
    rounds = [r for r in order if r in results]
    table = pd.DataFrame(index=pd.Index(rounds, name="round"), columns=[*METRICS, "model run"], dtype=object)
    for r in rounds:
        for column, key in METRICS.items():
            table.loc[r, column] = results[r].get(key)
    table["model run"] = "(not in MLflow)"
    return PipelineRounds("", name, table)


def find_pipelines(client, experiment: str, run_ids: list[str]) -> list[PipelineRounds]:
    """The pipeline runs named by `run_ids` (a prefix is enough), or the latest one with an evaluation (none:
    an empty list)."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None and run_ids:
        raise LookupError(f"no MLflow experiment '{experiment}' at this tracking URI; run `dvc repro` first")
    if exp is None:
        return []
    parents = pipeline_runs(client, exp.experiment_id, max_results=1000)
    if not run_ids:
        for parent in parents:
            rounds = pipeline_rounds(client, exp.experiment_id, parent)
            if rounds is not None:
                return [rounds]
        return []
    found = []
    for run_id in run_ids:
        matches = [p for p in parents if p.info.run_id.startswith(run_id)]
        if len(matches) != 1:
            what = "no" if not matches else f"{len(matches)}"
            raise LookupError(f"{what} pipeline runs match '{run_id}' in experiment '{experiment}'")
        rounds = pipeline_rounds(client, exp.experiment_id, matches[0])
        if rounds is None:
            raise LookupError(f"pipeline run {run_id} has no finished evaluate stage")
        found.append(rounds)
    return found


def compare_table(runs: list[PipelineRounds]) -> Table:
    """One run: its rounds table. Two or more: each metric side by side, one column per pipeline run."""
    if len(runs) == 1:
        run = runs[0]
        table = Table(title=f"{run.name} ({run.run_id})" if run.run_id else run.name, title_justify="left")
        table.add_column("round")
        for column in [*METRICS, "model run"]:
            table.add_column(column, justify="left" if column == "model run" else "right")
        for name, row in run.rounds.iterrows():
            table.add_row(name, *(format_metric(METRICS[c], row[c]) for c in METRICS), str(row["model run"]))
        return table
    table = Table(
        title="  vs  ".join(f"[{i}] {r.run_id[:8]}" for i, r in enumerate(runs, 1)), title_justify="left"
    )
    table.add_column("round")
    shown = ("test accuracy", "PL accepted", "PL precision")
    for column in shown:
        for i in range(1, len(runs) + 1):
            table.add_column(f"{column} [{i}]", justify="right")
    names = list(dict.fromkeys(name for r in runs for name in r.rounds.index))
    for name in names:
        cells = [
            format_metric(METRICS[column], r.rounds.loc[name, column] if name in r.rounds.index else None)
            for column in shown
            for r in runs
        ]
        table.add_row(name, *cells)
    return table
