"""Command line: `python -m pipeline demo-data ...` and `python -m pipeline summary`."""

from __future__ import annotations

import argparse
import json
import sys
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
    summary = sub.add_parser("summary", help="print the rounds table of the last `dvc repro`")
    summary.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args(argv)

    if args.command == "summary":
        print_summary(args.params)

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
    from pipeline.config import ConfigError, load_params
    from pipeline.summary import print_table, rounds_table, summary_rows
    from pipeline.tracking import latest_round_runs

    try:
        params = load_params(params_file)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    eval_file = Path(params.paths.metrics) / "eval.json"
    if not eval_file.is_file():
        sys.exit(f"error: {eval_file} not found; run `dvc repro` first")
    results = json.loads(eval_file.read_text())
    run_ids = latest_round_runs(params.mlflow.experiment)
    print_table(rounds_table(summary_rows(results, params.round_order(), run_ids)))


if __name__ == "__main__":
    main()
