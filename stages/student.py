"""DVC stage `student@<round>`: a noisy student (strong augmentation, dropout, stochastic depth) trained on
labeled images and the round's pseudo-labels, with entropy minimization (pipeline.training.student)."""

from pipeline import artifacts
from pipeline.checkpoint import save_round_model
from pipeline.config.student import StudentParams
from pipeline.data.store import load_prepared
from pipeline.data.validation import split_validation
from pipeline.pseudo.targets import read_training_table, training_targets
from pipeline.serving import log_round
from pipeline.stage import run_stage, start, training_stage
from pipeline.training.student import build_student, fit_student


def main() -> None:
    params, round_name = start(__doc__, StudentParams, with_round=True)
    cfg, paths, prev = params.round_config(round_name), params.paths, params.rounds[round_name].prev
    data = load_prepared(paths.prepared)
    labeled, _ = split_validation(
        data.split("labeled"), params.validation, params.seed
    )  # validation: evaluate
    table = read_training_table(artifacts.pseudo_labels(paths, round_name))
    inputs = [artifacts.manifest(paths), artifacts.pseudo_labels(paths, round_name), artifacts.encoder(paths),
              artifacts.round_model(paths, prev)]  # fmt: skip
    model = build_student(cfg=cfg, num_classes=len(data.classes), stats=data.stats, encoder_file=inputs[2],
                          previous_file=inputs[3])  # fmt: skip

    def train(setup) -> None:
        pseudo = training_targets(table, data.classes, cfg.hard_labels)
        fit_student(model=model, images=data.images, labeled=labeled, pseudo=pseudo, cfg=cfg, setup=setup)

    def save(run) -> None:  # evaluate registers the round promoted by validation
        out = artifacts.round_model(paths, round_name)
        save_round_model(out, model, model.arch, data.classes, round_name, params.model_dump())
        log_round(run, model, out, data, round_name, params.data.image_size, params.data.channels)

    logged = {"student": cfg.model_dump(), "prev": prev, "model": model.arch.to_dict()}
    training_stage(params, "student", round_name, inputs=inputs, logged=logged, train=train, save=save)


if __name__ == "__main__":
    run_stage(main)
