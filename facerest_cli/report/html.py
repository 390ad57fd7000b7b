"""``report.html``: a self-contained, offline contact sheet of every face, built from ``report.jsonl`` alone.

One HTML file with its CSS, script and data inline (no external files, no network: a Content-Security-Policy
forbids any fetch but local images), and the thumbnails as files next to it (``report_thumbs/``, written by the
identity stage; see ``report.thumbs``). For each face: input and restored thumbnails side by side, source file,
face index, detector score, cosine, strength and guard decision, and a link to the full output image. The page
sorts and filters by cosine ("flagged only", "cosine below") and draws the faces a page at a time, so 10,000
faces open quickly.

The output depends only on the report lines and the run's output folder as recorded (``base``), never on the
clock or the machine: ``facerest report OUT`` rebuilds the same bytes.
"""

from __future__ import annotations

import html
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import quote

from facerest_cli.io.sinks import atomic_write_bytes
from facerest_cli.report.jsonl import read_records

HTML_NAME = "report.html"


def _asset(name: str) -> str:
    return resources.files("facerest_cli.report").joinpath(name).read_text(encoding="utf-8")


def href(path: str | None, base: str | Path) -> str | None:
    """A link from a page in ``base`` to ``path`` (both as the run wrote them). Paths of the same kind (both
    relative to the run's working directory, or both absolute) give a relative link that does not depend on
    where the page is opened from; an absolute path otherwise gives a file URL."""
    if not path:
        return None
    p, b = str(path), str(base)
    if os.path.isabs(p) != os.path.isabs(b):
        if not os.path.isabs(p):
            p = os.path.abspath(p)
        return "file://" + quote(Path(p).as_posix(), safe="/")
    rel = os.path.relpath(p, b)
    return quote(Path(rel).as_posix(), safe="/")


def _display_names(sources: list[str]) -> dict[str, str]:
    """Sources shown relative to their common folder (the input root, usually)."""
    if not sources:
        return {}
    parents = [os.path.dirname(s) for s in sources]
    try:
        root = os.path.commonpath(parents) if all(parents) else ""
    except ValueError:  # a mix of absolute and relative paths
        root = ""
    return {s: (os.path.relpath(s, root) if root else s) for s in sources}


def _r(x: Any, n: int) -> Any:
    return round(float(x), n) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def sheet_data(records: Iterable[dict[str, Any]], base: str | Path) -> dict[str, Any]:
    """The page's data: ``files`` (``[name, source link, output link]``) and one compact object per face."""
    records = list(records)
    names = _display_names(list(dict.fromkeys(r.get("source", "") for r in records)))
    files: list[list[Any]] = []
    file_idx: dict[tuple[str, str | None], int] = {}
    faces = []
    models: list[str] = []
    for r in records:
        key = (r.get("source", ""), r.get("output"))
        if key not in file_idx:
            file_idx[key] = len(files)
            files.append([names.get(key[0], key[0]), href(key[0], base), href(key[1], base)])
        ident = r.get("identity") or {}
        thumbs = ident.get("thumbs") or {}
        if ident.get("model") and ident["model"] not in models:
            models.append(ident["model"])
        face: dict[str, Any] = {
            "k": file_idx[key],
            "i": r.get("face_index"),
            "sc": _r(r.get("score"), 4),
            "sz": _r(r.get("face_size"), 1),
            "c": _r(ident.get("cosine"), 4),
            "fl": 1 if ident.get("flag") else 0,
            "st": _r(r.get("strength"), 4),
            "r": r.get("restorer", ""),
            "d": ident.get("decision"),
            "ti": quote(thumbs["input"], safe="/") if thumbs.get("input") else None,
            "to": quote(thumbs["restored"], safe="/") if thumbs.get("restored") else None,
        }
        if r.get("frame") is not None:
            face["fr"] = r["frame"]
        pose = r.get("pose") or {}
        if pose.get("yaw") is not None:
            face["p"] = [_r(pose.get(k), 1) for k in ("yaw", "pitch", "roll")]
            lm = _crop_points(pose.get("landmarks68"), r.get("matrix"))
            if lm:
                face["lm"] = lm
        shape = r.get("shape") or {}
        if shape.get("distance") is not None:
            face["sh"] = [_r(shape["distance"], 3), 1 if shape.get("flag") else 0]
        if r.get("attempts"):
            face["a"] = [[_r(a.get("strength"), 4), _r(a.get("cosine"), 4)] for a in r["attempts"]]
        faces.append({k: v for k, v in face.items() if v is not None})
    return {"files": files, "faces": faces, "models": models}


def _crop_points(points: Any, matrix: Any, crop_size: float = 512.0) -> list[float] | None:
    """68 image-space landmarks -> flat [x0, y0, x1, ...] in [0, 1] of the aligned crop (what the input thumbnail
    shows), through the record's image -> crop matrix. Every supported restorer crops at 512."""
    if not points or not matrix:
        return None
    try:
        (a, b, c), (d, e, f) = matrix
        out: list[float] = []
        for x, y in points:
            out += [round((a * x + b * y + c + 0.5) / crop_size, 4), round((d * x + e * y + f + 0.5) / crop_size, 4)]
        return out
    except (TypeError, ValueError):
        return None


def render_html(records: Iterable[dict[str, Any]], base: str | Path, title: str = "facerest contact sheet") -> str:
    data = json.dumps(sheet_data(records, base), ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # Inside <script>, "<" could close the element or open a comment: escape every one (valid JSON still).
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    page = _asset("contact_sheet.html")
    for marker, value in (("__CSS__", _asset("contact_sheet.css").rstrip("\n")),
                          ("__JS__", _asset("contact_sheet.js").rstrip("\n")),
                          ("__TITLE__", html.escape(title))):
        page = page.replace(marker, value)
    return page.replace("__DATA__", data)  # last: the data may contain the other markers' text


def write_html(jsonl: Path, dest: Path, base: str | Path) -> int:
    """Write ``dest`` (atomically) from the report lines of ``jsonl``; returns the number of faces."""
    records = list(read_records(jsonl))
    atomic_write_bytes(Path(dest), render_html(records, base).encode("utf-8"))
    return len(records)


def recorded_base(out_dir: Path) -> str:
    """The output folder as the run named it (summary.json), which the paths in report.jsonl start from;
    ``out_dir`` itself when there is no summary."""
    try:
        opts = json.loads((Path(out_dir) / "summary.json").read_text(encoding="utf-8"))["options"]
        return str(opts["output"]["out_dir"])
    except (OSError, ValueError, KeyError, TypeError):
        return str(out_dir)


def write_reports(out_dir: Path, base: str | Path | None = None) -> int:
    """``report.csv`` and ``report.html`` in ``out_dir`` from its ``report.jsonl``; returns the number of faces."""
    from facerest_cli.report.csv import write_csv

    out_dir = Path(out_dir)
    jsonl = out_dir / "report.jsonl"
    if not jsonl.is_file():  # the run stopped before any face was reported
        return 0
    write_csv(jsonl, out_dir / "report.csv")
    return write_html(jsonl, out_dir / HTML_NAME, recorded_base(out_dir) if base is None else base)
