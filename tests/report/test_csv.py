"""report.csv: the JSONL's fields as spreadsheet columns."""

from __future__ import annotations

import csv
import io
import json

from tests.conftest import read_jsonl


def _read(path):
    text = path.read_bytes()
    assert text.startswith(b"\xef\xbb\xbf")  # UTF-8 BOM: spreadsheets read accented names right
    return list(csv.DictReader(io.StringIO(text.decode("utf-8-sig"))))


def test_csv_has_the_jsonl_fields(solvay_report):
    from facerest_cli.report.csv import flatten

    recs = read_jsonl(solvay_report / "report.jsonl")
    rows = _read(solvay_report / "report.csv")
    assert len(rows) == len(recs) == 29
    keys = list(dict.fromkeys(k for r in recs for k in flatten(r)))
    assert list(rows[0]) == keys
    for want in ("source", "face_index", "score", "face_size", "restorer", "strength", "output",
                 "identity.model", "identity.cosine", "identity.flag", "identity.thumbs.input"):
        assert want in keys, want
    for rec, row in zip(recs, rows):
        assert float(row["identity.cosine"]) == rec["identity"]["cosine"]
        assert row["identity.flag"] == ("true" if rec["identity"]["flag"] else "false")
        assert json.loads(row["bbox"]) == rec["bbox"] and int(row["face_index"]) == rec["face_index"]


def test_csv_union_of_columns_and_formula_guard():
    from facerest_cli.report.csv import records_to_csv

    text = records_to_csv([
        {"source": "=HYPERLINK(\"x\")", "face_index": 0, "identity": {"cosine": 0.5, "thumbs": {"input": "a.jpg"}}},
        {"source": "b.png", "face_index": 1, "attempts": [{"strength": 1.0, "cosine": 0.2}], "frame": 3},
    ])
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["source", "face_index", "identity.cosine", "identity.thumbs.input", "attempts", "frame"]
    assert rows[0]["source"] == "'=HYPERLINK(\"x\")" and rows[0]["attempts"] == "" and rows[1]["identity.cosine"] == ""
    assert json.loads(rows[1]["attempts"]) == [{"strength": 1.0, "cosine": 0.2}] and rows[1]["frame"] == "3"
