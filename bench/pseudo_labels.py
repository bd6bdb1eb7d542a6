"""Benchmark the pseudo-label rounds on Fashion-MNIST; writes docs/pseudo_label_benchmark.md.

Part `labels`: 4, 25 and 100 labels per class (40, 250, 1000 labels), seeds 0, 1, 2. Per setting: the
supervised-only reference (the same CNN from scratch on the labels alone), the teacher and each round's
student (test accuracy, mean ± std over seeds), the pseudo-label precision of each round, and wall time.

Part `mismatch`: 6 labeled classes (t-shirt_top, trouser, pullover, dress, coat, sandal); a share 0, 0.5 or 1
of the unlabeled pool from the other 4 classes (near OOD), plus `--far-ood` rendered digits (far OOD); the
OOD filter of params.yaml and the filter off (`--ood-methods`). Shares strictly between 0 and 1 run every
seed, 0 and 1 the first. Per setting: the teacher's and the last student's test accuracy on the 6 classes,
pseudo-label precision, the OOD images' share of the pseudo-label weight, and for each round the near-OOD
AUROC of the filter's score and the share of far-OOD images it excluded, and wall time.

Every setting runs in its own folder under --out: the demo export, then the real stage scripts from `prepare`
to `evaluate`, with `params.yaml` of the repo except for the paths, the seed, the rounds and the OOD method.

    python bench/pseudo_labels.py                                  # both parts
    python bench/pseudo_labels.py --part labels --seeds 0          # one seed
    python bench/pseudo_labels.py --quick --out bench_out/pl_quick --doc /tmp/pl.md \
        --results /tmp/pl.json                                     # smoke run, minutes
    python bench/pseudo_labels.py --resume --only labels40-seed1   # add one setting to the table

The results of every finished setting are kept in --results (committed beside the doc), so a run that a
session could not finish goes on in the next with --resume; a kept result whose params differ from the
current params.yaml is run again.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, doc_header, pipeline_stages, run_stages, scratch_teacher, stage_env, write_doc  # noqa: E402  # noqa: E402

from pipeline.config.full import load_params  # noqa: E402
from pipeline.data.demo import CLASSES, DEBIAN_IDX_DIR, export_demo  # noqa: E402
from pipeline.data.store import load_prepared  # noqa: E402
from pipeline.metrics import ood_auroc  # noqa: E402
from pipeline.pseudo.report import read_analysis_labels  # noqa: E402

KNOWN = CLASSES[:6]
QUICK = {  # a smoke run of the script itself, not a measurement
    "pretrain": {"epochs": 1, "min_steps": 1},
    "teacher": {"min_steps": 30, "max_steps": 30},
    "student": {"min_steps": 30, "max_steps": 30},
}


def apply_overrides(params: dict, overrides: dict[str, str]) -> dict:
    """`params` with each dotted key (student.online.teacher_ema) set to its YAML value, in place."""
    for key, value in overrides.items():
        *parents, last = key.split(".")
        section = params
        for parent in parents:
            section = section[parent]
        section[last] = yaml.safe_load(value)
    return params


def setting_params(
    base: dict, out: Path, seed: int, rounds: int, ood: str, quick: bool, overrides: dict | None = None
) -> dict:
    params = apply_overrides(json.loads(json.dumps(base)), overrides or {})
    params["seed"] = seed
    data = {"labeled": "data/labeled", "unlabeled": "data/unlabeled", "test": "data/test",
            "analysis": "data/analysis.csv"}  # fmt: skip
    for key in params["paths"]:
        params["paths"][key] = str(out / data.get(key, key))
    params["checkpoints"]["dir"] = str(out / ".checkpoints")
    params["rounds"] = {f"r{k}": {"prev": f"r{k - 1}"} for k in range(1, rounds + 1)}
    params["mlflow"]["experiment"] = "pseudo-label-benchmark"
    params["pseudolabel"]["ood"]["method"] = ood
    for section, values in QUICK.items() if quick else ():
        params[section].update(values)
    return params


SHARED = ("labeled", "unlabeled", "test", "analysis", "prepared", "encoder")  # what a variant can reuse


def run_setting(
    name: str,
    args,
    base: dict,
    seed: int,
    demo: dict,
    ood: str,
    reuse: dict | None,
    variant: tuple = ("", {}),
) -> dict:
    """Export the data, run every stage, return the evaluation of each round plus the references.

    `variant`: (name, {dotted key: value}) of student or pseudolabel settings that differ from params.yaml.
    With `reuse` (the result of a setting with the same data and seed that differed only in the OOD method
    or the variant),
    its data, prepared store, SSL encoder and teacher are used as they are and only the rounds run; its
    stage times are added to this setting's, so the minutes compare with a full run.
    """
    out = args.out / name
    start, cpu_start = time.perf_counter(), cpu_seconds()
    params = setting_params(base, out, seed, args.rounds, ood, args.quick, variant[1])
    if reuse is None:
        export_demo(out / "data", args.idx_dir, seed=seed, force=True, n_test=args.test, **demo)
        export_seconds = time.perf_counter() - start
        stages = pipeline_stages(args.rounds, prepare=True)
    else:
        shared = reuse["params"]["paths"]
        params["paths"].update({key: shared[key] for key in SHARED})
        shutil.copytree(Path(shared["rounds"]) / "r0", out / "rounds" / "r0", dirs_exist_ok=True)
        stages = pipeline_stages(args.rounds)[2:]  # from pseudolabel r1: pretrain and teacher are shared
    params_file = out / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    seconds = run_stages(params_file, stages, stage_env(f"bench-{name}"))
    if reuse is None:
        loaded = load_params(params_file)
        scratch_start = time.perf_counter()
        supervised = scratch_teacher(loaded, load_prepared(loaded.paths.prepared), args.scratch_steps, 0.1)
        seconds["export"], seconds["supervised"] = export_seconds, time.perf_counter() - scratch_start
        shared_seconds = 0.0
    else:  # what this setting took from its base, so that its minutes compare with a full run
        supervised = reuse["supervised"]
        shared = ("export", "prepare", "pretrain", "teacher", "supervised")
        shared_seconds = sum(reuse["stage_seconds"][k] for k in shared)
    kinds = ood_by_kind(Path(params["paths"]["pseudolabels"]), params, demo) if "classes" in demo else {}
    result = {
        "name": name, "seed": seed, "ood": ood, "demo": demo, "variant": variant[0], "ood_kinds": kinds,
        **{k: v for k, v in demo.items() if k != "classes"},
        "rounds": json.loads((out / "metrics" / "eval.json").read_text()), "supervised": supervised,
        "seconds": time.perf_counter() - start + shared_seconds, "cpu_seconds": cpu_seconds() - cpu_start,
        "load_average": os.getloadavg(), "stage_seconds": seconds, "params": params,
    }  # fmt: skip
    print(f"{name}: supervised {supervised:.2%}, " + ", ".join(
        f"{r} {m['test/accuracy']:.2%}" for r, m in result["rounds"].items()), flush=True)  # fmt: skip
    return result


def ood_by_kind(pseudolabels: Path, params: dict, demo: dict) -> dict[str, dict[str, float]]:
    """Per round, the OOD filter against the analysis labels by kind: `near_auroc`, the AUROC of its score
    with pool images of the 4 other Fashion-MNIST classes as positives and the labeled classes' as negatives,
    `far_rejected`, the share of rendered digits (analysis label `ood:digit`) it excluded: rejected, or
    weighted 0 by a soft filter, and `ood_weight_share`, the OOD images' share of the accepted pseudo-labels'
    total weight (the weight the student gives them). NaN where the pool has none of a kind."""
    truth = read_analysis_labels(params["paths"]["analysis"])
    kinds = {}
    for table_file in sorted(pseudolabels.glob("r*.parquet")):
        columns = ["path", "ood_score", "in_distribution", "ood_weight", "accepted", "weight"]
        table = pd.read_parquet(table_file, columns=columns)
        label = truth.reindex(table["path"]).to_numpy()
        known = np.isin(label, demo["classes"])
        far = np.char.startswith(label.astype(str), "ood:")
        near = ~known & ~far & (label == label)  # label == label: not NaN (an image without analysis label)
        scores = table["ood_score"].to_numpy()
        weight = table["weight"].to_numpy() * table["accepted"].to_numpy()  # what the student trains on
        kept = table["in_distribution"].to_numpy() & (table["ood_weight"].to_numpy() > 0)
        kinds[table_file.stem] = {
            "near_auroc": ood_auroc(scores[known], scores[near]) if near.any() and known.any() else np.nan,
            "far_rejected": float((~kept[far]).mean()) if far.any() else np.nan,
            "ood_weight_share": float(weight[~known].sum() / max(weight.sum(), 1e-12)),
        }
    return kinds


def all_labels_reference(args, base: dict) -> dict:
    """The supervised-only CNN of the table trained on (almost) every Fashion-MNIST training label: 5,990
    per class (the export keeps 100 pool images), the same steps and recipe, seed 0."""
    start, out = time.perf_counter(), args.out / "all-labels"
    export_demo(out / "data", args.idx_dir, labels_per_class=5990, n_unlabeled=100, n_test=args.test,
                seed=0, force=True)  # fmt: skip
    params = setting_params(base, out, 0, 1, "none", args.quick)
    params_file = out / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))
    run_stages(params_file, [["prepare"]], stage_env("bench-all-labels"))
    loaded = load_params(params_file)
    store = load_prepared(loaded.paths.prepared)
    accuracy = scratch_teacher(loaded, store, args.scratch_steps, 0.1)
    labels = len(store.split("labeled").index)
    print(f"all labels ({labels:,}): supervised {accuracy:.2%}", flush=True)
    return {"part": "reference", "name": "all-labels", "labels": labels, "supervised": accuracy,
            "seconds": time.perf_counter() - start, "params": params}  # fmt: skip


def cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the stage scripts)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def mean_std(values: list[float], percent: bool = True, decimals: int = 1) -> str:
    values = [v for v in values if v == v]  # drop NaN (a metric a round does not have)
    if not values:
        return "–"
    scale, unit = (100, " %") if percent else (1, "")
    if len(values) == 1:
        return f"{scale * values[0]:,.{decimals}f}{unit}"
    mean, std = scale * np.mean(values), scale * np.std(values, ddof=1)
    return f"{mean:,.{decimals}f} ± {std:,.{decimals}f}{unit}"


def minutes_range(minutes: list[float]) -> str:
    """Median and range: one run slowed by another job on the machine should not move the figure."""
    if len(minutes) == 1:
        return f"{minutes[0]:.1f}"
    return f"{np.median(minutes):.1f} ({min(minutes):.1f}–{max(minutes):.1f})"


def promoted(run: dict) -> tuple[str, dict]:
    """The round evaluate promoted (metrics/eval.json's `promoted`; an older result without it: the last)."""
    rounds = run["rounds"]
    name = next((r for r, m in rounds.items() if m.get("promoted") == 1.0), list(rounds)[-1])
    return name, rounds[name]


def gap_closed(run: dict, all_labels: float | None) -> float:
    """(promoted - supervised only) / (all labels - supervised only); NaN without the all-labels run."""
    if all_labels is None:
        return float("nan")
    return (promoted(run)[1]["test/accuracy"] - run["supervised"]) / (all_labels - run["supervised"])


def labels_table(results: list[dict], rounds: int, all_labels: float | None) -> list[str]:
    lines = [
        "| labels | model | test accuracy | pseudo-label precision | accepted | gap closed | seeds "
        "| minutes per run, median (range) |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for n, variant in sorted({(r["labels_per_class"], r.get("variant", "")) for r in results}):
        runs = [r for r in results if r["labels_per_class"] == n and r.get("variant", "") == variant]
        minutes = minutes_range([r["seconds"] / 60 for r in runs])
        supervised = mean_std([r["supervised"] for r in runs])
        n = f"{10 * n} ({variant})" if variant else n  # the label cell: 40, or 40 (online)
        lines.append(f"| {label_cell(n)} | supervised only | {supervised} | – | – | – | {len(runs)} | |")
        for k in range(rounds + 1):
            metrics = [r["rounds"][f"r{k}"] for r in runs]
            model = "teacher (r0)" if k == 0 else f"student r{k}"
            acc = mean_std([m["test/accuracy"] for m in metrics])
            precision = mean_std([m.get("pl/precision", float("nan")) for m in metrics])
            accepted = mean_std([m.get("pl/accepted", float("nan")) for m in metrics], False, decimals=0)
            lines.append(f"| {label_cell(n)} | {model} | {acc} | {precision} | {accepted} | | {len(runs)} | "
                         f"{minutes if k == rounds else ''} |")  # fmt: skip
        names = ", ".join(promoted(r)[0] for r in runs)
        acc = mean_std([promoted(r)[1]["test/accuracy"] for r in runs])
        gap = mean_std([gap_closed(r, all_labels) for r in runs], percent=False, decimals=2)
        lines.append(f"| {label_cell(n)} | **promoted** ({names}) | {acc} | | | {gap} | {len(runs)} | |")
    return lines


def label_cell(n) -> str:
    """The labels column: 10 x labels per class, with the variant's name when there is one."""
    return str(10 * n) if isinstance(n, int) else n


def mismatch_table(results: list[dict], rounds: int) -> list[str]:
    """One row per share and OOD filter, mean ± std over seeds; `vs clean` is the promoted model against the
    0 % share's with the same filter (the goal: within 1 point)."""
    lines = [
        "| mismatch | OOD filter | seeds | teacher | promoted | vs clean | PL precision "
        "| OOD share of the PL weight | near-OOD AUROC " + " / ".join(f"r{k}" for k in range(1, rounds + 1))
        + " | far-OOD excluded " + " / ".join(f"r{k}" for k in range(1, rounds + 1)) + " | minutes |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- | ---: |",
    ]  # fmt: skip
    groups = sorted({(r["mismatch"], r["ood"]) for r in results})
    clean = {ood: [promoted(r)[1]["test/accuracy"] for r in results if r["mismatch"] == 0 and r["ood"] == ood]
             for _, ood in groups}  # fmt: skip
    for share, ood in groups:
        runs = [r for r in results if (r["mismatch"], r["ood"]) == (share, ood)]
        last = [r["rounds"][f"r{rounds}"] for r in runs]
        best = [promoted(r)[1]["test/accuracy"] for r in runs]
        ood_weight = [r.get("ood_kinds", {}).get(f"r{rounds}", {}).get("ood_weight_share", float("nan"))
                      for r in runs]  # fmt: skip
        change = f"{100 * (np.mean(best) - np.mean(clean[ood])):+.1f}" if clean[ood] and share else "–"

        def per_round(key: str, percent: bool, runs=runs) -> str:
            return " / ".join(
                mean_std(
                    [r.get("ood_kinds", {}).get(f"r{k}", {}).get(key, float("nan")) for r in runs],
                    percent,
                    decimals=1 if percent else 2,
                )
                for k in range(1, rounds + 1)
            )

        cells = [
            f"{share:.0%}", ood, str(len(runs)), mean_std([r["rounds"]["r0"]["test/accuracy"] for r in runs]),
            mean_std(best), change, mean_std([m.get("pl/precision", float("nan")) for m in last]),
            mean_std(ood_weight), per_round("near_auroc", False), per_round("far_rejected", True),
            minutes_range([r["seconds"] / 60 for r in runs]),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def markdown(results: list[dict], args, command: str) -> str:
    labels = [r for r in results if r["part"] == "labels"]
    mismatch = [r for r in results if r["part"] == "mismatch"]
    reference = next((r for r in results if r["part"] == "reference"), None)
    all_labels = reference["supervised"] if reference else None
    lines = [
        *doc_header("Pseudo-label rounds: label counts and class mismatch", command),
        f"Fashion-MNIST, {args.unlabeled:,} unlabeled images, "
        + ("all 10 000 test images" if args.test is None else f"{args.test:,} test images")
        + f", {args.rounds} rounds, `params.yaml` of the commit otherwise. Supervised only: the same CNN "
        f"from random initialisation on the labeled images alone ({args.scratch_steps} steps, weak "
        "augmentation). Mean ± sample std over seeds; pseudo-label precision against the analysis labels. "
        "Promoted: the round `evaluate` promoted (the last, unless an earlier one is clearly better on the "
        "validation images; without them, the last). Gap closed: (promoted - supervised only) / "
        "(all labels - supervised only), where all labels "
        + (
            f"is the same CNN trained the same way on {reference['labels']:,} labels: "
            f"{reference['supervised']:.1%} ({reference['seconds'] / 60:.1f} minutes)."
            if reference
            else "has not been measured."
        ),  # fmt: skip
    ]
    if labels:
        lines += ["", "## Label counts", "", *labels_table(labels, args.rounds, all_labels)]
    if mismatch:
        lines += [
            "", "## Class mismatch",
            "",
            f"{len(KNOWN)} labeled classes ({', '.join(KNOWN)}), {args.mismatch_labels} labels each; a share "
            f"of the unlabeled pool from the other 4 classes (near OOD) and {args.far_ood:,} rendered digits "
            "(far OOD). Test accuracy on the 6 classes. Near-OOD AUROC: the filter's score, images of the "
            "other classes against those of the labeled ones; far-OOD excluded: the share of digits the "
            "filter rejected or gave weight 0; both each round, against the analysis labels.",
            "", *mismatch_table(mismatch, args.rounds),
        ]  # fmt: skip
    return "\n".join(lines) + "\n"


def same_run(kept: dict, wanted: dict) -> bool:
    """Whether a kept result ran with these params, paths aside (they name the checkout it ran in)."""

    def settings(params: dict) -> dict:
        return {k: v for k, v in params.items() if k not in ("paths", "checkpoints")}

    return settings(kept) == settings(wanted)


def shown_args(argv: list[str]) -> list[str]:
    """The command line that makes the whole table: without --resume and --only, which only say what to
    run now."""
    shown, skipping = [], False
    for arg in argv:
        if arg.startswith("--"):
            skipping = arg in ("--resume", "--only")
        if not skipping:
            shown.append(arg)
    return shown


def save(results: list[dict], args, command: str) -> None:
    """The results file and the doc's table."""
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=1) + "\n")
    write_doc(args.doc, markdown(results, args, command))


def setting_key(part: str, seed: int, demo: dict) -> str:
    return json.dumps([part, seed, demo], sort_keys=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--part", choices=["labels", "mismatch", "both"], default="both")
    parser.add_argument("--labels-per-class", type=int, nargs="+", default=[4, 25, 100])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mismatch", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument(
        "--mismatch-labels", type=int, default=4, help="labels per class in the mismatch part"
    )
    parser.add_argument("--ood-methods", nargs="+", default=["params", "none"],
                        help="params: the method of params.yaml")  # fmt: skip
    parser.add_argument("--far-ood", type=int, default=1000, help="rendered digits in the mismatch pools")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--unlabeled", type=int, default=20_000)
    parser.add_argument("--test", type=int, default=None, help="test images (default: all)")
    parser.add_argument("--scratch-steps", type=int, default=1500)
    parser.add_argument(
        "--quick", action="store_true", help="short schedules: checks the script, measures nothing"
    )
    parser.add_argument("--idx-dir", type=Path, default=DEBIAN_IDX_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "bench_out" / "pseudo_labels")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "pseudo_label_benchmark.md")
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "pseudo_label_benchmark.json")
    parser.add_argument(
        "--resume", action="store_true", help="keep the settings already in --results (same params)"
    )
    parser.add_argument("--only", nargs="+", help="run only these settings now (e.g. labels40-seed1)")
    parser.add_argument(
        "--variant", nargs="+", action="append", default=[], metavar="NAME KEY=VALUE",
        help="label-count settings again with these student/pseudolabel settings, sharing the data, encoder "
        "and teacher (e.g. --variant online student.consistency=online)",
    )  # fmt: skip
    args = parser.parse_args()
    command = " ".join(["python bench/pseudo_labels.py", *shown_args(sys.argv[1:])])
    if args.quick:  # the supervised reference too
        args.scratch_steps = min(args.scratch_steps, QUICK["teacher"]["max_steps"])
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    ood_default = base["pseudolabel"]["ood"]["method"]

    variants = [("", {})]
    for name, *pairs in args.variant:
        overrides = dict(pair.split("=", 1) for pair in pairs)
        if not all(key.startswith(("student.", "pseudolabel.")) for key in overrides):
            parser.error(f"--variant {name}: only student.* and pseudolabel.* keys (the shared teacher)")
        variants.append((name, overrides))
    settings = []
    if args.part in ("labels", "both"):
        for n in args.labels_per_class:
            for seed in args.seeds:
                demo = {"labels_per_class": n, "n_unlabeled": args.unlabeled, "mismatch": 0.0}
                for variant in variants:
                    name = f"labels{10 * n}-seed{seed}" + (f"-{variant[0]}" if variant[0] else "")
                    settings.append(("labels", name, seed, demo, ood_default, variant))
    if args.part in ("mismatch", "both"):
        for share in args.mismatch:
            for ood in (ood_default if m == "params" else m for m in args.ood_methods):
                for seed in args.seeds if 0 < share < 1 else args.seeds[:1]:
                    demo = {"labels_per_class": args.mismatch_labels, "n_unlabeled": args.unlabeled,
                            "classes": KNOWN, "mismatch": share, "far_ood": args.far_ood}  # fmt: skip
                    name = f"mismatch{round(100 * share)}-{ood}-seed{seed}"
                    settings.append(("mismatch", name, seed, demo, ood, ("", {})))

    settings.sort(key=lambda s: (s[2], s[0] == "mismatch"))  # one seed of everything first
    wanted = {name: setting_params(base, args.out / name, seed, args.rounds, ood, args.quick, variant[1])
              for _, name, seed, _, ood, variant in settings}  # fmt: skip
    kept = json.loads(args.results.read_text()) if args.resume and args.results.is_file() else []
    wanted["all-labels"] = setting_params(base, args.out / "all-labels", 0, 1, "none", args.quick)
    results = [r for r in kept if r["name"] in wanted and same_run(r["params"], wanted[r["name"]])]
    if len(results) < len(kept):
        print(f"{len(kept) - len(results)} kept result(s) are of other params or settings: run again")
    done = {r["name"] for r in results}
    first_of = {}  # same part, data and seed: the first setting's stages up to r0 are shared
    for result in results:
        if (Path(result["params"]["paths"]["rounds"]) / "r0").is_dir():  # its files are still on this disk
            first_of.setdefault(setting_key(result["part"], result["seed"], result["demo"]), result)
        tables = Path(result["params"]["paths"]["pseudolabels"])
        if result["part"] == "mismatch" and tables.is_dir():  # read again: the OOD figures of this script
            result["ood_kinds"] = ood_by_kind(tables, result["params"], result["demo"])
    if args.part in ("labels", "both") and not any(r["part"] == "reference" for r in results):
        results.append(all_labels_reference(args, base))
    for part, name, seed, demo, ood, variant in settings:
        if name in done or (args.only and name not in args.only):
            continue
        key = setting_key(part, seed, demo)
        result = run_setting(name, args, base, seed, demo, ood, reuse=first_of.get(key), variant=variant)
        first_of.setdefault(key, {"part": part, **result})
        results.append({"part": part, **result})
        save(results, args, command)  # after every setting: a killed run keeps what it finished
    if results:  # the table again, also when nothing was left to run
        save(results, args, command)
    print(markdown(results, args, command))


if __name__ == "__main__":
    main()
