"""Gaussian diffusion (respacing, q_sample, DDPM / DDIM steps) and the DifFace / 3Diffusion restorers.

The sampling goldens are the official 20-call runs (../shared/checkpoint-formats README, "Diffusion face
restorers"): they are reproduced through the restorer itself, from the LQ face to the final image, with stand-in
weights imported into the weights cache and one generator seeded like the official global one.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch

from facerest_cli.errors import UsageError
from facerest_cli.restore.diffusion import (
    DiffusionRestorer,
    SpacedDiffusion,
    face_generator,
    face_seed,
    generator_noise,
    plan_for,
    space_timesteps,
)
from tests.conftest import shared_file
from tests.models.golden import manifest, rel_l2, write_official_checkpoint


def _npz(name: str):
    return np.load(shared_file("checkpoint-formats", "goldens", name))


# ------------------------------------------------------------------------------------------------ schedules


def test_respacing_reproduces_the_official_timestep_maps():
    for name, respacing in (("difface_sampling.npz", "ddim50"), ("tdiffusion_sampling.npz", "50")):
        g = _npz(name)
        d = SpacedDiffusion(respacing)
        assert np.array_equal(d.timestep_map, g["timestep_map"]), name
        assert [d.original_timestep(i) for i in range(19, -1, -1)] == g["used_timesteps"].tolist(), name


def test_steps_give_the_official_schedules_and_noise_level():
    for kind, man in (("difface", "difface_iddpm_ffhq512"), ("3diffusion", "tdiffusion_unet")):
        official = manifest(man)["sampling_golden_official_schedule"]["used_timesteps_original"]
        plan = plan_for(kind, 100)
        d = SpacedDiffusion(plan.respacing)
        assert [d.original_timestep(i) for i in range(99, -1, -1)] == official, kind
    assert (plan_for("difface", 100).respacing, plan_for("3diffusion", 100).respacing) == ("ddim250", "250")
    assert (plan_for("difface", 20).respacing, plan_for("3diffusion", 20).respacing) == ("ddim50", "50")
    assert plan_for("difface").sampler == "ddim" and plan_for("difface").eta == 0.5
    assert plan_for("3diffusion").sampler == "ddpm"
    for steps in (10, 20, 50, 100):  # fewer calls start from the same noise level (t = 400 officially)
        for kind in ("difface", "3diffusion"):
            assert 400 <= plan_for(kind, steps).start_timestep <= 416, (kind, steps)
    assert plan_for("difface", 30).respacing == "75"  # no integer stride keeps 75 steps: plain spacing
    for bad in (0, 401):
        with pytest.raises(UsageError, match="--steps"):
            plan_for("difface", bad)


def test_space_timesteps_sections_and_ddim_strides():
    assert space_timesteps(1000, "ddim250") == set(range(0, 1000, 4))
    kept = sorted(space_timesteps(300, "10,15,20"))  # the official docstring's example
    assert len(kept) == 45 and kept[0] == 0 and kept[-1] == 299
    assert [sum(lo <= k < lo + 100 for k in kept) for lo in (0, 100, 200)] == [10, 15, 20]
    assert sorted(space_timesteps(1000, "250"))[:4] == [0, 4, 8, 12] and 401 in space_timesteps(1000, "250")
    with pytest.raises(ValueError, match="integer stride"):
        space_timesteps(1000, "ddim3000")


# ----------------------------------------------------------------------------------------------- arithmetic


def _reference_step(x, eps, v, noise, keep, i, eta):
    """Ho et al. / Nichol & Dhariwal / Song et al. in float64, from the kept original steps (not the module)."""
    betas = np.linspace(1e-4, 0.02, 1000)
    abar_all = np.cumprod(1 - betas)
    abar = abar_all[keep]
    ab, abp = abar[i], (abar[i - 1] if i > 0 else 1.0)
    beta = 1 - ab / abp
    x, eps, v, noise = (t.double() for t in (x, eps, v, noise))
    x0 = ((x - np.sqrt(1 - ab) * eps) / np.sqrt(ab)).clamp(-1, 1)
    mean = np.sqrt(abp) * beta / (1 - ab) * x0 + np.sqrt(1 - beta) * (1 - abp) / (1 - ab) * x

    def post_var(j):
        a, a_prev = abar[j], (abar[j - 1] if j > 0 else 1.0)
        return (1 - a / a_prev) * (1 - a_prev) / (1 - a)

    min_log = np.log(post_var(i) if i > 0 else post_var(1))  # clipped at the chain's start
    frac = (v + 1) / 2
    logvar = frac * np.log(beta) + (1 - frac) * min_log
    ddpm = mean + (i > 0) * torch.exp(0.5 * logvar) * noise
    sigma = eta * np.sqrt((1 - abp) / (1 - ab)) * np.sqrt(1 - ab / abp)
    ddim = x0 * np.sqrt(abp) + np.sqrt(1 - abp - sigma**2) * eps + (i > 0) * sigma * noise
    return x0, ddpm, ddim


@pytest.mark.parametrize("index", [0, 1, 7, 49])
def test_ddpm_and_ddim_steps_follow_the_published_formulas(index):
    d = SpacedDiffusion("ddim50")
    g = torch.Generator().manual_seed(index)
    x, eps, noise = (torch.randn(2, 3, 8, 8, generator=g) for _ in range(3))
    v = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    out = torch.cat([eps, v], dim=1)
    x0, ddpm, ddim = _reference_step(x, eps, v, noise, list(range(0, 1000, 20)), index, 0.5)
    a = d.ddpm_step(out, x, index, noise)
    b = d.ddim_step(out, x, index, noise, eta=0.5)
    # float32 coefficients, as officially: sqrt(1 - abar_prev - sigma^2) near index 0 loses ~1e-6
    assert rel_l2(a.pred_xstart, x0.numpy()) <= 1e-5
    assert rel_l2(a.sample, ddpm.numpy()) <= 1e-5
    assert rel_l2(b.sample, ddim.numpy()) <= 1e-5


def test_q_sample_reproduces_the_golden_start_exactly():
    for name, respacing, seed in (("difface_sampling.npz", "ddim50", 12345), ("tdiffusion_sampling.npz", "50", 60000)):
        g = _npz(name)
        noise = generator_noise([torch.Generator().manual_seed(seed)], (3, 512, 512))()
        x_t = SpacedDiffusion(respacing).q_sample((torch.from_numpy(g["im_hq"]) - 0.5) / 0.5, 20, noise)
        assert rel_l2(x_t, g["x_T"]) <= 1e-7, name


# ---------------------------------------------------------------------------------------------- face noise


def test_a_face_noise_stream_depends_on_seed_and_key_only():
    draw = lambda g: torch.randn(4, generator=g)  # noqa: E731
    assert torch.equal(draw(face_generator(7, "sha:0")), draw(face_generator(7, "sha:0")))
    assert not torch.equal(draw(face_generator(7, "sha:0")), draw(face_generator(7, "sha:1")))
    assert not torch.equal(draw(face_generator(7, "sha:0")), draw(face_generator(8, "sha:0")))
    # The derivation is a contract: resumed runs and other machines must find the same seed.
    want = int.from_bytes(hashlib.sha256(b"facerest-diffusion:7:sha:0").digest()[:8], "little") & (2**63 - 1)
    assert face_seed(7, "sha:0") == want
    # In a batch, each row comes from its own generator: a face's rows do not depend on its neighbours.
    batch = generator_noise([face_generator(1, k) for k in "abc"], (2, 3))()
    alone = generator_noise([face_generator(1, "b")], (2, 3))()
    assert torch.equal(batch[1], alone[0])


# ------------------------------------------------------------------------------------- restorers, small size


@pytest.fixture(scope="module")
def small_nets():
    """The real UNet architectures (random weights) and a small SwinIR, run on 64x64 crops: logic, not numbers."""
    from facerest_cli.models.iddpm_unet import difface_unet, tdiffusion_unet
    from facerest_cli.models.swinir import SwinIR

    torch.manual_seed(0)
    return difface_unet().eval(), tdiffusion_unet().eval(), SwinIR(embed_dim=24, depths=(2,), num_heads=(2,)).eval()


def _faces(n: int, seed: int, size: int = 64) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("batch_size", [1, 3])
def test_a_face_gives_the_same_pixels_alone_and_among_others(small_nets, batch_size):
    unet, _, swinir = small_nets
    r = DiffusionRestorer("difface", unet, swinir, steps=2, seed=5, batch_size=batch_size, size=64)
    faces, keys = _faces(8, 1), [f"img{i // 3}:{i % 3}" for i in range(8)]
    mixed = r(faces, keys).faces
    alone = r(faces[5:6], keys[5:6]).faces
    assert torch.equal(mixed[5], alone[0])  # bit for bit in float32, hence in uint8
    order = [7, 5, 0, 2, 1, 6, 3, 4]
    shuffled = r(faces[order], [keys[i] for i in order]).faces
    assert torch.equal(shuffled[1], mixed[5])
    again = DiffusionRestorer("difface", unet, swinir, steps=2, seed=5, batch_size=batch_size, size=64)
    assert torch.equal(again(faces[5:6], keys[5:6]).faces, alone)  # a resumed run
    assert rel_l2(mixed[4], mixed[5].numpy()) > 0.05  # the faces really differ


def test_seed_and_key_choose_the_noise(small_nets):
    unet, _, swinir = small_nets
    face = _faces(1, 2)
    out = {
        (seed, key): DiffusionRestorer("difface", unet, swinir, steps=1, seed=seed, size=64)(face, [key]).faces
        for seed, key in ((1, "a"), (2, "a"), (1, "b"))
    }
    assert not torch.equal(out[(1, "a")], out[(2, "a")]) and not torch.equal(out[(1, "a")], out[(1, "b")])


def test_3diffusion_uses_the_render_and_requires_it(small_nets):
    _, unet3d, swinir = small_nets
    r = DiffusionRestorer("3diffusion", unet3d, swinir, steps=2, batch_size=2, size=64)
    face, keys = _faces(1, 3), ["x:0"]
    calls = []
    a = r(face, keys, _faces(1, 4), progress=lambda k, n: calls.append((k, n)))
    b = r(face, keys, _faces(1, 5))
    assert calls == [(1, 2), (2, 2)]
    assert a.plan.sampler == "ddpm" and a.plan.respacing == "5" and a.faces.shape == (1, 3, 64, 64)
    assert rel_l2(a.faces, b.faces.numpy()) > 1e-3  # the render reaches the UNet
    assert float(a.faces.min()) >= 0 and float(a.faces.max()) <= 1
    with pytest.raises(UsageError, match="needs the 3D-prior render"):
        r(face, keys)
    with pytest.raises(UsageError, match="takes no 3D render"):
        DiffusionRestorer("difface", small_nets[0], swinir, size=64)(face, keys, _faces(1, 4))
    with pytest.raises(UsageError, match="lacks the 3D branch"):
        DiffusionRestorer("3diffusion", small_nets[0], swinir)
    with pytest.raises(UsageError, match="1 faces but 2 keys"):
        r(face, ["a", "b"], _faces(1, 4))
    with pytest.raises(ValueError, match=r"H, W multiples of 64; got \(1, 9, 96, 96\)"):
        unet3d(torch.zeros(1, 9, 96, 96), torch.tensor([1]))


# ----------------------------------------------------------------------------------- loading official files


def test_official_file_layouts_load_and_the_entries_name_both_networks(tmp_path):
    """DifFace's loader unwraps {'state_dict': ...} and strips 'module.': both layouts load strictly."""
    from facerest_cli.models.arch import ArchSpec
    from facerest_cli.models.registry import arch_spec
    from facerest_cli.restore.diffusion import load_network_file
    from facerest_cli.weights.registry import load_registry

    reg = load_registry()
    for name, unet_arch, swinir_file in (("difface", "difface_unet", "swinir_restoration512_L1.pth"),
                                         ("3diffusion", "tdiffusion_unet", "General_Face_ffhq512.pth")):
        e = reg.get(name)
        assert e.role == "restorer" and e.arch == unet_arch and e.non_commercial and e.template == "ffhq512"
        assert [f.arch for f in e.files] == ["", "difface_swinir"] and e.files[1].name == swinir_file
        assert all(isinstance(arch_spec(a), ArchSpec) for a in (e.arch, e.files[1].arch))
    assert reg.get("3diffusion").user_import_only and "pan.baidu.com" in reg.get("3diffusion").notes
    release = "https://github.com/zsyOAOA/DifFace/releases/download/V1.0/"
    assert [f.url for f in reg.get("difface").files] == [(release + f.name,) for f in reg.get("difface").files]

    e = reg.get("difface")
    flat = write_official_checkpoint("difface_swinir", tmp_path / "flat.pth")
    sd = torch.load(flat, weights_only=True)
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}, "iters_start": torch.tensor(5)}, wrapped)
    a = load_network_file(e, e.files[1], flat)
    b = load_network_file(e, e.files[1], wrapped)
    assert type(a).__name__ == "SwinIR" and not b.training
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ------------------------------------------------------------------------------- the official runs (slow)


def _install(name: str, file: str, manifest_name: str, tmp_path) -> None:
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    ckpt = write_official_checkpoint(manifest_name, tmp_path / file)
    store = WeightsStore(WeightsConfig.from_env())
    res = store.import_paths([ckpt], as_name=name, file=file, trust=True, warn=lambda msg: None)
    assert [r.action for r in res] == ["installed"], res
    ckpt.unlink()


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind, unet_manifest, golden_file, seed",
    [("difface", "difface_iddpm_ffhq512", "difface_sampling.npz", 12345),
     ("3diffusion", "tdiffusion_unet", "tdiffusion_sampling.npz", 60000)],
)
def test_the_restorer_reproduces_the_official_20_call_run(kind, unet_manifest, golden_file, seed, tmp_path):
    """LQ face -> SwinIR -> q_sample -> 20 UNet calls -> image, every stored array within rel-L2 1e-4."""
    from facerest_cli.restore.diffusion import load_diffusion_restorer
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore
    from facerest_cli.weights.registry import load_registry

    entry = load_registry().get(kind)
    _install(kind, entry.files[0].name, unet_manifest, tmp_path)
    _install(kind, entry.files[1].name, "difface_swinir", tmp_path)  # 3Diffusion ships DifFace's SwinIR config
    restorer = load_diffusion_restorer(kind, WeightsStore(WeightsConfig.from_env()), steps=20)
    assert restorer.plan.respacing == ("ddim50" if kind == "difface" else "50")

    g = _npz(golden_file)
    tol = manifest(unet_manifest)["sampling_golden"]["tolerance"]
    assert "relative L2 <= 1e-04 for every stored array" in tol["rule"]
    y0 = _npz("difface_swinir.npz")["input"]  # 0143.png: the LQ face of both runs
    if kind == "difface":
        assert np.array_equal(g["y0"], y0)
    render = torch.from_numpy(g["threeD"]) if kind == "3diffusion" else None
    seen: dict[str, torch.Tensor] = {}

    def observe(k, step):
        if k == 0:
            seen["x_T"] = step.sample.clone()
        if k == 1:
            seen["pred_xstart_1"] = step.pred_xstart.clone()
        if k in (1, 5, 10, 20):
            seen[f"x_after_{k}"] = step.sample.clone()

    res = restorer.restore(torch.from_numpy(y0), ["golden"], render,
                           generators=[torch.Generator().manual_seed(seed)], observe=observe)
    errs = {k: rel_l2(v, g[k]) for k, v in seen.items()}
    errs["sample"] = rel_l2(seen["x_after_20"], g["sample"])
    errs["image"] = rel_l2(res.faces, g["image"])
    errs["im_hq"] = rel_l2(res.estimate, g["im_hq"])
    assert set(errs) == {"x_T", "x_after_1", "pred_xstart_1", "x_after_5", "x_after_10", "x_after_20", "sample",
                         "image", "im_hq"}
    assert max(errs.values()) <= 1e-4, errs  # measured: DifFace <= 2.8e-6, 3Diffusion <= 1.4e-6
