"""DVC stage `pretrain`: self-supervised pretraining of the encoder on labeled + unlabeled images."""

import numpy as np

from pipeline import artifacts
from pipeline.checkpoint import save_model
from pipeline.config.pretrain import PretrainParams
from pipeline.data.store import load_prepared
from pipeline.files import write_csv, write_json
from pipeline.models import initial_encoder
from pipeline.resume import stage_resume_point
from pipeline.ssl.pretrain import epoch_table, knn_monitor, pretrain, pretraining_warnings, warm_start
from pipeline.ssl.registry import check_methods, method_settings
from pipeline.stage import loop_setup, run_stage, start
from pipeline.tracking import stage_run


def main() -> None:
    # one process: the momentum encoders and queues of the SSL methods are not sharded
    params, _ = start(__doc__, PretrainParams, check=lambda p: check_methods(p.pretrain), torchrun=False)
    cfg, paths, data = params.pretrain, params.paths, load_prepared(params.paths.prepared)
    # from model.weights when set (pretrain.method none keeps them as they are), else at random
    encoder, arch = initial_encoder(params.model, params.data.channels, params.data.image_size, data.stats)
    cfg, how = warm_start(encoder, arch, cfg, artifacts.encoder(paths))  # pretrain.warm_start
    print(f"pretrain: {how}")
    resume = stage_resume_point(params, "pretrain", [artifacts.manifest(paths)], every=1)  # every epoch
    logged = {"pretrain": cfg.model_dump(exclude={"methods"}), **method_settings(cfg),
              "model": params.model.model_dump()}  # fmt: skip
    with stage_run(params, "pretrain", logged=logged, system_metrics=True, tags={"start": how}) as run:
        epochs = pretrain(
            encoder=encoder, images=data.images, cfg=cfg, monitor=knn_monitor(data, cfg, params.seed),
            index=np.concatenate([data.split("labeled").index, data.split("unlabeled").index]),
            setup=loop_setup(params, resume, run.log),
        )  # fmt: skip
        run.warn(pretraining_warnings(epochs, len(data.classes)))
        save_model(artifacts.encoder(paths), encoder, arch, config=params.model_dump())
        run.log_artifact(artifacts.encoder(paths))
    write_json(artifacts.metrics(paths, "pretrain"), epochs[-1][0] if epochs else {})
    write_csv(artifacts.plot(paths, "pretrain"), epoch_table(epochs))
    resume.clear()


if __name__ == "__main__":
    run_stage(main)
