"""DVC stage `pretrain`: self-supervised pretraining of the encoder on labeled + unlabeled images."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.checkpoint import save_model
from pipeline.compute import resolve_compute
from pipeline.data.store import load_prepared
from pipeline.distributed import init_world
from pipeline.files import write_csv, write_json
from pipeline.models import Architecture, build_encoder
from pipeline.resume import stage_resume_point
from pipeline.ssl import KnnMonitor, pretrain
from pipeline.stage import start
from pipeline.tracking import stage_run
from pipeline.train import seed_everything


def main() -> None:
    params, _ = start(__doc__)
    if init_world().size > 1:
        sys.exit("error: pretrain runs in one process (its momentum encoders and queues are not sharded yet)")
    cfg, paths = params.pretrain, params.paths
    seed_everything(params.seed)
    data = load_prepared(paths.prepared)
    labeled, unlabeled, test = data.split("labeled"), data.split("unlabeled"), data.split("test")
    pick = np.random.default_rng(params.seed).permutation(len(test.index))[: cfg.knn_test_images]
    monitor = KnnMonitor(labeled.index, labeled.labels, test.index[pick], test.labels[pick], cfg.knn_k)
    arch = Architecture(channels=params.data.channels, width=params.model.width, depth=params.model.depth)
    encoder = build_encoder(arch, data.stats["mean"], data.stats["std"])
    history: list[dict] = []
    resume = stage_resume_point(
        params, "pretrain", [Path(paths.prepared) / "manifest.parquet"], every=1
    )  # one per epoch

    logged = {
        "pretrain": cfg.model_dump(exclude={"methods"}),
        cfg.method: cfg.method_config().model_dump(),
        "model": params.model.model_dump(),
    }
    with stage_run(params, "pretrain", logged=logged, system_metrics=True) as run:

        def log(metrics: dict[str, float], step: int) -> None:
            run.log(metrics, step)
            history.append({"epoch": step, **{k.replace("/", "_"): v for k, v in metrics.items()}})

        train_index = np.concatenate([labeled.index, unlabeled.index])
        summary = pretrain(
            encoder, data.images, train_index, cfg, params.data.image_size, params.seed, monitor, log, resume,
            resolve_compute(params.compute),
        )  # fmt: skip
        out = Path(paths.encoder) / "encoder.pt"
        save_model(out, encoder, arch, config=params.model_dump(), epochs=cfg.epochs)
        run.log_artifact(out)
    write_json(Path(paths.metrics) / "pretrain.json", summary)
    write_csv(Path(paths.plots) / "pretrain.csv", pd.DataFrame(history))
    resume.clear()


if __name__ == "__main__":
    main()
