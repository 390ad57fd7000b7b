"""report.html: self-contained, offline, thumbnails beside it, rebuilt byte for byte from report.jsonl."""

from __future__ import annotations

import json
import re
import shutil
import time
from urllib.parse import unquote

import cv2

from tests.conftest import read_jsonl, run_cli


def _data(html: str) -> dict:
    m = re.search(r'<script id="facerest-data" type="application/json">(.*?)</script>', html, re.S)
    assert m, "no data block"
    return json.loads(m.group(1))


def test_html_is_self_contained_and_offline(solvay_report):
    html = (solvay_report / "report.html").read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assert not re.search(r"<script[^>]+src=", html) and not re.search(r"<link[^>]+stylesheet", html)
    assert "default-src 'none'" in html  # the CSP forbids every fetch but local images
    assert "base64" not in html and len(html.encode()) < 60_000  # measured 16 KB for 29 faces
    data = _data(html)
    assert len(data["faces"]) == 29 and data["models"] == ["arcface-mobilefacenet"]
    recs = read_jsonl(solvay_report / "report.jsonl")
    assert sum(f.get("fl", 0) for f in data["faces"]) == sum(r["identity"]["flag"] for r in recs) > 0
    for f, r in zip(data["faces"], recs):
        assert f["c"] == r["identity"]["cosine"] and f["i"] == r["face_index"]
        for key, tag in (("ti", "input"), ("to", "restored")):
            thumb = solvay_report / unquote(f[key])
            assert thumb.parent.name == "report_thumbs" and cv2.imread(str(thumb)).shape == (128, 128, 3)
    # The link to the full output image resolves from the page's folder.
    name, _, out_href = data["files"][0]
    assert name == "Solvay_conference_1927.png" and (solvay_report / unquote(out_href)).resolve() == (solvay_report / name).resolve()


def test_report_cli_rebuilds_the_same_bytes(solvay_report, tmp_path):
    out = tmp_path / "copy"
    shutil.copytree(solvay_report, out)
    html, csv_ = (out / "report.html").read_bytes(), (out / "report.csv").read_bytes()
    (out / "report.html").unlink()
    (out / "report.csv").unlink()
    proc = run_cli("report", out)
    assert proc.returncode == 0, proc.stderr
    assert "29 faces" in proc.stdout
    assert (out / "report.html").read_bytes() == html
    assert (out / "report.csv").read_bytes() == csv_


def test_report_cli_bad_input(tmp_path):
    missing = run_cli("report", tmp_path / "nothing")
    assert missing.returncode == 2 and "report.jsonl" in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    (tmp_path / "report.jsonl").write_text("this is not json\n")
    garbage = run_cli("report", tmp_path)
    assert garbage.returncode == 2 and "no readable report lines" in garbage.stderr


def test_markup_in_names_cannot_break_out():
    from facerest_cli.report.html import render_html

    evil = "</script><script>alert(1)</script><!--"
    page = render_html([{"source": "in/photo<!--&.png", "face_index": 0, "score": 0.9, "face_size": 40, "restorer": evil,
                         "strength": 1.0, "output": "out/photo<!--&.png"}], "out")
    assert page.count("</script>") == 2 and "<script>alert" not in page and "<!--" not in page
    data = _data(page)  # still valid JSON, and the strings come back intact
    assert data["faces"][0]["r"] == evil and data["files"][0][0] == "photo<!--&.png"


def test_links_from_the_page():
    from facerest_cli.report.html import href

    assert href("out/sub/a b#1.png", "out") == "sub/a%20b%231.png"
    assert href("/data/out/x.png", "/data/out") == "x.png"
    assert href("/photos/in/x.png", "out") == "file:///photos/in/x.png"
    assert href("../in/x.png", "out") == "../../in/x.png"
    assert href(None, "out") is None


def synthetic_records(n: int, thumbs: dict) -> list[dict]:
    """``n`` report lines over n/20 files: cosines spread over [0.3, 1), every 7th flagged."""
    recs = []
    for k in range(n):
        cos = round(0.3 + 0.7 * ((k * 7919) % n) / n, 4)
        recs.append({"source": f"/archive/box{k // 2000}/photo{k // 20:05d}.tif", "face_index": k % 20, "bbox": [1, 2, 3, 4],
                     "score": 0.5 + (k % 50) / 100, "face_size": 20 + k % 300, "detector": "yunet", "restorer": "gfpgan-1.4",
                     "strength": 1.0, "output": f"/archive/out/box{k // 2000}/photo{k // 20:05d}.tif",
                     "identity": {"model": "arcface-r50", "cosine": cos, "flag": k % 7 == 0, "threshold": 0.5,
                                  "decision": "restored", "thumbs": thumbs}})
    return recs


def test_ten_thousand_faces_stay_light(tmp_path):
    from facerest_cli.report.html import render_html

    recs = synthetic_records(10_000, {"input": "report_thumbs/a_in.jpg", "restored": "report_thumbs/a_out.jpg"})
    t0 = time.perf_counter()
    page = render_html(recs, "/archive/out")
    dt = time.perf_counter() - t0
    assert len(_data(page)["faces"]) == 10_000
    # Measured: 1.6 MB, 0.12 s. No image bytes inline: the thumbnails stay files.
    assert len(page.encode()) < 3_000_000 and dt < 5.0
    assert len(_data(page)["files"]) == 500
