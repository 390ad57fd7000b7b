"""Detection's last plausibility check runs in the 3D prior stage (issue 12, build item 2): a detection whose five
landmarks the 3D fit contradicts is not restored, and summary.json counts it."""

from __future__ import annotations

import json

from tests.conftest import read_jsonl, run_images, shared_file


def _run(src, out, **kw):
    from facerest_cli.config import IdentityConfig

    res = run_images([src], out, restorer_name="none", identity=IdentityConfig(recognizer="none"), **kw)
    assert res.exit_code == 0
    return json.loads((out / "summary.json").read_text()), read_jsonl(out / "report.jsonl")


def test_a_non_face_the_prior_contradicts_is_not_restored_and_is_counted(tmp_path):
    # gfpgan/whole_imgs/10045.png: three people and a round stair-post finial that every detector network
    # scores as a face (tests/data/detect_labels.jsonl labels it a false positive).
    src = shared_file("images", "gfpgan", "whole_imgs", "10045.png")
    summary, recs = _run(src, tmp_path / "a")
    assert summary["prior"]["landmarks_disagree"] == 1
    rejected = [r for r in recs if r["strength"] == 0.0]
    assert len(rejected) == 1 and any("3D prior's landmarks disagree" in n for n in rejected[0]["notes"])
    assert sum(r["strength"] > 0 for r in recs) == 3  # the three people are restored
    # --keep-all-detections turns every plausibility check off, this one included.
    summary, recs = _run(src, tmp_path / "b", keep_all=True)
    assert summary["prior"]["landmarks_disagree"] == 0 and all(r["strength"] > 0 for r in recs)


def test_real_faces_agree_with_the_prior(tmp_path):
    summary, recs = _run(shared_file("images", "insightface", "t1.jpg"), tmp_path / "t1")
    assert len(recs) == 6 and summary["prior"]["landmarks_disagree"] == 0
    assert summary["detection"]["faces"] == 6 and summary["detection"]["images"] == 1
