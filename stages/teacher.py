"""DVC stage `teacher`: SSL encoder + linear head, fine-tuned on the labeled images (round r0)."""

from pathlib import Path

from pipeline.checkpoint import load_encoder, save_round_model
from pipeline.compute import resolve_compute
from pipeline.config import TEACHER_ROUND
from pipeline.data.store import load_prepared
from pipeline.distributed import init_world
from pipeline.models import Architecture, build_classifier
from pipeline.resume import stage_resume_point
from pipeline.serving import log_round_model
from pipeline.stage import start
from pipeline.tracking import stage_run
from pipeline.train import fit_teacher, seed_everything


def main() -> None:
    params, _ = start(__doc__)
    cfg, paths = params.teacher, params.paths
    seed_everything(params.seed)
    data = load_prepared(paths.prepared)
    labeled = data.split("labeled")
    encoder, ssl_ckpt = load_encoder(Path(paths.encoder) / "encoder.pt")
    arch = Architecture(**{**ssl_ckpt["arch"], "num_classes": len(data.classes), "dropout": cfg.dropout})
    model = build_classifier(arch, data.stats["mean"], data.stats["std"])
    model.encoder.load_state_dict(encoder.state_dict())

    compute = resolve_compute(params.compute)
    world = init_world(compute)  # one process, or one of several under torchrun
    inputs = [Path(paths.prepared) / "manifest.parquet", Path(paths.encoder) / "encoder.pt"]
    resume = stage_resume_point(params, "teacher", inputs, params.checkpoints.every_steps, world)

    def train(log) -> None:
        image_size, seed = params.data.image_size, params.seed
        fit_teacher(
            model, data.images, labeled, cfg, image_size, seed, log, resume, world=world, compute=compute
        )

    if not world.main:  # another torchrun process: train its share of each batch, write nothing
        train(log=lambda metrics, step: None)
        return world.close()
    logged = {"teacher": cfg.model_dump(), "model": arch.to_dict()}
    with stage_run(params, "teacher", TEACHER_ROUND, logged, system_metrics=True) as run:
        train(log=run.log)
        out = save_round_model(paths.rounds, TEACHER_ROUND, model, arch, data.classes, params.model_dump())
        run.log_artifact(out)
        log_round_model(run, model, data, TEACHER_ROUND, params.data.image_size, params.data.channels)
    resume.clear()
    world.close()


if __name__ == "__main__":
    main()
