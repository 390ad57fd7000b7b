"""The pose-adaptive strength curve and its knots."""

from __future__ import annotations

import numpy as np
import pytest

from facerest_cli.prior.pose import DEFAULT_KNOTS, parse_knots, pose_factor


def test_default_curve_values():
    assert DEFAULT_KNOTS == ((30.0, 1.0), (75.0, 0.3))
    assert pose_factor(0) == 1.0 and pose_factor(29.9) == 1.0 and pose_factor(30) == 1.0
    assert pose_factor(52.5) == pytest.approx(0.65)  # half way: smoothstep(0.5) = 0.5
    assert pose_factor(75) == pytest.approx(0.3) and pose_factor(89) == pytest.approx(0.3)
    assert pose_factor(-60) == pose_factor(60)
    # smoothstep(u) = 3u^2 - 2u^3 at u = 1/3
    assert pose_factor(45) == pytest.approx(1 - 0.7 * (3 / 9 - 2 / 27))


def test_curve_is_smooth_and_monotone():
    y = np.linspace(0, 90, 9001)
    f = np.array([pose_factor(v) for v in y])
    assert (np.diff(f) <= 1e-12).all()
    # Flat at the knots (no kink): the slope just inside each knot is ~0.
    assert abs(pose_factor(30.01) - 1.0) < 1e-6 and abs(pose_factor(74.99) - 0.3) < 1e-6
    assert np.abs(np.diff(f)).max() < 0.7 * 1.5 / 45 * 0.01 + 1e-9  # max slope of smoothstep is 1.5/span


def test_three_knots():
    knots = parse_knots("20:1, 40:0.8 ,70:0.2")
    assert knots == ((20.0, 1.0), (40.0, 0.8), (70.0, 0.2))
    assert pose_factor(40, knots) == pytest.approx(0.8) and pose_factor(55, knots) == pytest.approx(0.5)


@pytest.mark.parametrize("text", ["", "30", "30:1,20:0.5", "30:1.5", "95:0.2", "a:b"])
def test_bad_knots(text):
    with pytest.raises(ValueError):
        parse_knots(text)


def test_bad_knots_are_a_usage_error():
    from facerest_cli.errors import UsageError
    from facerest_cli.prior.options import prior_config

    with pytest.raises(UsageError, match="--pose-knots"):
        prior_config("auto", None, "30:1,20:0.5", 0.1, "auto")
    with pytest.raises(UsageError, match="--prior"):
        prior_config("3ddfa-mb9", None, None, 0.1, "auto")
