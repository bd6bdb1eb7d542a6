"""`compare` against a real MLflow store (SQLite in a temporary folder) holding runs laid out as the stages
log them: a parent per pipeline execution, an `evaluate` child with one step per round, model children."""

import math

import pytest
from rich.console import Console

from pipeline.compare import compare_table, find_pipelines, pipeline_rounds, rounds_from_metrics

pytestmark = pytest.mark.slow  # the store: importing MLflow and creating its SQLite schema, about 3.5 s

EXPERIMENT = "cmp"


def pipeline_execution(
    client, experiment_id: str, start: int, evaluate: dict, models: dict, finished: bool = True
) -> str:
    """A parent run and its children: `evaluate`, {'round_order': rounds, metric: [value per round]};
    `models`, {round: stage} of the model-training runs. Returns the parent's run id."""
    parent = client.create_run(
        experiment_id, start_time=start, tags={"kind": "pipeline"}, run_name=f"p{start}"
    )
    child = {"mlflow.parentRunId": parent.info.run_id, "kind": "stage"}
    order = evaluate.pop("round_order")
    run = client.create_run(experiment_id, start_time=start + 1, tags={**child, "stage": "evaluate"})
    client.set_tag(run.info.run_id, "round_order", ",".join(order))
    for key, values in evaluate.items():
        for step, value in enumerate(values):
            client.log_metric(run.info.run_id, key, value, step=step)
    client.log_metric(run.info.run_id, "test/accuracy", 0.99, step=len(order))  # no such round: ignored
    if finished:
        client.set_terminated(run.info.run_id)
    for round_name, stage in models.items():
        tags = {**child, "stage": stage, "round": round_name}
        client.set_terminated(client.create_run(experiment_id, start_time=start + 2, tags=tags).info.run_id)
    return parent.info.run_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Three executions, oldest first: `first` (rounds r0-r2, r1's student cached), `second` (r0, r1), and
    `unevaluated`, the newest, whose evaluate stage never finished."""
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}")
    exp = client.create_experiment(EXPERIMENT)
    first = pipeline_execution(
        client,
        exp,
        1000,
        {"round_order": ["r0", "r1", "r2"], "test/accuracy": [0.5, 0.6, 0.7], "pl/accepted": [0, 120, 1500]},
        {"r0": "teacher", "r2": "student"},
    )
    second = pipeline_execution(
        client, exp, 2000, {"round_order": ["r0", "r1"], "test/accuracy": [0.55, 0.65]}, {"r1": "student"}
    )
    unevaluated = pipeline_execution(
        client, exp, 3000, {"round_order": ["r0"], "test/accuracy": [0.1]}, {"r0": "teacher"}, finished=False
    )
    return client, exp, {"first": first, "second": second, "unevaluated": unevaluated}


def rendered(table) -> list[list[str]]:
    """The body rows of a rich table, as lists of stripped cells."""
    console = Console(width=200, record=True)
    console.print(table)
    lines = console.export_text().splitlines()
    return [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines if line.startswith("│ r")]


def test_rounds_of_one_execution_come_from_its_evaluate_steps_and_model_runs(store):
    client, exp, ids = store
    rounds = pipeline_rounds(client, exp, client.get_run(ids["first"]))
    assert rounds.run_id == ids["first"] and rounds.name == "p1000"
    table = rounds.rounds
    assert table.index.tolist() == ["r0", "r1", "r2"]
    assert table["test accuracy"].tolist() == [0.5, 0.6, 0.7]
    assert table.loc["r2", "PL accepted"] == 1500 and math.isnan(table.loc["r0", "PL precision"])
    children = client.search_runs(
        [exp], f"tags.mlflow.parentRunId = '{ids['first']}' and tags.stage = 'teacher'"
    )
    assert table.loc["r0", "model run"] == children[0].info.run_id
    assert table.loc["r1", "model run"] == "(cached)"  # DVC did not rerun r1's student in this execution


def test_an_execution_without_a_finished_evaluate_has_no_rounds(store):
    client, exp, ids = store
    assert pipeline_rounds(client, exp, client.get_run(ids["unevaluated"])) is None


def test_without_ids_the_latest_evaluated_execution_is_found_and_prefixes_name_others(store):
    client, _, ids = store
    (latest,) = find_pipelines(client, EXPERIMENT, [])
    assert latest.run_id == ids["second"]  # the newest, `unevaluated`, is passed over
    found = find_pipelines(client, EXPERIMENT, [ids["first"][:8], ids["second"]])
    assert [r.run_id for r in found] == [ids["first"], ids["second"]]


def test_lookups_that_fail_say_what_is_missing(store):
    client, _, ids = store
    with pytest.raises(LookupError, match="no MLflow experiment 'nope'"):
        find_pipelines(client, "nope", ["abc"])
    assert find_pipelines(client, "nope", []) == []  # compare then shows metrics/eval.json
    with pytest.raises(LookupError, match="no pipeline runs match 'zzzz' in experiment 'cmp'"):
        find_pipelines(client, EXPERIMENT, ["zzzz"])
    with pytest.raises(LookupError, match=f"pipeline run {ids['unevaluated']} has no finished evaluate"):
        find_pipelines(client, EXPERIMENT, [ids["unevaluated"]])


def test_one_execution_prints_its_rounds_and_two_print_side_by_side(store):
    client, _, ids = store
    first, second = find_pipelines(client, EXPERIMENT, [ids["first"], ids["second"]])
    model_run = first.rounds.loc["r2", "model run"]
    assert rendered(compare_table([first])) == [
        ["r0", "50.00%", "-", "0", "-", "-", first.rounds.loc["r0", "model run"]],
        ["r1", "60.00%", "-", "120", "-", "-", "(cached)"],
        ["r2", "70.00%", "-", "1,500", "-", "-", model_run],
    ]
    # columns: test accuracy [1] [2], PL accepted [1] [2], PL precision [1] [2]; r2 only in the first
    assert rendered(compare_table([first, second])) == [
        ["r0", "50.00%", "55.00%", "0", "-", "-", "-"],
        ["r1", "60.00%", "65.00%", "120", "-", "-", "-"],
        ["r2", "70.00%", "-", "1,500", "-", "-", "-"],
    ]


def test_without_an_evaluated_run_the_rounds_come_from_the_metrics_file():
    results = {
        "r0": {"test/accuracy": 0.5, "test/ece": 0.1},
        "r1": {"test/accuracy": 0.625, "test/ece": 0.2, "pl/accepted": 1500.0, "pl/precision": 0.75},
        "r9": {"test/accuracy": 0.99},  # no longer a round of params.yaml: not shown
    }
    rounds = rounds_from_metrics(results, ["r0", "r1", "r2"], "metrics/eval.json")
    rows = rendered(compare_table([rounds]))
    assert [row[0] for row in rows] == ["r0", "r1"]
    assert rows[0][1:4] == ["50.00%", "0.100", "-"] and rows[0][-1] == "(not in MLflow)"
    assert rows[1][1:4] == ["62.50%", "0.200", "1,500"] and rows[1][5] == "75.00%"
