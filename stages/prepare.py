"""DVC stage `prepare`: image folders -> manifest.parquet + images.npy (decoded once) + metrics."""

import sys
from pathlib import Path

from rich import print

from pipeline.data.prepare import DataError, prepare
from pipeline.files import write_json
from pipeline.stage import start
from pipeline.tracking import dvc_data_hash, stage_run


def main() -> None:
    params, _ = start(__doc__)
    paths = params.paths
    roots = {"labeled": Path(paths.labeled), "unlabeled": Path(paths.unlabeled), "test": Path(paths.test)}
    versions = {split: dvc_data_hash(folder) for split, folder in roots.items()}
    with stage_run(params, "prepare", logged={"data": params.data.model_dump()}) as run:
        try:
            result = prepare(
                roots,
                Path(paths.prepared),
                params.data.image_size,
                params.data.channels,
                versions=versions,
                file_hashes=Path(params.checkpoints.dir) / "prepare_file_hashes.parquet",  # local state
            )
        except DataError as err:  # checked before anything is written
            sys.exit(f"error: {err}")
        run.log({**result.counts, "prepare/decoded": result.decoded, "prepare/reused": result.reused}, 0)
        write_json(Path(paths.metrics) / "prepare.json", result.counts)
    manifest = result.manifest
    problems = manifest[manifest["status"] != "ok"]
    print(
        f"prepare: {len(manifest) - len(problems)} images stored ({result.decoded} decoded, "
        f"{result.reused} unchanged from the last run), {len(problems)} excluded "
        f"({problems['status'].value_counts().to_dict()})"
    )
    for row in problems.head(10).itertuples():
        print(f"  {row.split}/{row.path}: {row.status}: {row.reason}")


if __name__ == "__main__":
    main()
