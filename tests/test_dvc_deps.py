"""dvc.yaml lists, for each stage, exactly the pipeline modules its script imports (directly or not), and the
library's layers only point down, so a code change reruns only the stages it can affect."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Modules that cannot change a stage's outputs: MLflow logging, figures for MLflow.
NO_OUTPUT_EFFECT = {
    "pipeline/tracking.py", "pipeline/outage.py", "pipeline/provenance.py", "pipeline/serving.py",
    "pipeline/figures.py",
}  # fmt: skip
# Each module's layer; a module imports only from its own layer or those below.
LAYERS = [
    ["pipeline/config/", "pipeline/losses/", "pipeline/backbones.py", "pipeline/models.py",
     "pipeline/files.py", "pipeline/schedules.py", "pipeline/metrics.py", "pipeline/checkpoint.py"],
    ["pipeline/data/", "pipeline/runtime.py", "pipeline/compute.py", "pipeline/distributed.py",
     "pipeline/resume.py", "pipeline/augment.py", "pipeline/augment_batch.py", "pipeline/augment_weak.py",
     "pipeline/datasets.py",
     "pipeline/inference.py", "pipeline/artifacts.py"],
    ["pipeline/pseudo/", "pipeline/ssl/", "pipeline/training/", "pipeline/evaluation.py",
     "pipeline/promotion.py"],
    ["pipeline/tracking.py", "pipeline/outage.py", "pipeline/provenance.py", "pipeline/serving.py",
     "pipeline/summary.py", "pipeline/compare.py",
     "pipeline/evaluate_rounds.py",
     "pipeline/figures.py", "pipeline/stage.py", "pipeline/__main__.py", "pipeline/__init__.py"],
]  # fmt: skip


def layer(rel: str) -> int:
    for level, prefixes in enumerate(LAYERS):
        if any(rel == p or (p.endswith("/") and rel.startswith(p)) for p in prefixes):
            return level
    raise AssertionError(f"{rel} is in no layer of tests/test_dvc_deps.py LAYERS: add it")


def module_file(name: str) -> Path | None:
    path = ROOT / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def direct_imports(file: Path) -> set[str]:
    """Files of the `pipeline` package that `file` imports itself (empty __init__ files left out)."""
    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("pipeline")]
        for name in names:
            target = module_file(name)
            if target is not None and target.stat().st_size:
                found.add(str(target.relative_to(ROOT)))
    return found


def imported_files(script: Path) -> set[str]:
    """Files of the `pipeline` package that `script` imports, transitively (not through NO_OUTPUT_EFFECT)."""
    seen, todo = set(), [script]
    while todo:
        for rel in direct_imports(todo.pop()):
            if rel not in seen and rel not in NO_OUTPUT_EFFECT:
                seen.add(rel)
                todo.append(ROOT / rel)
    return seen


def code_deps(stage: str) -> list[str]:
    return [d for d in STAGES[stage].get("do", STAGES[stage])["deps"] if d.startswith("pipeline")]


def covered(file: str, deps: list[str]) -> bool:
    return any(file == d or file.startswith(d.rstrip("/") + "/") for d in deps)


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
SCRIPTS = {name: ROOT / STAGES[name].get("do", STAGES[name])["cmd"].split()[1] for name in STAGES}
ALL_MODULES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pipeline").rglob("*.py"))


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_dvc_deps_are_exactly_the_imported_modules(stage):
    imported, deps = imported_files(SCRIPTS[stage]), code_deps(stage)
    missing = sorted(f for f in imported if not covered(f, deps))
    assert not missing, f"dvc.yaml stage {stage} lacks deps {missing}"
    extra = sorted(
        f for f in ALL_MODULES if covered(f, deps) and f not in imported and direct_imports(ROOT / f)
    )  # a dep the stage does not import reruns it for nothing (empty __init__ files aside)
    assert not extra, f"dvc.yaml stage {stage} depends on modules it does not import: {extra}"


@pytest.mark.parametrize("module", ALL_MODULES)
def test_no_module_imports_from_a_layer_above_its_own(module):
    above = sorted(f for f in direct_imports(ROOT / module) if layer(f) > layer(module))
    assert not above, f"{module} (layer {layer(module)}) imports from layers above it: {above}"


SEPARATIONS = [  # (edited module, stages that must not rerun for it)
    *[(edit, ["prepare", "pretrain", "teacher"]) for edit in (
        "pipeline/pseudo/select.py", "pipeline/pseudo/ood.py", "pipeline/training/student.py",
        "pipeline/losses/semi.py",
    )],
    ("pipeline/ssl/methods/vicreg.py", ["prepare"]),
    ("pipeline/ssl/registry.py", ["prepare"]),
    ("pipeline/config/student.py", ["prepare", "pretrain"]),
    ("pipeline/config/pseudolabel.py", ["prepare", "pretrain", "teacher"]),
]  # fmt: skip


@pytest.mark.parametrize(("edit", "unchanged"), SEPARATIONS)
def test_an_edit_leaves_the_stages_it_cannot_affect_unchanged(edit, unchanged):
    for stage in unchanged:
        assert edit not in imported_files(SCRIPTS[stage]), f"{stage} imports {edit}"
        assert not covered(edit, code_deps(stage)), f"dvc.yaml stage {stage} depends on {edit}"


def test_no_module_is_over_300_lines_and_no_stage_script_over_45():
    long = {m: n for m in ALL_MODULES if (n := len((ROOT / m).read_text().splitlines())) > 300}
    assert not long, f"modules over 300 lines: {long}"
    fat = {s.name: n for s in SCRIPTS.values() if (n := len(s.read_text().splitlines())) > 45}
    assert not fat, f"stage scripts over 45 lines: {fat}"


def test_every_pretrain_setting_is_a_dvc_param_of_the_stage():
    """pretrain lists its settings one by one (only the chosen method's section), so a new setting left out
    of dvc.yaml would not rerun the stage when it changes."""
    from pipeline.config.pretrain import PretrainConfig

    listed = set(STAGES["pretrain"]["params"])
    missing = [f for f in PretrainConfig.model_fields if f != "methods" and f"pretrain.{f}" not in listed]
    assert not missing, f"dvc.yaml stage pretrain lacks params {missing}"
