"""Every restorer end to end through `facerest run`, with stand-in checkpoints made by make_checkpoint.py and
imported into the weights cache the way a user imports a converted checkpoint (issue: checkpoint-exact)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import read_jsonl, run_images, shared_file
from tests.models.golden import manifest, write_official_checkpoint

# restorer -> manifest. SGPN needs the 3D prior stage; it is covered in tests/prior.
RESTORERS = {
    "gfpgan-1.4": "gfpgan_v1.4",
    "gfpgan-1.3": "gfpgan_v1.3",
    "codeformer": "codeformer",
    "gpen-bfr-512": "gpen_bfr_512",
    "restoreformer-pp": "restoreformer_pp",
}


def install_standin(name: str, manifest_name: str, tmp: Path) -> None:
    """make_checkpoint.py file in the official layout -> `weights import --as NAME --trust` (user-pinned)."""
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    ckpt = write_official_checkpoint(manifest_name, tmp / manifest(manifest_name)["checkpoint_file"].split(" ")[0])
    store = WeightsStore(WeightsConfig.from_env())
    res = store.import_paths([ckpt], as_name=name, trust=True, warn=lambda msg: None)
    assert [r.action for r in res] == ["installed"], res
    ckpt.unlink()  # the cache holds its own verified copy
    assert store.state(name) in ("pinned", "user-pinned", "verified")


@pytest.mark.parametrize("name", list(RESTORERS))
def test_restorer_runs_end_to_end(name, tmp_path):
    torch.manual_seed(0)
    install_standin(name, RESTORERS[name], tmp_path)
    src = shared_file("images", "codeformer", "whole_imgs", "04.jpg")
    res = run_images(src, tmp_path / "out", restorer_name=name, save_crops=True)
    assert res.failed == [] and res.processed == 1
    assert res.faces == 1  # the same face YuNet finds with --restorer none
    recs = read_jsonl(tmp_path / "out" / "report.jsonl")
    assert [r["restorer"] for r in recs] == [name]
    out = cv2.imread(str(tmp_path / "out" / "04.jpg"))
    inp = cv2.imread(str(src))
    assert out.shape == inp.shape
    restored = cv2.imread(recs[0]["restored_crop"])
    crop_in = cv2.imread(recs[0]["input_crop"])
    assert np.abs(restored.astype(int) - crop_in.astype(int)).mean() > 2, "the network did not change the face"


def test_gray_faces_stay_gray_with_a_real_restorer(tmp_path):
    install_standin("gfpgan-1.4", "gfpgan_v1.4", tmp_path)
    gray_dir = shared_file("images", "codeformer", "gray_faces")
    inputs = [gray_dir / n for n in ("Einstein01.png", "Einstein02.png", "Hepburn01.png")]
    res = run_images(inputs, tmp_path / "out", restorer_name="gfpgan-1.4", aligned=True, batch_size=3)
    assert res.failed == [] and res.processed == 3
    for src in inputs:
        out = cv2.imread(str(tmp_path / "out" / src.name), cv2.IMREAD_UNCHANGED)
        if out.ndim == 3:
            assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2]), src.name
        inp = cv2.imread(str(src), cv2.IMREAD_GRAYSCALE)
        gray_out = out if out.ndim == 2 else out[..., 0]
        assert np.abs(gray_out.astype(int) - inp.astype(int)).mean() > 2, "the restorer did not change the face"


def _install_sgpn_with_d3dfr(tmp: Path) -> None:
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    install_standin("sgpn", "sgpn", tmp)
    ckpt = write_official_checkpoint("deep3dfacerecon_resnet50", tmp / "epoch_20.pth")
    res = WeightsStore(WeightsConfig.from_env()).import_paths([ckpt], as_name="d3dfr", file="epoch_20.pth", trust=True,
                                                             warn=lambda m: None)
    assert [r.action for r in res] == ["installed"]


def test_sgpn_without_bfm09_exits_with_where_to_get_it(tmp_path):
    from facerest_cli.errors import WeightsError

    _install_sgpn_with_d3dfr(tmp_path)
    with pytest.raises(WeightsError, match="(?i)basel") as e:
        run_images(shared_file("images", "codeformer", "whole_imgs", "04.jpg"), tmp_path / "out", restorer_name="sgpn")
    assert e.value.exit_code == 2
    assert not (tmp_path / "out" / "04.jpg").exists()
    msg = str(e.value)  # where to get it, the command once, and what works without it
    assert msg.count("facerest weights import 01_MorphableModel.mat") == 1 and "--sgpn-render mean-face" in msg


def test_sgpn_runs_end_to_end_with_the_mean_face_render(tmp_path):
    _install_sgpn_with_d3dfr(tmp_path)
    src = shared_file("images", "codeformer", "whole_imgs", "04.jpg")
    res = run_images(src, tmp_path / "out", restorer_name="sgpn", sgpn_render="mean-face", save_crops=True)
    assert res.failed == [] and res.processed == 1 and res.faces == 1
    rec = read_jsonl(tmp_path / "out" / "report.jsonl")[0]
    assert rec["restorer"] == "sgpn"
    assert any("mean-face" in n for n in rec.get("notes", [])), rec.get("notes")
    restored, crop_in = cv2.imread(rec["restored_crop"]), cv2.imread(rec["input_crop"])
    assert np.abs(restored.astype(int) - crop_in.astype(int)).mean() > 2
