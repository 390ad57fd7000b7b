"""``facerest report OUT``: rebuild the contact sheet (report.html) and report.csv from OUT/report.jsonl."""

from __future__ import annotations

from pathlib import Path

import typer

from facerest_cli.cli._common import reports_errors


@reports_errors
def report(
    out: Path = typer.Argument(..., help="The output folder of a facerest run (it holds report.jsonl).", show_default=False),
) -> None:
    """Rebuild OUT/report.html (contact sheet: input and restored face side by side, sortable by identity cosine)
    and OUT/report.csv from OUT/report.jsonl alone. Thumbnails are those the run wrote in OUT/report_thumbs/."""
    from facerest_cli.errors import UsageError
    from facerest_cli.report.html import HTML_NAME, write_reports

    jsonl = out / "report.jsonl"
    if not jsonl.is_file():
        raise UsageError(f"{jsonl}: not found; expected the output folder of a facerest run")
    n = write_reports(out)
    if n == 0 and jsonl.stat().st_size > 0:
        raise UsageError(f"{jsonl}: no readable report lines; expected one JSON object per line, as facerest run writes")
    typer.echo(f"{n} faces -> {out / HTML_NAME} and {out / 'report.csv'}")


def register(app: typer.Typer) -> None:
    app.command(no_args_is_help=True)(report)
