import numpy as np
import pandas as pd
import pytest

from pipeline.data.store import Split
from pipeline.pseudo.report import pseudo_label_stats, pseudo_label_table, read_analysis_labels
from pipeline.pseudo.select import select_pseudo_labels
from pipeline.pseudo.targets import read_training_table, training_targets

CLASSES = ["cat", "dog"]


def round_table(mode: str = "threshold", threshold: float = 0.7) -> pd.DataFrame:
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.95, 0.05], [0.75, 0.25]])
    ood_score = np.array([0.1, 0.2, 0.1, 0.9, 0.3])
    pool = Split(
        index=np.arange(10, 15),
        labels=np.full(5, -1),
        sha256=np.array([f"h{i}" for i in range(5)]),
        paths=np.array([f"u/{i}.png" for i in range(5)]),
    )
    selection = select_pseudo_labels(probs, ood_score <= 0.5, mode, threshold, "confidence")
    return pseudo_label_table("r1", pool, probs, selection, ood_score, np.ones(len(probs)), CLASSES)


def test_table_has_one_row_per_image_with_its_decision():
    table = round_table()
    assert table["sha256"].tolist() == ["h0", "h1", "h2", "h3", "h4"]
    assert table["pseudo_label"].tolist() == ["cat", "cat", "dog", "cat", "cat"]
    assert table["reason"].tolist() == ["accepted", "low_confidence", "accepted", "ood", "accepted"]
    assert table["threshold"].tolist() == [0.7] * 5
    assert table["weight"].tolist() == pytest.approx([0.9, 0.0, 0.8, 0.0, 0.75])


def test_stats_precision_coverage_counts_and_ood_truth():
    truth = pd.Series({"u/0.png": "cat", "u/1.png": "dog", "u/2.png": "cat", "u/3.png": "bird",
                      "u/4.png": "cat"})  # fmt: skip
    stats = pseudo_label_stats(round_table(), CLASSES, truth)
    assert stats["pl/accepted"] == 3 and stats["pl/coverage"] == pytest.approx(3 / 5)
    assert stats["pl/precision"] == pytest.approx(2 / 3)  # u/2 is a cat labeled dog
    assert (stats["pl/count/cat"], stats["pl/count/dog"]) == (2, 1)
    assert stats["ood/rejected"] == 1
    # the bird is the only true OOD image; it has the highest score and was rejected
    assert stats["ood/true_ood"] == 1 and stats["ood/auroc"] == 1.0 and stats["ood/recall"] == 1.0
    assert stats["ood/false_rejection"] == 0.0 and stats["pl/accepted_ood"] == 0


def test_stats_without_ood_truth_have_no_ood_quality_keys():
    truth = pd.Series({"u/0.png": "cat", "u/1.png": "dog"})
    stats = pseudo_label_stats(round_table(), CLASSES, truth)
    assert "ood/auroc" not in stats and stats["pl/precision"] == 1.0


def test_stats_of_a_pool_that_is_all_ood_rate_the_decision_not_the_score():
    truth = pd.Series({f"u/{i}.png": "bird" for i in range(5)})
    stats = pseudo_label_stats(round_table(), CLASSES, truth)
    assert stats["ood/true_ood"] == 5 and stats["ood/recall"] == pytest.approx(1 / 5)  # only u/3 rejected
    assert stats["pl/accepted_ood"] == 3 and "ood/auroc" not in stats and "ood/false_rejection" not in stats


def test_training_targets_keep_in_distribution_images_and_repeat_copies():
    table = round_table(mode="class_balanced", threshold=0.7)  # quota 4 // 2 = 2 per class
    assert table["copies"].tolist() == [1, 0, 2, 0, 1]
    pseudo = training_targets(table, CLASSES, hard=True)
    # OOD image 13 is out; low-confidence 11 stays once with weight 0 (entropy term only); 12 twice
    assert pseudo.index.tolist() == [10, 11, 12, 12, 14]
    assert pseudo.weights.tolist() == pytest.approx([0.9, 0.0, 0.8, 0.8, 0.75])
    assert pseudo.targets.tolist() == [[1, 0], [1, 0], [0, 1], [0, 1], [1, 0]]


@pytest.mark.parametrize("hard", [False, True])
def test_the_student_reads_only_training_columns_and_gets_the_same_targets(tmp_path, hard):
    table = round_table(mode="class_balanced", threshold=0.7)
    table.to_parquet(tmp_path / "r1.parquet", index=False)
    read = read_training_table(tmp_path / "r1.parquet")
    assert "sha256" not in read and "path" not in read and "reason" not in read
    expected, got = training_targets(table, CLASSES, hard), training_targets(read, CLASSES, hard)
    assert np.array_equal(got.index, expected.index) and np.array_equal(got.weights, expected.weights)
    assert np.allclose(got.targets, expected.targets) and len(got.index) > 0


def test_a_missing_soft_label_value_reaches_the_student_as_nan_not_a_crash(tmp_path):
    table = round_table()
    table.at[0, "soft_label"] = np.array([np.nan, 0.8], np.float32)  # parquet stores the NaN as a null
    table.to_parquet(tmp_path / "r1.parquet", index=False)
    targets = training_targets(read_training_table(tmp_path / "r1.parquet"), CLASSES, hard=False).targets
    assert np.isnan(targets[0, 0]) and targets[0, 1] == pytest.approx(0.8)  # the finite-loss check names it


def test_an_analysis_file_naming_a_path_twice_is_refused(tmp_path):
    (tmp_path / "analysis.csv").write_text("path,label\na.png,cat\nb.png,dog\na.png,dog\n")
    with pytest.raises(ValueError, match=r"analysis.csv: a path may have one label; repeated: \['a.png'\]"):
        read_analysis_labels(tmp_path / "analysis.csv")
