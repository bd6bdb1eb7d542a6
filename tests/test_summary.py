import math

import pytest
from rich.console import Console

from pipeline.summary import (
    format_metric,
    promotion_caption,
    rounds_curve,
    rounds_markdown,
    rounds_table,
    summary_rows,
)

RESULTS = {
    "r0": {"test/accuracy": 0.5, "test/ece": 0.25},
    "r2": {"test/accuracy": 0.8123, "test/ece": 0.0456, "pl/accepted": 12345.0, "pl/precision": 0.9},
}


def rendered(table) -> str:
    console = Console(width=140, record=True)
    console.print(table)
    return console.export_text()


def test_format_metric_prints_each_key_its_way_and_a_dash_when_missing():
    assert format_metric("test/accuracy", 0.8123) == "81.23%"
    assert format_metric("test/ece", 0.04567) == "0.046"
    assert format_metric("pl/accepted", 12345.0) == "12,345"
    assert format_metric("pl/precision", None) == "-" and format_metric("ood/rejected", math.nan) == "-"
    with pytest.raises(KeyError):
        format_metric("train/loss", 1.0)  # not a rounds-table metric


def test_summary_rows_follow_the_round_order_and_skip_rounds_without_results():
    rows = summary_rows(RESULTS, ["r0", "r1", "r2"], {"r2": "abc123"})
    assert [(r["round"], r["step"], r["model"], r["run_id"]) for r in rows] == [
        ("r0", 0, "teacher", ""),
        ("r2", 2, "student", "abc123"),
    ]
    assert rows[1]["pl/precision"] == 0.9


def test_rounds_curve_has_fixed_columns_with_missing_metrics_empty():
    curve = rounds_curve(summary_rows(RESULTS, ["r0", "r2"], {}))
    assert list(curve.columns) == [
        "round",
        "step",
        "test_accuracy",
        "test_ece",
        "pl_accepted",
        "pl_precision",
    ]
    assert curve["round"].tolist() == ["r0", "r2"] and curve["step"].tolist() == [0, 1]
    assert math.isnan(curve.loc[0, "pl_accepted"]) and curve.loc[1, "pl_accepted"] == 12345.0


def test_rounds_table_prints_formatted_metrics_and_run_ids():
    text = rendered(rounds_table(summary_rows(RESULTS, ["r0", "r2"], {"r2": "abc123"})))
    r0, r2 = (line for line in text.splitlines() if line.startswith(("│ r0", "│ r2")))
    assert [cell.strip() for cell in r0.split("│")[1:-1]] == [
        "r0",
        "teacher",
        "50.00%",
        "-",
        "0.250",
        "-",
        "-",
        "-",
        "-",
    ]
    cells = [cell.strip() for cell in r2.split("│")[1:-1]]
    assert cells == ["r2", "student", "81.23%", "-", "0.046", "12,345", "-", "90.00%", "abc123"]


def test_rounds_markdown_is_the_same_table_with_its_caption():
    text = rounds_markdown(summary_rows(RESULTS, ["r0", "r2"], {"r2": "abc123"}), "r2 promoted.")
    assert text.splitlines() == [
        "| round | model | test acc | val acc | ECE | PL accepted | OOD rejected | PL precision |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        "| r0 | teacher | 50.00% | - | 0.250 | - | - | - |",
        "| r2 | student | 81.23% | - | 0.046 | 12,345 | - | 90.00% |",
        "",
        "r2 promoted.",
    ]


def test_the_promoted_round_is_marked_and_the_caption_says_why():
    results = {
        "r0": {"test/accuracy": 0.5, "val/accuracy": 0.6, "promoted": 0.0},
        "r1": {"test/accuracy": 0.7, "val/accuracy": 0.8, "promoted": 1.0},
        "r2": {"test/accuracy": 0.72, "val/accuracy": 0.7, "promoted": 0.0},
    }
    order = ["r0", "r1", "r2"]
    caption = promotion_caption(results, order)
    text = rendered(rounds_table(summary_rows(results, order, {}), caption))
    assert "│ r1    │ student * │" in text and "│ r2    │ student   │" in text
    assert caption == "* promoted: r1 promoted (validation 80.00%); r2 was worse on validation (r2 70.00%)"
    assert "r1 promoted (validation 80.00%)" in text
