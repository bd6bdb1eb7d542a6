"""What every stage script does first: read its arguments, validate params.yaml, set the seed."""

from __future__ import annotations

import argparse
import sys

from pipeline.compute import resolve_compute
from pipeline.config import ConfigError, Params, load_params
from pipeline.tracking import TrackingUnreachable, check_tracking_uri, project_root, tracking_uri


def start(
    description: str, with_round: bool = False, argv: list[str] | None = None
) -> tuple[Params, str | None]:
    """Parse `--params` (and `--round`), validate the params file, check that its compute device is here and
    that the MLflow tracking server answers; exit with a clear message when one fails, before the stage reads
    data or trains."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    if with_round:
        parser.add_argument("--round", required=True, help="round name from params.yaml rounds, e.g. r1")
    args = parser.parse_args(argv)
    try:
        params = load_params(args.params)
        if with_round:
            params.round_config(args.round)  # validates the round and its overrides up front
        resolve_compute(params.compute)  # compute.device: cuda without a GPU stops here
        check_tracking_uri(tracking_uri(project_root()))
    except (ConfigError, TrackingUnreachable) as err:
        sys.exit(f"error: {err}")
    return params, getattr(args, "round", None)
