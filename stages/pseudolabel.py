"""DVC stage `pseudolabel@<round>`: the previous round's model labels the unlabeled pool.

Soft labels at a temperature, an OOD score per image with a threshold calibrated on labeled images,
acceptance and weights by `pseudolabel.mode`; writes one parquet row per unlabeled image. Under torchrun the
predictions over the pool are sharded across the processes (TTA draws then differ from one process's).
"""

from pathlib import Path

import numpy as np

from pipeline.checkpoint import load_classifier, load_encoder
from pipeline.compute import resolve_compute
from pipeline.data.store import load_prepared
from pipeline.distributed import init_world
from pipeline.figures import pseudo_label_figures
from pipeline.files import atomic_write
from pipeline.pseudo.ood import calibrate_ood_threshold, ood_scores
from pipeline.pseudo.report import pseudo_label_stats, pseudo_label_table, read_analysis_labels
from pipeline.pseudo.select import select_pseudo_labels
from pipeline.ssl import encode
from pipeline.stage import start
from pipeline.tracking import stage_run
from pipeline.train import predict, seed_everything, tta_probabilities


def main() -> None:
    params, round_name = start(__doc__, with_round=True)
    cfg, _ = params.round_config(round_name)
    paths, prev = params.paths, params.rounds[round_name].prev
    seed_everything(params.seed)
    data = load_prepared(paths.prepared)
    labeled, pool = data.split("labeled"), data.split("unlabeled")
    teacher, _ = load_classifier(Path(paths.rounds) / prev / "model.pt")
    ood = cfg.ood

    # Predictions over the pool: under torchrun each process takes a contiguous chunk, gathered in order.
    compute = resolve_compute(params.compute)
    world = init_world(compute)
    chunk = world.chunk(pool.index)
    logits, features = predict(teacher, data.images, chunk, cfg.batch_size, compute)
    probs = tta_probabilities(
        teacher, data.images, chunk, logits, cfg.temperature, cfg.tta, params.data.image_size,
        params.seed, cfg.batch_size, compute,
    )  # fmt: skip
    if ood.method == "knn":  # distances in the SSL embedding, not the teacher's
        encoder, _ = load_encoder(Path(paths.encoder) / "encoder.pt")
        features = encode(encoder, data.images, chunk, compute=compute).numpy()
    probs, features = world.gather(probs), world.gather(features)
    world.close()
    if not world.main:  # the other processes are done: rank 0 selects, writes and logs
        return

    with stage_run(params, "pseudolabel", round_name, {"pseudolabel": cfg.model_dump(), "prev": prev}) as run:
        if ood.method == "none":
            scores, held_out, threshold = np.zeros(len(pool.index)), np.zeros(0), float("inf")
        else:
            if ood.method == "knn":
                reference = encode(encoder, data.images, labeled.index, compute=compute).numpy()
            else:
                _, reference = predict(teacher, data.images, labeled.index, cfg.batch_size, compute)
            scores, held_out = ood_scores(
                ood.method, features, reference, labeled.labels, len(data.classes),
                ood.k, ood.shrinkage, ood.folds, params.seed,
            )  # fmt: skip
            threshold = calibrate_ood_threshold(held_out, ood.keep_quantile)
        selection = select_pseudo_labels(
            probs, scores <= threshold, cfg.mode, cfg.threshold, cfg.weighting, cfg.per_class
        )
        table = pseudo_label_table(round_name, pool, probs, selection, scores, data.classes)
        stats = pseudo_label_stats(table, data.classes, read_analysis_labels(paths.analysis))
        stats["ood/threshold"] = threshold if np.isfinite(threshold) else -1.0
        run.log(stats, params.round_order().index(round_name))
        out = Path(paths.pseudolabels) / f"{round_name}.parquet"
        atomic_write(out, lambda p: table.to_parquet(p, index=False))
        run.log_artifact(out)
        figures = pseudo_label_figures(table, data.images, data.classes, held_out, threshold, round_name)
        for name, figure in figures.items():
            run.log_figure(figure, name)
    print(
        f"{round_name}: {int(stats['pl/accepted'])}/{len(table)} accepted, {int(stats['ood/rejected'])} OOD, "
        f"precision {stats.get('pl/precision', float('nan')):.3f}"
    )


if __name__ == "__main__":
    main()
