"""DVC stage `teacher`: SSL encoder + linear head, fine-tuned on the labeled images (round r0)."""

from pipeline import artifacts
from pipeline.checkpoint import load_encoder, save_round_model
from pipeline.config.common import TEACHER_ROUND
from pipeline.config.teacher import TeacherParams
from pipeline.data.store import load_prepared
from pipeline.models import Architecture, build_classifier
from pipeline.serving import log_round_model
from pipeline.stage import start, training_stage
from pipeline.training.teacher import fit_teacher


def main() -> None:
    params, _ = start(__doc__, TeacherParams)
    cfg, paths = params.teacher, params.paths
    data = load_prepared(paths.prepared)
    encoder, ssl_ckpt = load_encoder(artifacts.encoder(paths))
    arch = Architecture(**{**ssl_ckpt["arch"], "num_classes": len(data.classes), "dropout": cfg.dropout})
    model = build_classifier(arch, data.stats["mean"], data.stats["std"])
    model.encoder.load_state_dict(encoder.state_dict())

    def train(setup) -> None:
        fit_teacher(model=model, images=data.images, labeled=data.split("labeled"), cfg=cfg, setup=setup)

    def save(run) -> None:
        out = artifacts.round_model(paths, TEACHER_ROUND)
        save_round_model(out, model, arch, data.classes, TEACHER_ROUND, params.model_dump())
        run.log_artifact(out)
        log_round_model(run, model, data, TEACHER_ROUND, params.data.image_size, params.data.channels)

    training_stage(
        params, "teacher", TEACHER_ROUND, inputs=[artifacts.manifest(paths), artifacts.encoder(paths)],
        logged={"teacher": cfg.model_dump(), "model": arch.to_dict()}, train=train, save=save,
    )  # fmt: skip


if __name__ == "__main__":
    main()
