"""The diffusion restorers through `facerest run` (issue 18, acceptance 2-3), with make_checkpoint weights imported
as a user imports real ones. One denoising step per face keeps it to about a minute on 2 CPU cores; the sampling
itself is proven against the official runs in test_diffusion.py."""

from __future__ import annotations

import shutil

import pytest

from tests.conftest import read_jsonl, run_images, shared_file
from tests.models.golden import write_official_checkpoint

pytestmark = pytest.mark.slow


def _install(name: str, files: dict[str, str], tmp) -> None:
    """Each file of a two-network entry from its manifest, imported into the cache as that file."""
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    store = WeightsStore(WeightsConfig.from_env())
    for file_name, manifest_name in files.items():
        ckpt = write_official_checkpoint(manifest_name, tmp / file_name)
        res = store.import_paths([ckpt], as_name=name, file=file_name, trust=True, warn=lambda msg: None)
        assert [r.action for r in res] == ["installed"], res
        ckpt.unlink()


def _fast(**kw):
    from facerest_cli.config import IdentityConfig, PriorConfig

    # bf16 (torch autocast, what --precision auto runs on this CPU): the same determinism, a third of the CI time.
    opts = {"mask": "feather", "identity": IdentityConfig(recognizer="none"), "steps": 1, "prior": PriorConfig(prior="off"),
            "precision": "bf16"}
    opts.update(kw)
    return opts


def test_difface_runs_on_t1_and_a_face_is_the_same_alone_in_a_batch_and_resumed(tmp_path):
    _install("difface", {"iddpm_ffhq512_ema500000.pth": "difface_iddpm_ffhq512",
                         "swinir_restoration512_L1.pth": "difface_swinir"}, tmp_path)
    blake = shared_file("images", "gfpgan", "whole_imgs", "Blake_Lively.jpg")
    alone = run_images([blake], tmp_path / "alone", restorer_name="difface", batch_size=1, **_fast())
    assert alone.exit_code == 0 and alone.faces >= 1
    src = tmp_path / "mixed_in"
    src.mkdir()
    for p in (blake, shared_file("images", "insightface", "t1.jpg"), shared_file("images", "gfpgan", "whole_imgs", "00.jpg")):
        shutil.copy(p, src / p.name)
    mixed = run_images([src], tmp_path / "mixed", restorer_name="difface", batch_size=8, **_fast())
    assert mixed.exit_code == 0 and mixed.faces >= 8  # t1's 6 faces and the others share restorer calls
    assert (tmp_path / "mixed" / "Blake_Lively.jpg").read_bytes() == (tmp_path / "alone" / "Blake_Lively.jpg").read_bytes()
    recs = read_jsonl(tmp_path / "mixed" / "report.jsonl")
    t1 = [r for r in recs if r["source"].endswith("t1.jpg")]
    assert len(t1) == 6
    for r in recs:
        d = r["diffusion"]
        assert (d["restorer"], d["steps"], d["seed"], d["sampler"]) == ("difface", 1, 12345, "ddim")
        assert d["face_key"].endswith(f":0:{r['face_index']}") and isinstance(d["face_seed"], int)
    # Resume: the photo is redone on its own, with the same noise, to the same bytes.
    before = (tmp_path / "mixed" / "Blake_Lively.jpg").read_bytes()
    (tmp_path / "mixed" / "Blake_Lively.jpg").unlink()
    again = run_images([src], tmp_path / "mixed", restorer_name="difface", batch_size=8, resume=True, **_fast())
    assert again.exit_code == 0
    assert (tmp_path / "mixed" / "Blake_Lively.jpg").read_bytes() == before
    assert len(read_jsonl(tmp_path / "mixed" / "report.jsonl")) == len(recs)


def test_3diffusion_runs_on_t1_with_the_mean_face_render_and_reports_it(tmp_path):
    from facerest_cli.config import PriorConfig

    _install("3diffusion", {"checkpoint_acmm24.pth": "tdiffusion_unet", "General_Face_ffhq512.pth": "difface_swinir"},
             tmp_path)
    out = tmp_path / "out"
    res = run_images([shared_file("images", "insightface", "t1.jpg")], out, restorer_name="3diffusion",
                     **_fast(prior=PriorConfig(sgpn_render="mean-face")))
    assert res.exit_code == 0 and res.faces == 6
    recs = read_jsonl(out / "report.jsonl")
    assert {r["diffusion"]["render"] for r in recs} == {"3ddfa-mean-face"}
    assert {r["diffusion"]["sampler"] for r in recs} == {"ddpm"}
    assert all(any("mean-face" in n for n in r["notes"]) for r in recs)
