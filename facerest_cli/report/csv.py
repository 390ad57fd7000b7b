"""``report.csv``: the JSONL report as a spreadsheet, one row per face, the same fields.

Columns follow the report line: top-level values as they are, objects flattened with dotted names
(``identity.cosine``, ``identity.thumbs.input``), lists as compact JSON text (``bbox``, ``landmarks``,
``attempts``). The column set is the union over all lines, in first-seen order, so every row has every column.
Text cells that a spreadsheet would run as a formula (starting with ``=``, ``+``, ``-``, ``@``) get a leading
apostrophe. The file is UTF-8 with a byte-order mark, so spreadsheet programs read accented names right.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterable

from facerest_cli.io.sinks import atomic_write_bytes
from facerest_cli.report.jsonl import read_records

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def flatten(rec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in rec.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, (list, dict)):
        return json.dumps(v, ensure_ascii=False, separators=(",", ":"))
    s = str(v)
    return "'" + s if s.startswith(_FORMULA_START) else s


def records_to_csv(records: Iterable[dict[str, Any]]) -> str:
    rows = [flatten(r) for r in records]
    columns = list(dict.fromkeys(k for r in rows for k in r))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def write_csv(jsonl: Path, dest: Path) -> int:
    """Write ``dest`` (atomically) from the report lines of ``jsonl``; returns the number of faces."""
    records = list(read_records(jsonl))
    atomic_write_bytes(Path(dest), records_to_csv(records).encode("utf-8-sig"))
    return len(records)
