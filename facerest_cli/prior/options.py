"""CLI option values -> ``PriorConfig`` (light: no torch)."""

from __future__ import annotations

from facerest_cli.config import PriorConfig
from facerest_cli.errors import UsageError
from facerest_cli.prior.pose import parse_knots


def prior_config(prior: str, pose_adaptive: bool | None, pose_knots: str | None, shape_threshold: float,
                 renderer: str, shape_check: bool = True, sgpn_render: str = "bfm09") -> PriorConfig:
    try:
        knots = parse_knots(pose_knots) if pose_knots else PriorConfig.pose_knots
    except ValueError as e:
        raise UsageError(f"--pose-knots: {e}") from None
    return PriorConfig(prior=prior, pose_adaptive=pose_adaptive, pose_knots=knots, shape_check=shape_check,
                       shape_threshold=shape_threshold, renderer=renderer, sgpn_render=sgpn_render)
