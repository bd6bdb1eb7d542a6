"""Time a full `prepare` against re-preparing after adding 1 % new unlabeled images; writes docs/prepare.md.

Works on copies of the demo folders (`make data` first), so data/ is only read: once as they are (28 x 28
PNGs), and once with every image upscaled to `--photo-side` pixels and saved as JPEG, the size of a user's
photos, where decoding costs what it does in real use. Each timing is the best of `--repeats` runs of the
library function (the stage adds ~4 s of imports and MLflow on top of both).

    python bench/prepare_incremental.py
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, doc_header, write_doc  # noqa: E402

from pipeline.config.full import load_params  # noqa: E402
from pipeline.data.demo import DEBIAN_IDX_DIR, load_fashion_mnist  # noqa: E402
from pipeline.data.prepare import prepare  # noqa: E402
from pipeline.data.store import load_prepared  # noqa: E402


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def copy_folders(src: dict[str, Path], dst: Path, side: int | None) -> dict[str, Path]:
    """The split folders under `dst`: plain copies, or every image resized to side x side as JPEG."""
    roots = {}
    for split, folder in src.items():
        roots[split] = dst / split
        if side is None:
            shutil.copytree(folder, roots[split])
            continue
        for path in sorted(folder.rglob("*.png")):
            out = (roots[split] / path.relative_to(folder)).with_suffix(".jpg")
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.open(path).resize((side, side), Image.BICUBIC).save(out, quality=90)
    return roots


def measure(src: dict[str, Path], work: Path, side: int | None, new_images: np.ndarray, args) -> dict:
    """Best-of-repeats seconds of a full prepare and of one after adding `new_images` to the pool."""
    params = load_params(ROOT / "params.yaml")
    size, channels = params.data.image_size, params.data.channels
    roots = copy_folders(src, work / "data", side)
    n_pool = sum(1 for p in roots["unlabeled"].rglob("*") if p.is_file())
    full_times = []
    for r in range(args.repeats):  # from scratch: a new output folder each time
        out, hashes = work / f"full{r}", work / f"hashes{r}.parquet"
        result, seconds = timed(prepare, roots, out, size, channels, False, file_hashes=hashes)
        full_times.append(seconds)
    n_files = len(result.manifest)

    n_new = round(args.share * n_pool)
    new_dir = roots["unlabeled"] / "new_batch"
    new_dir.mkdir()
    for i in range(n_new):
        image = Image.fromarray(np.ascontiguousarray(new_images[i]), mode="L")
        if side is None:
            image.save(new_dir / f"{i:05d}.png")
        else:
            image.resize((side, side), Image.BICUBIC).save(new_dir / f"{i:05d}.jpg", quality=90)
    incremental_times = []
    for r in range(args.repeats):  # each from a copy of the store and file hashes made before
        out, hashes = work / f"inc{r}", work / f"inc_hashes{r}.parquet"
        shutil.copytree(work / "full0", out)
        shutil.copy(work / "hashes0.parquet", hashes)
        result, seconds = timed(prepare, roots, out, size, channels, False, file_hashes=hashes)
        incremental_times.append(seconds)
        assert result.decoded == n_new, f"decoded {result.decoded}, expected {n_new}"
    fresh = prepare(roots, work / "fresh", size, channels, False)
    assert np.array_equal(load_prepared(out).images, load_prepared(work / "fresh").images)
    assert fresh.decoded == len(fresh.manifest[fresh.manifest["index"] >= 0])
    return {"files": n_files, "pool": n_pool, "new": n_new, "full": min(full_times),
            "incremental": min(incremental_times)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--share", type=float, default=0.01, help="new unlabeled images, share of the pool")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--photo-side", type=int, default=224, help="side of the JPEG copies, pixels")
    parser.add_argument("--idx-dir", type=Path, default=DEBIAN_IDX_DIR)
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "prepare.md")
    args = parser.parse_args()
    paths = load_params(ROOT / "params.yaml").paths
    src = {split: ROOT / getattr(paths, split) for split in ("labeled", "unlabeled", "test")}
    # the new images: Fashion-MNIST test images flipped upside down, so their bytes are new
    new_images = load_fashion_mnist(args.idx_dir)["test"][0][:, ::-1]
    runs = {}
    for name, side in (("demo: 28 x 28 PNG", None), (f"photos: {args.photo_side} x {args.photo_side} JPEG",
                                                     args.photo_side)):  # fmt: skip
        with tempfile.TemporaryDirectory() as tmp:
            runs[name] = measure(src, Path(tmp), side, new_images, args)
            print(name, runs[name], flush=True)

    first = next(iter(runs.values()))
    lines = [
        *doc_header(
            "Incremental prepare", "python bench/prepare_incremental.py " + " ".join(sys.argv[1:]), ""
        ),
        f"The demo folders ({first['files']:,} files, {first['pool']:,} unlabeled), as they are and as "
        f"{args.photo_side}-pixel JPEG copies; then {first['new']} new unlabeled images ({args.share:.0%} of "
        f"the pool). Best of {args.repeats} runs of `pipeline.data.prepare.prepare`; each incremental store "
        "was checked equal to a prepare from scratch. The incremental run has the previous store and the "
        "file hashes of the run before (`.checkpoints/prepare_file_hashes.parquet` in the stage).",
        "",
        "| files | full prepare (s) | after adding 1 % (s) | images decoded | incremental / full |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, run in runs.items():
        lines.append(f"| {name} | {run['full']:.2f} | {run['incremental']:.2f} | {run['new']} | "
                     f"**{run['incremental'] / run['full']:.0%}** |")  # fmt: skip
    write_doc(args.doc, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
