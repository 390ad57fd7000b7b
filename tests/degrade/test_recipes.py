"""The recipes draw their parameters inside the published ranges, with the published probabilities, and the
kernels are what they claim to be."""

from __future__ import annotations

import math

import numpy as np
import pytest

from facerest_cli.degrade import recipes
from facerest_cli.degrade.kernels import gaussian_kernel, motion_kernel
from facerest_cli.errors import UsageError

N = 400  # draws per recipe: cheap (no pixels), enough for the probability bounds below


def _draws(name: str, w: int = 512, h: int = 512) -> list[list[dict]]:
    return [recipes.draw(name, np.random.default_rng(1000 + i), w, h) for i in range(N)]


def _ops(steps, op):
    return [s for s in steps if s["op"] == op]


@pytest.mark.parametrize(
    "name, sigma, down, noise, jpeg",
    [
        ("gfpgan", (0.1, 10), (0.8, 8), (0, 20), (60, 100)),
        ("codeformer", (0.1, 10), (1, 12), (0, 15), (60, 100)),
        ("codeformer-large", (1, 15), (4, 30), (0, 20), (30, 80)),
    ],
)
def test_basicsr_family_ranges(name, sigma, down, noise, jpeg):
    kinds, jitter, gray, jitter_pt = [], 0, 0, 0
    for steps in _draws(name):
        assert [s["op"] for s in steps[:5]] == ["blur", "resize", "noise", "jpeg", "resize"]
        b = steps[0]
        assert b["kernel_size"] == 41
        kinds.append(b["kind"])
        for k in ("sigma_x", "sigma_y"):
            if k in b:
                assert sigma[0] <= b[k] <= sigma[1]
        if b["kind"] == "aniso":
            assert -math.pi <= b["theta"] <= math.pi
        d = steps[1]
        assert down[0] <= d["factor"] <= down[1]
        assert d["size"] == [int(512 // d["factor"]), int(512 // d["factor"])]
        assert noise[0] <= steps[2]["sigma"] <= noise[1]
        assert jpeg[0] <= steps[3]["quality"] < jpeg[1] and isinstance(steps[3]["quality"], int)
        assert steps[4]["size"] == [512, 512]
        extra = steps[5:]
        jitter += bool(_ops(extra, "color_jitter"))
        gray += bool(_ops(extra, "gray"))
        jitter_pt += bool(_ops(extra, "color_jitter_pt"))
        for s in _ops(extra, "color_jitter"):
            assert all(abs(v) <= 20 / 255 for v in s["shift"])
        for s in _ops(extra, "color_jitter_pt"):
            f = s["factors"]
            assert sorted(s["order"]) == ["brightness", "contrast", "hue", "saturation"]
            assert 0.5 <= f["brightness"] <= 1.5 and 0.5 <= f["contrast"] <= 1.5
            assert 0 <= f["saturation"] <= 1.5 and -0.1 <= f["hue"] <= 0.1
    assert 0.42 <= kinds.count("iso") / N <= 0.58  # 50/50 iso / aniso
    if name == "gfpgan":
        assert 0.23 <= jitter / N <= 0.37 and 0.23 <= jitter_pt / N <= 0.37  # p 0.3 each
        assert gray <= 0.03 * N  # p 0.01
    else:
        assert jitter == gray == jitter_pt == 0


def test_sgpn_grids_and_repeats():
    reps, motion = [], 0
    for steps in _draws("sgpn"):
        n_rep = max(s["repeat"] for s in steps) + 1
        reps.append(n_rep)
        for rep in range(n_rep):
            part = [s for s in steps if s["repeat"] == rep]
            blur = part[0]
            if blur["op"] == "blur":
                assert blur["kind"] == "iso" and round(blur["sigma_x"] * 10) == blur["sigma_x"] * 10
                assert 0 <= blur["sigma_x"] <= 5
            else:
                assert blur["op"] == "motion_blur" and blur["kernel_size"] == 41
                motion += 1
            for d in _ops(part, "resize"):
                if d.get("role") == "downsample":
                    assert d["factor"] in range(2, 21) and d["size"] == [512 // d["factor"]] * 2
            (n,) = _ops(part, "noise")
            assert n["sigma"] in range(0, 11)
            (j,) = _ops(part, "jpeg")
            assert j["quality"] in range(30, 71)
            assert part[-1]["op"] == "resize" and part[-1]["size"] == [512, 512]
    assert set(reps) == {1, 2} and 0.42 <= reps.count(2) / N <= 0.58
    assert 0.4 <= motion / sum(reps) <= 0.6


def test_frex_grids():
    used = {"blur": 0, "motion_blur": 0, "noise": 0, "jpeg": 0}
    for steps in _draws("frex"):
        assert steps[-1] == {"op": "resize", "role": "restore_size", "size": [512, 512], "interpolation": "linear"}
        assert len(steps) >= 2  # at least one degradation
        for s in steps[:-1]:
            if s["op"] == "blur":
                assert s["sigma_x"] in range(0, 21)
            elif s["op"] == "motion_blur":
                assert s["kernel_size"] in (21, 31, 41, 51, 61, 71)
            elif s["op"] == "resize":
                assert s["factor"] in range(0, 17)
            elif s["op"] == "noise":
                assert s["sigma"] in range(0, 51)
            elif s["op"] == "jpeg":
                assert s["quality"] in range(50, 101)
            used[s["op"]] = used.get(s["op"], 0) + 1
    for op in ("blur", "motion_blur", "noise", "jpeg"):
        assert 0.4 <= used[op] / N <= 0.62, (op, used[op])


def test_bicubic_and_unknown_recipes():
    steps = recipes.draw("bicubic-x8", np.random.default_rng(0), 512, 500)
    assert steps[0]["size"] == [64, 63] and steps[0]["interpolation"] == "bicubic"
    assert steps[1]["size"] == [512, 500]
    for bad in ("bicubic-x1", "gfpgan2", "bicubic"):
        with pytest.raises(UsageError):
            recipes.check_recipe(bad)


def test_gaussian_kernel_facts():
    k = gaussian_kernel(41, 3.0)
    assert abs(k.sum() - 1) < 1e-12 and np.unravel_index(k.argmax(), k.shape) == (20, 20)
    ax = np.arange(-20, 21)
    assert abs(np.sqrt((k.sum(axis=0) * ax**2).sum()) - 3.0) < 1e-3  # the requested sigma
    a = gaussian_kernel(41, 6.0, 1.0, theta=0.0)
    assert (a.sum(axis=0) * ax**2).sum() > 30 * (a.sum(axis=1) * ax**2).sum()  # wide in x, narrow in y
    b = gaussian_kernel(41, 6.0, 1.0, theta=math.pi / 2)
    assert np.allclose(b, a.T, atol=1e-12)  # rotating by 90 degrees swaps the axes
    assert gaussian_kernel(5, 0.0)[2, 2] == 1.0


def test_motion_kernels_are_seeded_centred_streaks():
    for seed in range(20):
        k, path = motion_kernel(41, seed)
        k2, _ = motion_kernel(41, seed)
        assert np.array_equal(k, k2)
        assert k.min() >= 0 and abs(k.sum() - 1) < 1e-12
        ys, xs = np.mgrid[0:41, 0:41]
        assert abs((k * xs).sum() - 20) < 0.5 and abs((k * ys).sum() - 20) < 0.5  # centred: no image shift
        support = np.argwhere(k > 0)
        extent = (support.max(0) - support.min(0)).max()
        assert extent <= 40 and extent >= 0.25 * path.length  # a streak, not a dot, within the kernel
        assert 0.3 * 40 <= path.length <= 40
    assert not np.array_equal(motion_kernel(41, 0)[0], motion_kernel(41, 1)[0])
