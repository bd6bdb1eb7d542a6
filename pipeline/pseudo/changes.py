"""What a round changed against the previous one: the two rounds' per-image tables (the ledger,
pseudolabels/<round>.parquet), joined on the image path.

Per class, of the accepted pseudo-labels:
    kept           accepted in both rounds with this label
    relabeled_in   accepted in both, this label now and another before
    relabeled_out  accepted in both, this label before and another now
    entered        accepted now, not before (or new in the pool), with this label
    left           accepted before with this label, not now (or gone from the pool)
and, where the analysis labels know the image, of the relabeled images under their new label:
    corrections    the new label is right and the old one was wrong
    new_errors     the old label was right and the new one is wrong
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

LEDGER = ["path", "pseudo_label", "accepted"]  # the columns of a round's table that changes are counted on
CHANGES = ["kept", "relabeled_in", "relabeled_out", "entered", "left"]
CORRECTNESS = ["corrections", "new_errors"]


@dataclass(frozen=True)
class RoundChanges:
    per_class: pd.DataFrame  # index: class; CHANGES (+ CORRECTNESS with analysis labels), and a 'total' row
    transitions: pd.DataFrame  # from, to, images: the relabeled accepted images, most first

    def describe(self, round_name: str, prev: str) -> str:
        """One line: the totals of the change kinds."""
        total = self.per_class.loc["total"]
        parts = [f"{int(total[key]):,} {key.replace('_', ' ')}" for key in CHANGES if key != "relabeled_out"]
        parts += [f"{int(total[key]):,} {key.replace('_', ' ')}" for key in CORRECTNESS if key in total]
        return f"{round_name} against {prev}: " + ", ".join(parts)

    def metrics(self) -> dict[str, float]:
        """The totals as evaluate logs them per round: changes/kept, changes/relabeled, ..."""
        total = self.per_class.loc["total"]
        keys = [key for key in CHANGES + CORRECTNESS if key in total and key != "relabeled_out"]
        return {f"changes/{key.replace('relabeled_in', 'relabeled')}": float(total[key]) for key in keys}


def round_changes(
    prev: pd.DataFrame, cur: pd.DataFrame, classes: list[str], truth: pd.Series
) -> RoundChanges:
    """The changes from round table `prev` to `cur` (see the module docstring); `truth`: the analysis labels
    by path (may be empty)."""
    both = prev[LEDGER].merge(cur[LEDGER], on="path", how="outer", suffixes=("_prev", ""))
    was, now = both["accepted_prev"].fillna(False).astype(bool), both["accepted"].fillna(False).astype(bool)
    old, new = both["pseudo_label_prev"], both["pseudo_label"]
    stayed = was & now
    relabeled = stayed & (old != new)
    masks = {
        "kept": (stayed & ~relabeled, new),
        "relabeled_in": (relabeled, new),
        "relabeled_out": (relabeled, old),
        "entered": (now & ~was, new),
        "left": (was & ~now, old),
    }
    known = both["path"].isin(truth.index).to_numpy()
    if known[relabeled.to_numpy()].any():
        right = pd.Series(truth.reindex(both["path"]).to_numpy(), index=both.index)
        masks["corrections"] = (relabeled & (new == right) & (old != right), new)
        masks["new_errors"] = (relabeled & (old == right) & (new != right), new)
    per_class = pd.DataFrame(
        {
            key: label[mask].value_counts().reindex(classes, fill_value=0)
            for key, (mask, label) in masks.items()
        }
    ).astype(np.int64)
    per_class.loc["total"] = per_class.sum()
    transitions = (
        pd.DataFrame({"from": old[relabeled], "to": new[relabeled]})
        .value_counts()
        .rename("images")
        .reset_index()
    )
    return RoundChanges(per_class, transitions)


def load_round_changes(prev_file: Path, cur_file: Path, classes: list[str], truth: pd.Series) -> RoundChanges:
    """`round_changes` of two rounds' pseudo-label tables, read from their parquet files."""
    prev, cur = (pd.read_parquet(f, columns=LEDGER) for f in (prev_file, cur_file))
    return round_changes(prev, cur, classes, truth)


def compared_round(rounds: dict, name: str) -> str | None:
    """The round `name` is compared with: its `prev` when that round pseudo-labeled too (params.yaml
    `rounds`), else None (the teacher's round has no table)."""
    prev = rounds[name].prev if name in rounds else None
    return prev if prev in rounds else None
