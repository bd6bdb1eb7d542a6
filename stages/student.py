"""DVC stage `student@<round>`: a noisy student trained on labeled + accepted pseudo-labels.

Noise: strong augmentation, dropout, stochastic depth; loss adds confidence-weighted pseudo-label
cross-entropy and entropy minimization on unlabeled images that passed the OOD filter.
"""

from pathlib import Path

from pipeline.checkpoint import load_classifier, load_encoder, save_round_model
from pipeline.compute import resolve_compute
from pipeline.data.store import load_prepared
from pipeline.distributed import init_world
from pipeline.models import Architecture, build_classifier
from pipeline.pseudo.report import read_training_table, training_targets
from pipeline.resume import stage_resume_point
from pipeline.serving import log_round_model
from pipeline.stage import start
from pipeline.tracking import stage_run
from pipeline.train import fit_student, seed_everything


def main() -> None:
    params, round_name = start(__doc__, with_round=True)
    _, cfg = params.round_config(round_name)
    paths, prev = params.paths, params.rounds[round_name].prev
    seed_everything(params.seed)
    data = load_prepared(paths.prepared)
    labeled = data.split("labeled")
    table = read_training_table(Path(paths.pseudolabels) / f"{round_name}.parquet")
    pseudo = training_targets(table, data.classes, cfg.hard_labels)
    arch = Architecture(
        channels=params.data.channels,
        width=cfg.width,
        depth=cfg.depth,
        num_classes=len(data.classes),
        dropout=cfg.dropout,
        stochastic_depth=cfg.stochastic_depth,
    )
    model = build_classifier(arch, data.stats["mean"], data.stats["std"])
    if cfg.init == "ssl":
        encoder, _ = load_encoder(Path(paths.encoder) / "encoder.pt")
        model.encoder.load_state_dict(encoder.state_dict())
    elif cfg.init == "previous":
        previous, _ = load_classifier(Path(paths.rounds) / prev / "model.pt")
        model.load_state_dict(previous.state_dict())

    inputs = [
        Path(paths.prepared) / "manifest.parquet",
        Path(paths.pseudolabels) / f"{round_name}.parquet",
        Path(paths.encoder) / "encoder.pt",
        Path(paths.rounds) / prev / "model.pt",
    ]
    compute = resolve_compute(params.compute)
    world = init_world(compute)  # one process, or one of several under torchrun
    resume = stage_resume_point(
        params, f"student@{round_name}", inputs, params.checkpoints.every_steps, world
    )

    def train(log) -> None:
        image_size, seed = params.data.image_size, params.seed
        fit_student(
            model, data.images, labeled, pseudo, cfg, image_size, seed, log, resume, world=world,
            compute=compute,
        )  # fmt: skip

    if not world.main:  # another torchrun process: train its share of each batch, write nothing
        train(log=lambda metrics, step: None)
        return world.close()
    logged = {"student": cfg.model_dump(), "prev": prev, "model": arch.to_dict()}
    final = round_name == params.round_order()[-1]  # the final student goes to the model registry
    with stage_run(params, "student", round_name, logged, system_metrics=True) as run:
        train(log=run.log)
        out = save_round_model(paths.rounds, round_name, model, arch, data.classes, params.model_dump())
        run.log_artifact(out)
        registry = (params.mlflow.registered_model, params.mlflow.alias) if final else None
        log_round_model(run, model, data, round_name, params.data.image_size, params.data.channels, registry)
    resume.clear()
    world.close()


if __name__ == "__main__":
    main()
