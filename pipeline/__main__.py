"""Command line: `python -m pipeline demo-data ...`."""

from __future__ import annotations

import argparse
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
    args = parser.parse_args(argv)

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
            )
        except (FileNotFoundError, FileExistsError, ValueError) as err:
            sys.exit(f"error: {err}")
        print(f"demo data in {args.out}: " + ", ".join(f"{n:,} {k}" for k, n in counts.items()))


if __name__ == "__main__":
    main()
