"""Command line: `python -m pipeline demo-data | add-unlabeled | summary | compare | predict`."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from pipeline.data.demo import DEBIAN_IDX_DIR, export_demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pipeline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo-data", help="export Fashion-MNIST into data/{labeled,unlabeled,test}")
    demo.add_argument("--out", type=Path, default=Path("data"))
    demo.add_argument("--idx-dir", type=Path, default=DEBIAN_IDX_DIR, help="folder with the four IDX files")
    demo.add_argument("--labels-per-class", type=int, default=4)
    demo.add_argument("--unlabeled", type=int, default=20_000)
    demo.add_argument("--test", type=int, default=None, help="test images (default: all 10 000)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--force", action="store_true", help="replace existing demo folders")
    demo.add_argument("--classes", nargs="+", default=None, help="label and test only these classes")
    demo.add_argument("--mismatch", type=float, default=0.0, help="share of unlabeled from other classes")
    demo.add_argument("--far-ood", type=int, default=0, help="rendered digit images added to unlabeled")
    check = sub.add_parser("check", help="validate every section of params.yaml (each stage checks its own)")
    check.add_argument("--params", type=Path, default=Path("params.yaml"))
    summary = sub.add_parser("summary", help="print the rounds table of the last `dvc repro`")
    summary.add_argument("--params", type=Path, default=Path("params.yaml"))
    add = sub.add_parser("add-unlabeled", help="validate, de-duplicate and copy new images, then dvc add")
    add.add_argument("sources", nargs="+", type=Path, help="image files or folders (any nesting)")
    add.add_argument("--params", type=Path, default=Path("params.yaml"))
    add.add_argument(
        "--into", default=None, help="folder under the unlabeled one (default: added-<UTC time>)"
    )
    add.add_argument("--no-dvc", action="store_true", help="copy only; do not run `dvc add`")
    compare = sub.add_parser("compare", help="rounds of the latest pipeline run, or of two side by side")
    compare.add_argument("runs", nargs="*", help="pipeline (parent) run ids or prefixes; default: the latest")
    compare.add_argument("--params", type=Path, default=Path("params.yaml"))
    compare.add_argument("--plot", type=Path, default=Path("compare_rounds.png"), help="the plot's file")
    compare.add_argument(
        "--changes", metavar="ROUND", help="what ROUND changed against its previous round (pseudolabels/)"
    )
    predict = sub.add_parser("predict", help="label a folder of images with a registered model into a CSV")
    predict.add_argument("folder", type=Path, help="images (any nesting, any format PIL reads)")
    predict.add_argument(
        "--model", required=True, help="registered model: NAME@ALIAS or NAME/VERSION (or a models:/ URI)"
    )
    predict.add_argument("--out", type=Path, default=Path("predictions.csv"))
    args = parser.parse_args(argv)

    if args.command == "compare" and args.changes:
        changes_command(args.changes, args.params)
    elif args.command == "compare":
        compare_command(args.runs, args.params, args.plot)
    if args.command == "predict":
        predict_command(args.folder, args.model, args.out)

    if args.command == "check":
        check_command(args.params)
    if args.command == "summary":
        print_summary(args.params)
    if args.command == "add-unlabeled":
        add_unlabeled_command(args.sources, args.params, args.into, not args.no_dvc)

    if args.command == "demo-data":
        try:
            counts = export_demo(
                args.out,
                args.idx_dir,
                args.labels_per_class,
                args.unlabeled,
                args.test,
                args.seed,
                args.force,
                args.classes,
                args.mismatch,
                args.far_ood,
            )
        except (FileNotFoundError, FileExistsError, ValueError) as err:
            sys.exit(f"error: {err}")
        print(f"demo data in {args.out}: " + ", ".join(f"{n:,} {k}" for k, n in counts.items()))


def print_summary(params_file: Path) -> None:
    """The rounds table: metrics/eval.json of the last evaluation, and the latest MLflow run of each round."""
    from pipeline.config.base import ConfigError, load_params
    from pipeline.config.common import Common
    from pipeline.summary import print_table, promotion_caption, rounds_table, summary_rows
    from pipeline.tracking import latest_round_runs

    try:
        params = load_params(params_file, Common)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    eval_file = Path(params.paths.metrics) / "eval.json"
    if not eval_file.is_file():
        sys.exit(f"error: {eval_file} not found; run `dvc repro` first")
    results = json.loads(eval_file.read_text())
    run_ids = latest_round_runs(params.mlflow.experiment)
    order = params.round_order()
    print_table(rounds_table(summary_rows(results, order, run_ids), promotion_caption(results, order)))


def check_command(params_file: Path) -> None:
    """Validate the whole params file: every section, every SSL method's settings and every round's
    overrides; exit naming the first bad key."""
    from pipeline.config.base import ConfigError
    from pipeline.config.full import load_params
    from pipeline.ssl.registry import check_methods

    try:
        params = load_params(params_file)
        check_methods(params.pretrain)
        for name in params.rounds:
            params.round_config(name)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    print(f"{params_file}: valid ({len(params.rounds)} rounds, pretrain.method {params.pretrain.method})")


def checked_tracking_uri() -> str:
    """The tracking URI the stages use; raises TrackingUnreachable within seconds when its server is down."""
    from pipeline.tracking import check_tracking_uri, project_root, tracking_uri

    uri = tracking_uri(project_root())
    check_tracking_uri(uri)
    return uri


def compare_command(run_ids: list[str], params_file: Path, plot: Path) -> None:
    """Print the rounds table of pipeline run(s) from MLflow and write the per-round plot."""
    from mlflow import MlflowClient

    from pipeline.compare import compare_table, find_pipelines, rounds_from_metrics
    from pipeline.config.base import ConfigError, load_params
    from pipeline.config.common import Common
    from pipeline.figures import compare_figure
    from pipeline.summary import print_table
    from pipeline.tracking import TrackingUnreachable

    try:
        uri = checked_tracking_uri()
        params = load_params(params_file, Common)
        runs = find_pipelines(MlflowClient(uri), params.mlflow.experiment, run_ids)
    except (ConfigError, TrackingUnreachable, LookupError) as err:
        sys.exit(f"error: {err}")
    if not runs:  # e.g. a fresh clone whose `dvc repro` reran nothing: the evaluation git holds
        eval_file = Path(params.paths.metrics) / "eval.json"
        if not eval_file.is_file():
            sys.exit(f"error: no evaluated pipeline run in MLflow ({uri}) nor {eval_file}; run `dvc repro`")
        results = json.loads(eval_file.read_text())
        name = f"{eval_file} (no evaluated pipeline run in MLflow at {uri})"
        runs = [rounds_from_metrics(results, params.round_order(), name)]
    print_table(compare_table(runs))
    compare_figure(runs).savefig(plot, dpi=110)
    print(f"plot: {plot}")


def changes_command(round_name: str, params_file: Path) -> None:
    """Print what a round changed against its previous round, per class, from the two rounds' pseudo-label
    tables (no MLflow needed)."""
    from pipeline import artifacts
    from pipeline.config.base import ConfigError, load_params
    from pipeline.config.common import Common
    from pipeline.data.store import CLASSES
    from pipeline.pseudo.changes import compared_round, load_round_changes
    from pipeline.pseudo.report import read_analysis_labels
    from pipeline.summary import changes_tables, print_table

    try:
        params = load_params(params_file, Common)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    prev = compared_round(params.rounds, round_name)
    if prev is None:
        comparable = [name for name in params.rounds if compared_round(params.rounds, name)]
        sys.exit(f"error: {round_name} has no pseudo-labeled previous round to compare with (rounds that "
                 f"have one: {', '.join(comparable) or 'none'})")  # fmt: skip
    paths = params.paths
    files = [artifacts.pseudo_labels(paths, name) for name in (prev, round_name)]
    missing = [str(f) for f in [*files, Path(paths.prepared) / CLASSES] if not Path(f).is_file()]
    if missing:
        sys.exit(f"error: {', '.join(missing)} not found; run `dvc repro` (or `dvc pull`) first")
    classes = json.loads((Path(paths.prepared) / CLASSES).read_text())
    changes = load_round_changes(*files, classes, read_analysis_labels(paths.analysis))
    for table in changes_tables(changes, round_name, prev):
        print_table(table)
    print(changes.describe(round_name, prev))


def predict_command(folder: Path, model: str, out: Path) -> None:
    """Label every image under `folder` with a registered model; write path,label,confidence,status,reason."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from pipeline.files import write_csv
    from pipeline.serving import load_registered, predict_folder
    from pipeline.tracking import TrackingUnreachable

    try:
        mlflow.set_tracking_uri(checked_tracking_uri())
        loaded, metadata = load_registered(model)
        frame = predict_folder(loaded, metadata, folder)
    except (TrackingUnreachable, MlflowException, FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")
    write_csv(out, frame)
    errors = int((frame["status"] != "ok").sum())
    print(f"predict: {len(frame) - errors} images labeled, {errors} unreadable -> {out}")


SHOWN = 5  # files listed per kind of problem by add-unlabeled


def add_unlabeled_command(sources: list[Path], params_file: Path, into: str | None, dvc: bool) -> None:
    """Copy the new images among `sources` into paths.unlabeled and track the folder with `dvc add`."""
    from pipeline.config.base import ConfigError, load_params
    from pipeline.config.common import Common
    from pipeline.data.add import add_unlabeled, known_hashes

    try:
        paths = load_params(params_file, Common).paths
        unlabeled = Path(paths.unlabeled)
        known = known_hashes([Path(paths.labeled), unlabeled, Path(paths.test)])
        into = into or time.strftime("added-%Y%m%d-%H%M%S", time.gmtime())
        report = add_unlabeled(sources, unlabeled, known, into)
    except (ConfigError, FileNotFoundError, FileExistsError) as err:
        sys.exit(f"error: {err}")
    problems = {"duplicate": report.duplicates, "invalid": report.invalid, "special": report.special}
    for kind, items in problems.items():
        for path, why in items[:SHOWN]:
            print(f"  {kind:<10} {path}: {why}")
        if len(items) > SHOWN:
            print(f"  … and {len(items) - SHOWN} more {kind} files")
    print(
        f"add-unlabeled: {len(report.copied)} copied to {unlabeled / into}, "
        f"{len(report.duplicates)} duplicates, {len(report.invalid)} invalid, "
        f"{len(report.hidden)} hidden files ignored, {len(report.special)} special files (FIFO, socket, "
        "device) skipped unread"
    )
    if report.copied and dvc:
        subprocess.run(["dvc", "add", "-q", str(unlabeled)], check=True)
        print(f"tracked with dvc add; next: git add {unlabeled}.dvc && git commit, then dvc repro")


if __name__ == "__main__":
    main()
