"""Time a full `prepare` against re-preparing after adding 1 % new unlabeled images; writes docs/prepare.md.

Works on a copy of the demo folders (`make data` first), so data/ is only read. Each timing is the best of
`--repeats` runs of the library function (the stage adds ~4 s of imports and MLflow on top of both).

    python bench/prepare_incremental.py
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, write_doc  # noqa: E402

from pipeline.config import load_params  # noqa: E402
from pipeline.data.demo import DEBIAN_IDX_DIR, load_fashion_mnist  # noqa: E402
from pipeline.data.prepare import prepare  # noqa: E402
from pipeline.data.store import load_prepared  # noqa: E402


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--share", type=float, default=0.01, help="new unlabeled images, share of the pool")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--idx-dir", type=Path, default=DEBIAN_IDX_DIR)
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "prepare.md")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    size, channels = params.data.image_size, params.data.channels

    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        for split in ("labeled", "unlabeled", "test"):
            shutil.copytree(ROOT / getattr(params.paths, split), data / split)
        roots = {s: data / s for s in ("labeled", "unlabeled", "test")}
        n_pool = sum(1 for p in roots["unlabeled"].rglob("*") if p.is_file())
        full_times = []
        for r in range(args.repeats):  # from scratch: a new output folder each time
            result, seconds = timed(lambda r=r: prepare(roots, Path(tmp) / f"full{r}", size, channels, False))
            full_times.append(seconds)
        n_files = len(result.manifest)

        # 1 % new images: Fashion-MNIST test images flipped upside down, so their bytes are new
        test_images = load_fashion_mnist(args.idx_dir)["test"][0]
        n_new = round(args.share * n_pool)
        new_dir = roots["unlabeled"] / "new_batch"
        new_dir.mkdir()
        for i in range(n_new):
            Image.fromarray(np.ascontiguousarray(test_images[i][::-1]), mode="L").save(
                new_dir / f"{i:05d}.png"
            )
        incremental_times = []
        for r in range(
            args.repeats
        ):  # each repeat starts from a copy of the store made before the new images
            out = Path(tmp) / f"inc{r}"
            shutil.copytree(Path(tmp) / "full0", out)
            result, seconds = timed(lambda out=out: prepare(roots, out, size, channels, False))
            incremental_times.append(seconds)
            assert result.decoded == n_new, f"decoded {result.decoded}, expected {n_new}"
        fresh = prepare(roots, Path(tmp) / "fresh", size, channels, False)
        assert np.array_equal(load_prepared(out).images, load_prepared(Path(tmp) / "fresh").images)
        assert fresh.decoded == len(fresh.manifest[fresh.manifest["index"] >= 0])

    full, incremental = min(full_times), min(incremental_times)
    lines = [
        "# Incremental prepare",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {platform.node() or 'this machine'} ({os.cpu_count()} CPU "
        "cores) with:",
        "",
        "    python bench/prepare_incremental.py " + " ".join(sys.argv[1:]),
        "",
        f"The demo folders ({n_files:,} files, {n_pool:,} unlabeled), then {n_new} new unlabeled images "
        f"({args.share:.0%} of the pool). Best of {args.repeats} runs of `pipeline.data.prepare.prepare`; "
        "the incremental store was checked equal to a prepare from scratch.",
        "",
        "| run | images decoded | seconds |",
        "| --- | ---: | ---: |",
        f"| full prepare (no previous store) | every image of the {n_files:,} files | {full:.2f} |",
        f"| after adding {n_new} images (previous store as cache) | {n_new} | {incremental:.2f} |",
        "",
        f"Ratio: the incremental prepare takes **{incremental / full:.0%}** of the full one.",
    ]
    write_doc(args.doc, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
