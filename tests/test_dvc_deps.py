"""dvc.yaml lists, for each stage, every pipeline module its script imports (directly or not), so a code
change reruns exactly the stages it can affect."""

import ast
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# Modules that cannot change a stage's outputs: MLflow logging, figures for MLflow, argument parsing.
NO_OUTPUT_EFFECT = {"pipeline/tracking.py", "pipeline/serving.py", "pipeline/figures.py", "pipeline/stage.py"}


def module_file(name: str) -> Path | None:
    path = ROOT / Path(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_files(script: Path) -> set[str]:
    """Files of the `pipeline` package that `script` imports, transitively."""
    seen, todo = set(), [script]
    while todo:
        tree = ast.parse(todo.pop().read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline"):
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("pipeline")]
            for name in names:
                file = module_file(name)
                rel = str(file.relative_to(ROOT)) if file is not None else ""
                if rel and file.stat().st_size and rel not in seen and rel not in NO_OUTPUT_EFFECT:
                    seen.add(rel)
                    todo.append(file)
    return seen


STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_imported_module_is_a_dependency(stage):
    spec = STAGES[stage].get("do", STAGES[stage])
    deps = [d for d in spec["deps"] if not d.startswith("$")]
    script = ROOT / spec["cmd"].split()[1]
    missing = sorted(
        f
        for f in imported_files(script)
        if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)
    )
    assert not missing, f"dvc.yaml stage {stage} lacks deps {missing}"
