"""``OUT/compare.html``: the restorer comparison as one offline page -- the mean table on top (best value of each
column in bold), then every face of the sample: its input, its reference (with ``--reference``) and each
setting's restored face side by side, each setting's scores under its face.

Self-contained like ``report.html`` (``facerest_cli/report/html.py``): inline CSS, no script, no external file or
font, and a Content-Security-Policy that forbids any fetch but local images. Thumbnails are small JPEG files in
``OUT/compare_thumbs/`` (``report.thumbs.thumbnail``), written one face at a time, so a large sample stays light;
each thumbnail links to the full crop. The page is static HTML (it opens the same with scripts disabled).
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING

from facerest_cli.io.sinks import atomic_write_bytes

if TYPE_CHECKING:
    from facerest_cli.metrics.compare import CompareResult

HTML_NAME = "compare.html"
THUMB_DIR = "compare_thumbs"
THUMB_SIZE = 224  # px: enough to judge skin, eyes and hair texture; about 12 KB a face at quality 85
SHOWN = 168  # CSS px the thumbnails are shown at (sharp on high-density screens)

_CSS = """\
:root { --bg: #f6f5f2; --fg: #1d1d1b; --muted: #6b6a66; --card: #fff; --line: #dddad3; --best: #2e6b34; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
header, section { padding: 10px 16px; }
header { border-bottom: 1px solid var(--line); }
h1 { font-size: 18px; margin: 0 0 4px; }
h2 { font-size: 16px; margin: 8px 0; }
h3 { font-size: 13px; margin: 0 0 6px; word-break: break-all; }
.meta, .notes { color: var(--muted); }
.notes { margin: 6px 0 0; padding-left: 18px; font-size: 12px; }
table.means { border-collapse: collapse; background: var(--card); font-variant-numeric: tabular-nums; }
.scroll { overflow-x: auto; }
table.means th, table.means td { border: 1px solid var(--line); padding: 3px 8px; text-align: right; }
table.means td { white-space: nowrap; }
table.means th { font-size: 12px; max-width: 7em; }
table.means th:first-child, table.means td:first-child { text-align: left; }
table.means td.best { font-weight: 700; color: var(--best); }
.face { margin: 0 0 12px; background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 8px; content-visibility: auto; contain-intrinsic-size: 900px 330px; }
.row { display: flex; gap: 8px; overflow-x: auto; align-items: flex-start; }
figure { margin: 0; flex: 0 0 auto; width: %(shown)spx; font-size: 11px; }
figure a { display: block; }
figure img, figure .missing { display: block; width: %(shown)spx; height: %(shown)spx; background: #e9e7e1; border-radius: 3px; }
figure .missing { display: flex; align-items: center; justify-content: center; color: var(--muted); }
figcaption { margin-top: 4px; }
figcaption b { display: block; overflow-wrap: anywhere; font-size: 12px; }
table.sc { border-collapse: collapse; width: 100%%; font-variant-numeric: tabular-nums; }
table.sc th { text-align: left; font-weight: normal; color: var(--muted); padding: 0 4px 0 0; }
table.sc td { text-align: right; padding: 0; }
table.sc td.best { font-weight: 700; color: var(--best); }
""" % {"shown": SHOWN}


def _e(s: object) -> str:
    return html.escape(str(s), quote=True)


def _best(values: dict[str, float | None], higher: bool) -> set[str]:
    """The keys holding the best value (ties included); none when fewer than two values can be compared."""
    vals = {k: v for k, v in values.items() if v is not None and not math.isnan(v)}
    if len(vals) < 2 or len(set(vals.values())) < 2:
        return set()
    best = max(vals.values()) if higher else min(vals.values())
    return {k for k, v in vals.items() if v == best}


class _Thumbs:
    """Writes ``compare_thumbs/NAME.jpg`` from a crop file; remembers what it wrote (stale files are removed)."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.dir = out_dir / THUMB_DIR
        self.written: set[str] = set()

    def make(self, crop_path: str | None, name: str) -> str | None:
        import cv2

        from facerest_cli.report.thumbs import thumbnail

        if not crop_path:
            return None
        img = cv2.imread(str(crop_path), cv2.IMREAD_COLOR)
        if img is None:
            return None
        atomic_write_bytes(self.dir / name, thumbnail(img, THUMB_SIZE))
        self.written.add(name)
        return f"{THUMB_DIR}/{name}"

    def remove_stale(self) -> None:
        """Thumbnails of an earlier comparison in the same folder that this page does not show."""
        if self.dir.is_dir():
            for p in self.dir.glob("*.jpg"):
                if p.name not in self.written:
                    p.unlink(missing_ok=True)


def _figure(thumb: str | None, link: str | None, title: str, caption: str = "") -> str:
    from urllib.parse import quote

    if thumb is None:
        img = f'<div class="missing">{_e("no face")}</div>'
    else:
        img = (f'<img src="{_e(quote(thumb, safe="/"))}" alt="{_e(title)}" width="{SHOWN}" height="{SHOWN}" '
               f'loading="lazy">')
        if link:
            img = f'<a href="{_e(link)}">{img}</a>'
    name = _e(title).replace("@", "<wbr>@")  # long setting labels wrap before an option, not mid-number
    return f"<figure>{img}<figcaption><b>{name}</b>{caption}</figcaption></figure>"


def render(r: "CompareResult", out_dir: Path, thumbs: _Thumbs) -> str:
    from facerest_cli.metrics.compare import column_title, fmt, higher_is_better
    from facerest_cli.report.html import href

    labels = [run.setting.label for run in r.runs]
    cols = r.table_columns
    parts = ["<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src \'self\' file: data:; '
             'style-src \'unsafe-inline\'">',
             '<meta name="generator" content="facerest">', "<title>facerest: restorers compared</title>",
             '<link rel="icon" href="data:,">', f"<style>\n{_CSS}</style>", "</head>", "<body>", "<header>",
             "<h1>facerest: restorers compared</h1>",
             f'<p class="meta">{len(r.faces)} faces, {len(labels)} settings. Arrows: higher (↑) or lower (↓) is '
             "better; the best value of each column is bold. Click a face for the full crop.</p>", "</header>",
             "<section>", "<h2>Means</h2>", '<div class="scroll"><table class="means">', "<thead><tr><th>setting</th><th>faces</th>"]
    parts += [f"<th>{_e(column_title(c))}</th>" for c in cols] + ["<th>restore s</th></tr></thead>", "<tbody>"]
    best = {c: _best({lab: r.mean(lab, c) for lab in labels}, higher_is_better(c)) for c in cols}
    for run in r.runs:
        lab = run.setting.label
        cells = "".join(f'<td{" class=best" if lab in best[c] else ""}>{_e(fmt(c, r.mean(lab, c)))}</td>' for c in cols)
        parts.append(f"<tr><td>{_e(lab)}</td><td>{r.counts.get(lab, 0)}</td>{cells}<td>{run.seconds:.1f}</td></tr>")
    parts += ["</tbody>", "</table></div>"]
    notes = [*(f"{k}: {v}" for k, v in r.models.items()), *r.skipped.values(), *r.notes, *r.failed]
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    parts += ["</section>", "<section>", "<h2>Faces</h2>"]
    for n, face in enumerate(r.faces):
        first = next((r.crops[lab][face.label] for lab in labels if face.label in r.crops.get(lab, {})), None)
        figs = [_figure(thumbs.make(first and first["input"], f"{face.slug}_in.jpg"),
                        href(first and first["input"], out_dir), "input")]
        ref = r.reference_crops.get(face.label)
        if ref is not None:
            figs.append(_figure(thumbs.make(ref, f"{face.slug}_ref.jpg"), href(ref, out_dir), "reference"))
        rows = {lab: r.values.get(lab, {}).get(face.label, {}) for lab in labels}
        face_best = {c: _best({lab: rows[lab].get(c) for lab in labels}, higher_is_better(c)) for c in r.columns}
        for k, lab in enumerate(labels):
            crop = r.crops.get(lab, {}).get(face.label)
            scores = "".join(
                f'<tr><th>{_e(column_title(c, arrow=False))}</th><td{" class=best" if lab in face_best[c] else ""}>'
                f"{_e(fmt(c, rows[lab][c]))}</td></tr>" for c in r.columns if rows[lab].get(c) is not None)
            caption = f'<table class="sc">{scores}</table>' if scores else ""
            figs.append(_figure(thumbs.make(crop and crop["restored"], f"{face.slug}_s{k:02d}.jpg"),
                                href(crop and crop["restored"], out_dir), lab, caption))
        parts.append(f'<article class="face" id="face-{n}"><h3>{_e(face.label)}</h3>'
                     f'<div class="row">{"".join(figs)}</div></article>')
    parts += ["</section>", "</body>", "</html>", ""]
    return "\n".join(parts)


def write_compare_html(r: "CompareResult", out_dir: Path) -> Path:
    """Write ``out_dir/compare.html`` and its thumbnails (atomically, one face at a time); returns the page."""
    out_dir = Path(out_dir)
    thumbs = _Thumbs(out_dir)
    page = render(r, out_dir, thumbs)
    dest = out_dir / HTML_NAME
    atomic_write_bytes(dest, page.encode("utf-8"))
    thumbs.remove_stale()
    return dest
