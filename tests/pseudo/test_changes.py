"""pipeline.pseudo.changes: what a round changed against the previous one, counted by hand on two tables."""

import pandas as pd

from pipeline.pseudo.changes import round_changes


def table(rows: list[tuple[str, str, bool]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["path", "pseudo_label", "accepted"])


PREV = table([("a", "x", True), ("b", "x", True), ("c", "y", True), ("d", "y", False), ("e", "x", True),
              ("g", "y", True)])  # fmt: skip
CUR = table(
    [
        ("a", "x", True),
        ("b", "y", True),
        ("c", "x", True),
        ("d", "y", True),
        ("e", "x", False),
        ("f", "x", True),
    ]
)  # fmt: skip  (f is new in the pool, g is gone)
TRUTH = pd.Series({"a": "x", "b": "y", "c": "y", "d": "y"})  # b's relabel corrects it, c's makes it wrong


def test_each_image_counts_once_as_kept_relabeled_entered_or_left_under_its_class():
    changes = round_changes(PREV, CUR, ["x", "y", "z"], TRUTH)
    expected = pd.DataFrame(
        {
            "kept": [1, 0, 0, 1],  # a
            "relabeled_in": [1, 1, 0, 2],  # c -> x, b -> y
            "relabeled_out": [1, 1, 0, 2],
            "entered": [1, 1, 0, 2],  # f (new in the pool), d
            "left": [1, 1, 0, 2],  # e (not accepted now), g (gone from the pool)
            "corrections": [0, 1, 0, 1],  # b: y is right, x was wrong
            "new_errors": [1, 0, 0, 1],  # c: y was right, x is wrong
        },
        index=["x", "y", "z", "total"],
    )
    pd.testing.assert_frame_equal(changes.per_class, expected, check_names=False)
    assert sorted(map(tuple, changes.transitions.to_numpy().tolist())) == [("x", "y", 1), ("y", "x", 1)]
    assert changes.describe("r2", "r1") == (
        "r2 against r1: 1 kept, 2 relabeled in, 2 entered, 2 left, 1 corrections, 1 new errors"
    )


def test_without_analysis_labels_there_are_no_correctness_columns():
    changes = round_changes(PREV, CUR, ["x", "y", "z"], pd.Series(dtype=str))
    assert list(changes.per_class.columns) == ["kept", "relabeled_in", "relabeled_out", "entered", "left"]
    assert changes.per_class.loc["total", "kept"] == 1
