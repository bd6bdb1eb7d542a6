"""Models outside the pipeline: each round's model as an MLflow model, the final student in the registry, and
`predict`, which labels a folder of new images with a registered model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from pipeline.data.prepare import decode_error_reason, decode_image, scan_folder
from pipeline.data.scan import NotRegularFile
from pipeline.data.store import Prepared
from pipeline.datasets import to_tensor
from pipeline.files import file_md5
from pipeline.inference import batched_outputs
from pipeline.models import Classifier
from pipeline.pseudo.select import softmax
from pipeline.tracking import StageRun, register_model

EXAMPLE_IMAGES = 4  # the input example logged with each model
OUTPUTS = "probabilities"  # metadata["outputs"] of a logged model: it ends in a softmax
# A training run's tag: the md5 of the round model file it wrote (evaluate finds the run by it).
MODEL_TAG = "model_md5"


def log_round(
    run: StageRun, model: Classifier, model_file: Path, data: Prepared, round_name: str, image_size: int,
    channels: int,
) -> str:  # fmt: skip
    """What a training stage logs of the round model it wrote to `model_file`: the file as an artifact, its
    md5 as the run's MODEL_TAG (evaluate logs the round's test metrics onto the runs carrying it), and the
    MLflow model (`log_round_model`). Returns the model's URI."""
    run.log_artifact(model_file)
    run.set_tag(MODEL_TAG, file_md5(model_file))
    return log_round_model(run, model, data, round_name, image_size, channels)


class Probabilities(torch.nn.Module):
    """A classifier whose output is its softmax: what a served model answers (one probability per class)."""

    def __init__(self, classifier: torch.nn.Module):
        super().__init__()
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.classifier(x), dim=1)


def log_round_model(
    run: StageRun,
    model: Classifier,
    data: Prepared,
    round_name: str,
    image_size: int,
    channels: int,
    register: tuple[str, str] | None = None,
) -> str:
    """Log a round's model, ending in a softmax (`Probabilities`), with the first labeled images as its input
    example (float32 N, C, H, W in [0, 1]) and the metadata `predict` needs; with `register=(name, alias)`
    also register it, tagged with its round and data hashes. Returns its URI."""
    index = data.split("labeled").index[:EXAMPLE_IMAGES]
    example = np.ascontiguousarray(to_tensor(data.images[index]).numpy())
    metadata = {
        "classes": data.classes, "image_size": image_size, "channels": channels, "round": round_name,
        "outputs": OUTPUTS,
    }  # fmt: skip
    uri = run.log_model(Probabilities(model), example, metadata)
    if register is not None:
        name, alias = register
        tags = {"round": round_name, "run_id": run.run_id}
        tags.update({k: v for k, v in run.tags.items() if k.startswith("data_hash.") or k == "git_commit"})
        version = register_model(uri, name, alias, tags)
        print(f"{round_name}: registered as {name} version {version} (alias {alias})")
    return uri


def model_uri(model: str) -> str:
    """'name@alias', 'name/version' or a full 'models:/…' or 'runs:/…' URI -> an MLflow model URI."""
    return model if ":/" in model else f"models:/{model}"


def load_registered(model: str) -> tuple[torch.nn.Module, dict]:
    """The model and its metadata (classes, image_size, channels, round) from the tracking server."""
    import mlflow.pytorch
    from mlflow.models import get_model_info

    uri = model_uri(model)
    metadata = get_model_info(uri).metadata or {}
    missing = {"classes", "image_size", "channels"} - set(metadata)
    if missing:
        raise ValueError(f"{uri} was not logged by this pipeline: its metadata lacks {sorted(missing)}")
    return mlflow.pytorch.load_model(uri), metadata


def predict_folder(
    model: torch.nn.Module, metadata: dict, folder: Path, batch_size: int = 256
) -> pd.DataFrame:
    """One row per file under `folder` (any nesting): path, label, confidence, status, reason.

    Images are decoded exactly as `prepare` decodes them; a file that cannot be decoded gets status 'error'
    and the reason, not a crash; a FIFO, socket or device file gets 'special', unread. Hidden files
    (.DS_Store, …) are skipped.
    """
    files = [f for f in scan_folder(Path(folder), "unlabeled") if not Path(f.path).name.startswith(".")]
    rows, pixels = [], []
    for f in files:
        try:
            img, _, _ = decode_image(f.read_bytes(), metadata["image_size"], metadata["channels"])
            pixels.append(img)
            rows.append({"path": f.path, "status": "ok", "reason": ""})
        except NotRegularFile as err:  # a FIFO, socket or device file: never read
            rows.append({"path": f.path, "status": "special", "reason": str(err)})
        except Exception as err:  # noqa: BLE001 - any decoder failure is reported per file
            rows.append({"path": f.path, "status": "error", "reason": decode_error_reason(err)})
    frame = pd.DataFrame(rows, columns=["path", "status", "reason"])
    frame["label"], frame["confidence"] = "", float("nan")
    if pixels:
        images, classes = np.stack(pixels), metadata["classes"]
        outputs = batched_outputs(
            lambda x: {"out": model(x)}, {"out": len(classes)}, images, np.arange(len(images)), batch_size
        )["out"]
        # models logged before their softmax was part of them answer logits
        probs = outputs if metadata.get("outputs") == OUTPUTS else softmax(outputs)
        ok = frame["status"] == "ok"
        frame.loc[ok, "label"] = np.asarray(metadata["classes"])[probs.argmax(axis=1)]
        frame.loc[ok, "confidence"] = probs.max(axis=1)
    return frame[["path", "label", "confidence", "status", "reason"]]
