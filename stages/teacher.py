"""DVC stage `teacher` (round r0): encoder + linear head on the labeled images, a linear probe, fine-tuned or
from scratch: the best on the validation images, or without them by cross-fitting the labeled images."""

from dataclasses import asdict

from pipeline import artifacts
from pipeline.checkpoint import load_encoder, save_round_model
from pipeline.config.common import TEACHER_ROUND
from pipeline.config.teacher import TeacherParams
from pipeline.data.store import load_prepared
from pipeline.data.validation import split_validation
from pipeline.models import Architecture, build_classifier
from pipeline.serving import log_round
from pipeline.stage import run_stage, start, training_stage
from pipeline.training.teacher import train_teacher


def main() -> None:
    params, _ = start(__doc__, TeacherParams)
    cfg, paths, data = params.teacher, params.paths, load_prepared(params.paths.prepared)
    labeled, validation = split_validation(data.split("labeled"), params.validation, params.seed)
    encoder, ssl_ckpt = load_encoder(artifacts.encoder(paths))
    arch = Architecture(**{**ssl_ckpt["arch"], "num_classes": len(data.classes), "dropout": cfg.dropout})
    model = build_classifier(arch, data.stats["mean"], data.stats["std"])
    kept = {}  # the TeacherChoice: probe, finetune or scratch, and how it was chosen

    def train(setup) -> None:
        kept["choice"] = train_teacher(model=model, images=data.images, labeled=labeled, cfg=cfg, setup=setup,
                                       validation=validation, encoder=encoder)  # fmt: skip

    def save(run) -> None:
        out, choice = artifacts.round_model(paths, TEACHER_ROUND), kept["choice"]
        run.set_tag("teacher_mode", choice.describe())
        config, selection = params.model_dump(), asdict(choice)  # evaluate checks a cross-fitted teacher
        save_round_model(out, model, arch, data.classes, TEACHER_ROUND, config, selection=selection)
        log_round(run, model, out, data, TEACHER_ROUND, params.data.image_size, params.data.channels)

    training_stage(
        params, "teacher", TEACHER_ROUND, inputs=[artifacts.manifest(paths), artifacts.encoder(paths)],
        logged={"teacher": cfg.model_dump(), "model": arch.to_dict()}, train=train, save=save,
    )  # fmt: skip


if __name__ == "__main__":
    run_stage(main)
