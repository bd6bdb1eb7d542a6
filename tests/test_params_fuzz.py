"""params.yaml fuzzing: every stage's start either accepts a mutated params file or exits with an error that
names the mutated key, never with a traceback.

Each example mutates the repository's params.yaml once (a value of another type or range, a missing key, an
unknown key, or rounds whose `prev` loops, points nowhere or is missing) and runs the validation every stage
script runs first (`pipeline.stage.start`, with the stage's own config class and checks; STARTS mirrors the
scripts and a test keeps it in step with them).
"""

from __future__ import annotations

import copy
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config.common import Common
from pipeline.config.evaluate import EvaluateParams
from pipeline.config.pretrain import PretrainParams
from pipeline.config.pseudolabel import PseudolabelParams
from pipeline.config.student import StudentParams
from pipeline.config.teacher import TeacherParams
from pipeline.ssl.registry import check_methods
from pipeline.stage import start

ROOT = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((ROOT / "params.yaml").read_text())
STARTS = {  # stage script -> the config class, whether it takes --round, and its extra check
    "prepare": (Common, False, None),
    "pretrain": (PretrainParams, False, lambda p: check_methods(p.pretrain)),
    "teacher": (TeacherParams, False, None),
    "pseudolabel": (PseudolabelParams, True, None),
    "student": (StudentParams, True, None),
    "evaluate": (EvaluateParams, False, None),
}
UNKNOWN = "zz_unknown"


def key_paths(node: dict, prefix: tuple = ()) -> list[tuple]:
    """Every key path of the params mapping, sections and leaves (lists are leaves)."""
    paths = []
    for key, value in node.items():
        paths.append(prefix + (key,))
        if isinstance(value, dict):
            paths += key_paths(value, prefix + (key,))
    return paths


def _get(node: dict, path: tuple):
    for key in path:
        node = node[key]
    return node


PATHS = key_paths(BASE)
DICT_PATHS = [()] + [p for p in PATHS if isinstance(_get(BASE, p), dict)]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=6),
    st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.sampled_from(["a", "prev", "lr"]), st.integers(-3, 3), max_size=2),
)
ROUNDS = {
    "cycle": {"r1": {"prev": "r2"}, "r2": {"prev": "r1"}},
    "self-loop": {"r1": {"prev": "r1"}},
    "dangling": {"r1": {"prev": "r0"}, "r2": {"prev": "r9"}},
    "empty": {},
    "not-a-mapping": {"r1": "r0"},
    "no-prev": {"r1": {}},
}
MUTATIONS = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(PATHS), VALUES),
    st.tuples(st.just("delete"), st.sampled_from(PATHS), st.none()),
    st.tuples(st.just("unknown"), st.sampled_from(DICT_PATHS), VALUES),
    st.tuples(st.just("rounds"), st.just(("rounds",)), st.sampled_from(sorted(ROUNDS))),
)


def mutate(kind: str, path: tuple, value) -> tuple[dict, str]:
    """A mutated copy of params.yaml and the dotted key an error must name."""
    params = copy.deepcopy(BASE)
    if kind == "unknown":
        _get(params, path)[UNKNOWN] = value
        return params, ".".join(path + (UNKNOWN,))
    if kind == "rounds":
        params["rounds"] = copy.deepcopy(ROUNDS[value])
        return params, "rounds"
    *up, last = path
    if kind == "set":
        _get(params, tuple(up))[last] = value
    else:
        del _get(params, tuple(up))[last]
    return params, ".".join(path)


def names_key(message: str, dotted: str) -> bool:
    """The error names the key, one of its parents (a check across a section's keys names the section's
    path), or for rounds the round it found wrong."""
    parts = dotted.split(".")
    return any(".".join(parts[:n]) in message for n in range(len(parts), 0, -1))


@pytest.mark.slow
@settings(max_examples=150, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(MUTATIONS)
def test_every_stage_accepts_a_mutated_params_file_or_names_the_key(mutation):
    params, dotted = mutate(*mutation)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(yaml.safe_dump(params))
        for stage, (kind, with_round, check) in STARTS.items():
            argv = ["--params", str(path)] + (["--round", "r1"] if with_round else [])
            try:
                start(stage, kind, with_round=with_round, check=check, argv=argv)
            except SystemExit as exit_:
                message = str(exit_.code)
                assert message.startswith("error: "), (stage, mutation, message)
                named = names_key(message, dotted) or (with_round and "r1" in message)
                assert named, (stage, mutation, message)
                assert "Traceback" not in message


def test_the_starts_mirror_the_stage_scripts():
    for stage, (kind, with_round, check) in STARTS.items():
        source = (ROOT / "stages" / f"{stage}.py").read_text()
        call = re.search(r"start\(__doc__, (\w+)([^\n]*)\)", source)
        assert call is not None, stage
        assert call.group(1) == kind.__name__, stage
        assert ("with_round=True" in call.group(2)) == with_round, stage
        assert ("check=" in call.group(2)) == (check is not None), stage


def test_a_mutation_the_schema_forbids_stops_the_stage_that_reads_it_and_no_other():
    params, _ = mutate("set", ("student", "lr"), "fast")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "params.yaml"
        path.write_text(yaml.safe_dump(params))
        with pytest.raises(SystemExit, match=r"student\.lr"):
            start("student", StudentParams, with_round=True, argv=["--params", str(path), "--round", "r1"])
        start("teacher", TeacherParams, argv=["--params", str(path)])  # the teacher does not read it
