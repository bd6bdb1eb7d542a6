"""The rounds table printed at the end of a run, and the per-round curve for `dvc plots`."""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table

from pipeline.promotion import promote, promotion_note

FORMATS = {  # how the tables print each per-round metric
    "test/accuracy": "{:.2%}",
    "val/accuracy": "{:.2%}",
    "test/ece": "{:.3f}",
    "pl/accepted": "{:,.0f}",
    "ood/rejected": "{:,.0f}",
    "pl/precision": "{:.2%}",
}
COLUMNS = {  # the rounds tables' metric columns: their headers, in FORMATS' order
    "test/accuracy": "test acc",
    "val/accuracy": "val acc",
    "test/ece": "ECE",
    "pl/accepted": "PL accepted",
    "ood/rejected": "OOD rejected",
    "pl/precision": "PL precision",
}


def format_metric(key: str, value) -> str:
    """`value` as the tables print metric `key`; '-' when missing or NaN."""
    return "-" if value is None or value != value else FORMATS[key].format(value)


def rounds_curve(rows: list[dict]) -> pd.DataFrame:
    """Per-round curve for `dvc plots`: round, step, test_accuracy, test_ece, pl_accepted, pl_precision."""
    keys = ["round", "step", "test/accuracy", "test/ece", "pl/accepted", "pl/precision"]
    curve = pd.DataFrame(rows).reindex(columns=keys)
    curve.columns = [k.replace("/", "_") for k in keys]
    return curve


def summary_rows(
    results: dict[str, dict[str, float]], round_order: list[str], run_ids: dict[str, str]
) -> list[dict]:
    """Table rows from metrics/eval.json ({round: metrics}) and the MLflow run id of each round."""
    return [
        {
            "round": name,
            "step": step,
            "model": ("teacher" if step == 0 else "student")
            + (" *" if results[name].get("promoted") else ""),
            **results[name],
            "run_id": run_ids.get(name, ""),
        }
        for step, name in enumerate(round_order)
        if name in results
    ]


def promotion_caption(results: dict[str, dict[str, float]], round_order: list[str]) -> str:
    """The table's caption: which round was promoted (metrics/eval.json's `promoted`) and on what grounds."""
    rounds = [name for name in round_order if name in results]
    if not all("val/accuracy" in results[name] for name in rounds):
        return (
            "* promoted: "
            + promote(None, rounds, "too few labeled images per class for a validation set").note
        )
    chosen = next((name for name in rounds if results[name].get("promoted")), rounds[-1])
    return "* promoted: " + promotion_note(
        {name: results[name]["val/accuracy"] for name in rounds}, rounds, chosen
    )


def rounds_table(rows: list[dict], caption: str | None = None) -> Table:
    """rows: {'round', 'model', 'test/accuracy', 'val/accuracy', 'pl/accepted', 'ood/rejected',
    'pl/precision', 'run_id'}."""
    table = Table(title="Pseudo-label rounds", title_justify="left", caption=caption, caption_justify="left")
    for col, justify in [("round", "left"), ("model", "left"), *((c, "right") for c in COLUMNS.values())]:
        table.add_column(col, justify=justify)
    table.add_column("MLflow run", justify="left")

    for row in rows:
        table.add_row(
            row["round"],
            row["model"],
            *(format_metric(key, row.get(key)) for key in COLUMNS),
            row.get("run_id", "-") or "-",
        )
    return table


def rounds_markdown(rows: list[dict], caption: str) -> str:
    """The rounds table (rows as for `rounds_table`, without run ids) as markdown, `caption` below it."""
    lines = [
        "| round | model | " + " | ".join(COLUMNS.values()) + " |",
        "| --- | --- |" + " ---: |" * len(COLUMNS),
    ]
    for row in rows:
        cells = [row["round"], row["model"], *(format_metric(key, row.get(key)) for key in COLUMNS)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + f"\n\n{caption}\n"


def changes_tables(changes, round_name: str, prev: str, transitions: int = 10) -> list[Table]:
    """`changes` (pipeline.pseudo.changes.RoundChanges) as two tables: per class, and the most frequent
    relabelings (from -> to)."""
    per_class = Table(
        title=f"{round_name} against {prev}: accepted pseudo-labels per class", title_justify="left"
    )
    per_class.add_column("class")
    for column in changes.per_class.columns:
        per_class.add_column(column.replace("_", " "), justify="right")
    for name, row in changes.per_class.iterrows():
        per_class.add_row(str(name), *(f"{value:,}" for value in row))
    moves = Table(title=f"most frequent relabelings ({round_name})", title_justify="left")
    for column, justify in (("from", "left"), ("to", "left"), ("images", "right")):
        moves.add_column(column, justify=justify)
    for move in changes.transitions.head(transitions).itertuples(index=False):
        moves.add_row(str(move[0]), str(move[1]), f"{move[2]:,}")
    return [per_class, moves]


def print_table(table: Table) -> None:
    Console(width=140).print(table)
