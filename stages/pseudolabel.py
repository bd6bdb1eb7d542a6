"""DVC stage `pseudolabel@<round>`: the previous round's model labels the unlabeled pool: soft labels, the
OOD filter, acceptance and weights by `pseudolabel.mode` (pipeline.pseudo.pool); one parquet row per image."""

from pipeline import artifacts
from pipeline.checkpoint import load_classifier, load_encoder
from pipeline.compute import resolve_compute
from pipeline.config.pseudolabel import PseudolabelParams
from pipeline.data.store import load_prepared
from pipeline.distributed import init_world
from pipeline.figures import pseudo_label_figures
from pipeline.files import write_parquet
from pipeline.pseudo.pool import label_pool, predict_pool
from pipeline.pseudo.report import read_analysis_labels
from pipeline.stage import run_stage, start
from pipeline.tracking import stage_run


def main() -> None:
    params, round_name = start(__doc__, PseudolabelParams, with_round=True)
    cfg, paths, prev = params.round_config(round_name), params.paths, params.rounds[round_name].prev
    data, compute = load_prepared(paths.prepared), resolve_compute(params.compute)
    teacher, _ = load_classifier(artifacts.round_model(paths, prev))
    encoder, _ = load_encoder(artifacts.encoder(paths))
    world = init_world(compute)  # under torchrun the processes share the predictions over the pool
    pool = predict_pool(
        teacher=teacher, encoder=encoder, images=data.images, index=data.split("unlabeled").index, cfg=cfg,
        image_size=params.data.image_size, seed=params.seed, compute=compute, world=world,
    )  # fmt: skip
    world.close()
    if not world.main:  # the other processes are done: rank 0 selects, writes and logs
        return
    with stage_run(params, "pseudolabel", round_name, {"pseudolabel": cfg.model_dump(), "prev": prev}) as run:
        labels = label_pool(
            round_name=round_name, cfg=cfg, pool=pool, teacher=teacher, encoder=encoder,
            data=data, truth=read_analysis_labels(paths.analysis), seed=params.seed, compute=compute,
        )  # fmt: skip
        run.log(labels.stats, params.round_order().index(round_name))
        run.warn(labels.ood.warnings(round_name))  # a pool unlike the labeled images
        run.log_artifact(write_parquet(artifacts.pseudo_labels(paths, round_name), labels.table))
        run.log_figures(pseudo_label_figures(labels.table, data.images, data.classes, labels.ood, round_name))
    print(labels.describe(round_name))


if __name__ == "__main__":
    run_stage(main)
