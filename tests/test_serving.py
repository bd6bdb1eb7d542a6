import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.models import Architecture, build_classifier
from pipeline.serving import OUTPUTS, Probabilities, model_uri, predict_folder

METADATA = {"classes": ["cat", "dog"], "image_size": 28, "channels": 1}


@pytest.mark.parametrize(
    ("given", "uri"),
    [
        ("pseudo-labeling-classifier@final", "models:/pseudo-labeling-classifier@final"),
        ("pseudo-labeling-classifier/3", "models:/pseudo-labeling-classifier/3"),
        ("models:/clf@final", "models:/clf@final"),
        ("runs:/0123abcd/model", "runs:/0123abcd/model"),
    ],
)
def test_model_uri_prefixes_registry_names_and_keeps_full_uris(given, uri):
    assert model_uri(given) == uri


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_classifier(Architecture(channels=1, width=8, depth=1, num_classes=2)).eval()


def test_predict_folder_labels_good_images_and_reports_bad_files_with_a_reason(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.new("L", (32, 32), 128).save(tmp_path / "sub" / "grey.png")  # resized to 28 x 28, still all 128
    (tmp_path / "page.jpg").write_bytes(b"<html>not an image</html>")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: skipped
    model = tiny_model()
    frame = predict_folder(model, METADATA, tmp_path)
    assert frame.columns.tolist() == ["path", "label", "confidence", "status", "reason"]
    assert frame["path"].tolist() == ["page.jpg", "sub/grey.png"]

    bad, good = frame.iloc[0], frame.iloc[1]
    assert bad["status"] == "error" and bad["label"] == "" and math.isnan(bad["confidence"])
    assert bad["reason"].startswith("cannot decode: UnidentifiedImageError")
    with torch.no_grad():
        probs = torch.softmax(model(torch.full((1, 1, 28, 28), 128 / 255)), dim=1)[0]
    assert good["status"] == "ok" and good["reason"] == ""
    assert good["label"] == METADATA["classes"][int(probs.argmax())]
    assert good["confidence"] == pytest.approx(float(probs.max()), abs=1e-6)


@pytest.mark.timeout(60)
def test_predict_skips_a_fifo_unread(tmp_path):
    Image.new("L", (28, 28), 128).save(tmp_path / "grey.png")
    os.mkfifo(tmp_path / "pipe.png")  # reading it would block until someone writes
    frame = predict_folder(tiny_model(), METADATA, tmp_path)
    fifo = frame.set_index("path").loc["pipe.png"]
    assert fifo["status"] == "special" and "FIFO" in fifo["reason"] and fifo["label"] == ""
    assert frame.set_index("path").loc["grey.png", "status"] == "ok"


def test_a_folder_of_unreadable_files_gives_only_errors(tmp_path):
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (tmp_path / "b.png").write_bytes(b"")
    frame = predict_folder(tiny_model(), METADATA, tmp_path)
    assert frame["status"].tolist() == ["error", "error"] and frame["reason"].str.len().min() > 0
    assert frame["label"].tolist() == ["", ""] and np.isnan(frame["confidence"]).all()


def test_a_model_logged_with_its_softmax_gives_the_same_predictions_as_its_logits(tmp_path):
    """Round models are logged ending in a softmax (what `mlflow models serve` answers); models logged before
    answer logits. `predict` gives the same labels and confidences for both."""
    for value in (0, 90, 200):
        Image.new("L", (28, 28), value).save(tmp_path / f"{value}.png")
    model = tiny_model()
    from_logits = predict_folder(model, METADATA, tmp_path)
    from_probs = predict_folder(Probabilities(model).eval(), {**METADATA, "outputs": OUTPUTS}, tmp_path)
    assert from_probs["label"].tolist() == from_logits["label"].tolist()
    np.testing.assert_allclose(from_probs["confidence"], from_logits["confidence"], atol=1e-6)
    assert (from_probs["confidence"] > 0.5).all() and (from_probs["confidence"] < 1).all()
