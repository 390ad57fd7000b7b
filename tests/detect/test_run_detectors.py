"""Detectors through `facerest run` that no other test ran: SCRFD on the shared photos, RetinaFace-R50 with an
official-layout file (issue 15's test gaps)."""

from __future__ import annotations

from tests.conftest import read_jsonl, run_images, shared_file


def _fast():
    from facerest_cli.config import IdentityConfig, PriorConfig

    return {"restorer_name": "none", "mask": "feather", "identity": IdentityConfig(recognizer="none"),
            "prior": PriorConfig(prior="off")}


def test_scrfd_finds_the_six_faces_of_t1_and_the_solvay_group(tmp_path):
    res = run_images(shared_file("images", "insightface", "t1.jpg"), tmp_path / "t1", detector="scrfd", **_fast())
    assert res.exit_code == 0 and res.faces == 6
    recs = read_jsonl(tmp_path / "t1" / "report.jsonl")
    assert {r["detector"] for r in recs} == {"scrfd"}
    for r in recs:  # landmarks inside their box: the 5 points are really the face's
        x1, y1, x2, y2 = r["bbox"]
        assert all(x1 - 2 <= x <= x2 + 2 and y1 - 2 <= y <= y2 + 2 for x, y in r["landmarks"])
    res = run_images(shared_file("images", "gpen", "imgs"), tmp_path / "solvay", detector="scrfd", **_fast())
    assert 27 <= res.faces <= 31


def test_retinaface_r50_runs_through_facerest_run_with_an_official_layout_file(tmp_path):
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore
    from tests.models.golden import write_official_checkpoint

    store = WeightsStore(WeightsConfig.from_env())
    ckpt = write_official_checkpoint("retinaface_resnet50", tmp_path / "detection_Resnet50_Final.pth")
    store.import_paths([ckpt], as_name="retinaface-r50", trust=True)
    res = run_images(shared_file("images", "insightface", "t1.jpg"), tmp_path / "out", detector="retinaface-r50", **_fast())
    assert res.exit_code == 0 and not res.failed
    recs = read_jsonl(tmp_path / "out" / "report.jsonl")
    assert len(recs) == res.faces
    assert all(r["detector"] == "retinaface-r50" for r in recs)
