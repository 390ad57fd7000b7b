"""Writers for ``EvalResult``: a paper-style Markdown table (means, then per image), CSV (one row per image and a
final ``mean`` row) and JSON (everything, including skipped columns and the models used). Every file is
written atomically. Values are printed as computed; a column that was not computed is empty, never zero."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from facerest_cli.io.sinks import atomic_write_bytes
from facerest_cli.metrics.evaluate import HIGHER_IS_BETTER, EvalResult

_DIGITS = {"psnr": 2, "psnr_y": 2, "ssim": 4, "ssim_y": 4, "lpips_vgg": 4, "lpips_alex": 4, "niqe": 3, "fid": 2,
           "id_cos": 4, "id_deg": 2, "lmd": 2, "shape": 3}
_TITLE = {"psnr": "PSNR", "psnr_y": "PSNR-Y", "ssim": "SSIM", "ssim_y": "SSIM-Y", "lpips_vgg": "LPIPS-vgg",
          "lpips_alex": "LPIPS-alex", "niqe": "NIQE", "fid": "FID", "id_cos": "ID cos", "id_deg": "Deg",
          "lmd": "LMD", "shape": "Shape"}


def fmt(col: str, v: float | None) -> str:
    if v is None:
        return ""
    if math.isinf(v):
        return "inf"
    return f"{v:.{_DIGITS.get(col, 4)}f}"


def header(col: str) -> str:
    arrow = "↑" if HIGHER_IS_BETTER.get(col, False) else "↓"
    return f"{_TITLE.get(col, col)} {arrow}"


def summary_markdown(r: EvalResult, include_skipped: bool = True) -> str:
    """One-row table of the means (and FID), as papers print it, with the models and (optionally) the skipped
    columns' reasons."""
    cols = list(r.columns) + (["fid"] if r.fid is not None else [])
    vals = [fmt(c, r.means.get(c)) for c in r.columns] + ([fmt("fid", r.fid)] if r.fid is not None else [])
    lines = [f"| images | {' | '.join(header(c) for c in cols)} |",
             f"|---:|{'---:|' * len(cols)}",
             f"| {len(r.rows)} | {' | '.join(vals)} |"]
    if r.models:
        lines += ["", "Computed with: " + "; ".join(f"{k}: {v}" for k, v in r.models.items()) + "."]
    for line in (list(r.skipped.values()) if include_skipped else []) + r.notes:
        lines += ["", f"Note: {line}"]
    return "\n".join(lines) + "\n"


def to_markdown(r: EvalResult) -> str:
    out = ["# facerest eval", "", "## Means", "", summary_markdown(r)]
    if r.rows and r.columns:
        out += ["## Per image", "", f"| image | {' | '.join(header(c) for c in r.columns)} |",
                f"|---|{'---:|' * len(r.columns)}"]
        out += [f"| {row['path']} | {' | '.join(fmt(c, row.get(c)) for c in r.columns)} |" for row in r.rows]
        out.append("")
    if r.failed:
        out += ["## Not scored", ""] + [f"- {line}" for line in r.failed] + [""]
    return "\n".join(out)


def to_csv(r: EvalResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["path", *r.columns])
    for row in r.rows:
        w.writerow([row["path"], *(_csv_num(row.get(c)) for c in r.columns)])
    w.writerow(["mean", *(_csv_num(r.means.get(c)) for c in r.columns)])
    if r.fid is not None:
        w.writerow(["fid", _csv_num(r.fid)] + [""] * max(0, len(r.columns) - 1))
    return buf.getvalue()


def _csv_num(v: float | None) -> str:
    if v is None:
        return ""
    return "inf" if math.isinf(v) else repr(float(v))


def write_reports(r: EvalResult, *, json_path: Path | None = None, csv_path: Path | None = None,
                  md_path: Path | None = None) -> None:
    if json_path is not None:
        atomic_write_bytes(Path(json_path), (json.dumps(r.to_dict(), indent=2) + "\n").encode())
    if csv_path is not None:
        atomic_write_bytes(Path(csv_path), to_csv(r).encode())
    if md_path is not None:
        atomic_write_bytes(Path(md_path), to_markdown(r).encode())
