"""DVC stage `prepare`: image folders -> manifest.parquet + images.npy (decoded once) + metrics."""

import sys
from pathlib import Path

from pipeline import artifacts
from pipeline.config.common import Common
from pipeline.data.prepare import DataError, prepare, print_report
from pipeline.files import write_json
from pipeline.provenance import dvc_data_hash
from pipeline.stage import run_stage, start
from pipeline.tracking import stage_run


def main() -> None:
    params, _ = start(__doc__, Common)
    paths = params.paths
    roots = {"labeled": Path(paths.labeled), "unlabeled": Path(paths.unlabeled), "test": Path(paths.test)}
    versions = {split: dvc_data_hash(folder) for split, folder in roots.items()}
    with stage_run(params, "prepare", logged={"data": params.data.model_dump()}) as run:
        try:
            result = prepare(
                roots, Path(paths.prepared), params.data.image_size, params.data.channels, versions=versions,
                file_hashes=artifacts.prepare_file_hashes(params.checkpoints),
            )  # fmt: skip
        except DataError as err:  # checked before anything is written
            sys.exit(f"error: {err}")
        run.log({**result.counts, "prepare/decoded": result.decoded, "prepare/reused": result.reused}, 0)
        write_json(artifacts.metrics(paths, "prepare"), result.counts)
    print_report(result)


if __name__ == "__main__":
    run_stage(main)
