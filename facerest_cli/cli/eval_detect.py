"""``facerest eval detect LABELS.jsonl``: precision, recall, AP, duplicates, landmark error and ms/MP per detector
and variant, scored against the hand-labelled detection set (``facerest_cli.detect.evaluate``).

``facerest eval`` (cli/eval.py) forwards its ``detect`` arguments to ``main(argv)``, which returns the exit code.
Every ``DetectConfig`` field is accepted as an option (``--score-threshold 0.6``, ``--max-side 1024``, and any field
added later), with ``--det-threshold`` and ``--det-size`` as the ``facerest run`` spellings, so the detectors are
scored exactly as ``facerest run`` would apply them with those options.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from facerest_cli.cli._common import err
from facerest_cli.errors import FacerestError, UsageError

SINGLE_DETECTORS = ("yunet", "retinaface-mnet", "scrfd")
# facerest run spellings -> DetectConfig fields, used when the config has no field of the option's own name.
_ALIASES = {"det_threshold": "score_threshold", "det_size": "max_side", "keep_all_detections": "keep_all"}

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": ["-h", "--help"]})
def detect(
    ctx: typer.Context,
    labels: Path = typer.Argument(..., help="Label file (JSONL), e.g. tests/data/detect_labels.jsonl."),
    detectors: Optional[str] = typer.Option(None, help="Comma-separated detector names (default: yunet, retinaface-mnet, scrfd and the run default)."),
    variants: str = typer.Option("1,0.25,0.5,2,3,mirror", help="Comma-separated variants: scales (INTER_AREA down, INTER_CUBIC up) and 'mirror'."),
    shared: Optional[Path] = typer.Option(None, help="Folder the label paths are relative to (default: $FACEREST_SHARED_DIR, else ../shared)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write every score, and each image's false and missed boxes, as JSON."),
    min_face: float = typer.Option(16.0, "--min-face", metavar="PX", help="Faces (and unmatched detections) below PX pixels (longer box side) in a variant are not scored."),
    device: str = typer.Option("cpu", help="auto | cpu | cuda | cuda:N (the torch detectors)."),
    weights_dir: List[Path] = typer.Option([], "--weights-dir", help="Read-only folder of weights searched first (repeatable); SHARED/weights is added when it exists."),
    offline: bool = typer.Option(False, "--offline", envvar="FACEREST_OFFLINE", help="Never download weights."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> int:
    """Score detectors against labelled photos, each as `facerest run` applies it. Extra options set DetectConfig
    fields (e.g. --det-threshold 0.6, --det-size 1024, --detector NAME)."""
    from facerest_cli.detect import evaluate as ev
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    overrides, extra_names = detect_options(ctx.args)
    names = _detector_names(detectors, extra_names)
    var_names = [v.strip() for v in variants.split(",") if v.strip()]
    for v in var_names:
        ev.parse_variant(v)
    shared_dir = shared or Path(os.environ.get("FACEREST_SHARED_DIR", "../shared"))
    labelled = ev.load_labels(labels, shared_dir)
    dirs = tuple(weights_dir) + ((shared_dir / "weights",) if (shared_dir / "weights").is_dir() else ())
    store = WeightsStore(WeightsConfig.from_env(weights_dirs=dirs, offline=offline))
    # Every detector is built before any image is scored: an unknown name or missing weights fails at once (exit 2).
    fns = {n: ev.run_detect_fn(_config(n, overrides), store, _device(device)) for n in names}
    results = _run_all(fns, labelled, var_names, min_face, quiet)
    print_table(results)
    if json_out is not None:
        doc = {"labels": str(labels), "shared": str(shared_dir), "min_face": min_face, "variants": var_names,
               "options": {k: _jsonable(v) for k, v in overrides.items()}, "results": [r.to_dict() for r in results]}
        json_out.write_text(json.dumps(doc, indent=1, allow_nan=True), encoding="utf-8")
    return 0


def main(argv: list[str]) -> int:
    """Run ``facerest eval detect`` with ``argv`` (the arguments after ``detect``); return the exit code."""
    from typer.exceptions import TyperException

    cmd = typer.main.get_command(app)
    try:
        rc = cmd.main(args=list(argv), prog_name="facerest eval detect", standalone_mode=False)
    except FacerestError as e:
        err(str(e))
        return e.exit_code
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except TyperException as e:  # click usage errors: bad option values, missing LABELS
        show = getattr(e, "show", None)
        if show is not None:
            show()
        else:
            err(str(e))
        return int(getattr(e, "exit_code", 2))
    return int(rc or 0)


def detect_options(args: list[str]) -> tuple[dict[str, object], list[str]]:
    """Unrecognised ``--name value`` / ``--name=value`` / ``--flag`` / ``--no-flag`` -> DetectConfig overrides.

    Values are converted to the field's annotated type (``none`` sets an optional field to None). ``--detector
    NAME`` (repeatable, or comma-separated) names detectors to score. Returns (overrides, detector names).
    Raises ``UsageError`` for a name that is not a DetectConfig field or a value of the wrong type.
    """
    from facerest_cli.config import DetectConfig

    kinds = _field_kinds(DetectConfig)
    out: dict[str, object] = {}
    dets: list[str] = []
    i = 0
    while i < len(args):
        tok = args[i]
        if not tok.startswith("--"):
            raise UsageError(f"unexpected argument {tok!r}")
        key, eq, val = tok[2:].partition("=")
        key = key.replace("-", "_")
        name = key if key in kinds else _ALIASES.get(key, key)
        neg = name not in kinds and key.startswith("no_") and kinds.get(_ALIASES.get(key[3:], key[3:]), (None,))[0] is bool
        if neg:
            name = _ALIASES.get(key[3:], key[3:])
        if name not in kinds or name == "min_face":
            choices = ", ".join("--" + f.replace("_", "-") for f in sorted(set(kinds) - {"min_face"}))
            raise UsageError(f"unknown option --{key.replace('_', '-')}; detector options are {choices} (and --det-threshold, --det-size)")
        kind, optional = kinds[name]
        if kind is bool and not eq:
            value: object = not neg
        else:
            if not eq:
                i += 1
                if i >= len(args):
                    raise UsageError(f"--{key.replace('_', '-')} needs a value")
                val = args[i]
            value = None if optional and val.lower() == "none" else _convert(val, kind, key)
        if name == "detector":
            dets += [d.strip() for d in str(value).split(",") if d.strip()]
        else:
            out[name] = value
        i += 1
    return out, dets


def _field_kinds(cls) -> dict[str, tuple[type, bool]]:
    """Field name -> (scalar type, may be None) from the dataclass annotations (Literal -> str)."""
    import types
    import typing

    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        hint, optional = hints.get(f.name, str), False
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            optional = len(args) < len(typing.get_args(hint))
            hint = args[0] if args else str
        if typing.get_origin(hint) is typing.Literal:
            hint = str
        elif typing.get_origin(hint) is tuple:
            hint = tuple
        out[f.name] = (hint if isinstance(hint, type) else str, optional)
    return out


def _convert(val: str, kind: type, key: str) -> object:
    try:
        if kind is bool:
            if val.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(val)
            return val.lower() in ("1", "true", "yes", "on")
        if kind in (int, float, str):
            return kind(val)
        if kind is tuple:
            return tuple(v.strip() for v in val.split(",") if v.strip())
    except ValueError:
        raise UsageError(f"--{key.replace('_', '-')}: expected {kind.__name__}, got {val!r}") from None
    return val


def _detector_names(opt: str | None, extra: list[str]) -> list[str]:
    from facerest_cli.config import DetectConfig

    names = [d.strip() for d in opt.split(",") if d.strip()] if opt else []
    names += extra
    if not names:
        names = list(SINGLE_DETECTORS) + [DetectConfig().detector]
    return list(dict.fromkeys(names))


def _config(name: str, overrides: dict[str, object]):
    from facerest_cli.config import DetectConfig

    try:
        return DetectConfig(**{**overrides, "detector": name})
    except (TypeError, ValueError) as e:
        raise UsageError(f"detector options: {e}") from None


def _device(device: str) -> str:
    from facerest_cli.restore.runtime import resolve_device

    return resolve_device(device)


def _jsonable(v: object) -> object:
    return list(v) if isinstance(v, tuple) else v


def _run_all(fns, labelled, var_names, min_face, quiet):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from facerest_cli.detect.evaluate import evaluate

    results = []
    cols = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("images"), TimeElapsedColumn())
    with Progress(*cols, console=Console(stderr=True), disable=quiet, transient=False) as prog:
        for name, fn in fns.items():
            task = prog.add_task(name, total=len(labelled))
            results.append(evaluate(fn, labelled, var_names, min_face, name=name, progress=lambda _li, t=task: prog.advance(t)))
    return results


def print_table(results) -> None:
    """Detector x variant (and each detector's total over variants) as a rich table on stdout."""
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Face detection on the labelled set (IoU 0.5)", show_lines=False)
    for c in ("detector", "variant", "images", "faces", "TP", "FP", "FN", "P", "R", "AP", "dup", "misplaced", "lm err", "ms/MP"):
        t.add_column(c, justify="left" if c in ("detector", "variant") else "right", no_wrap=True)
    for r in results:
        for i, s in enumerate([*r.variants, r.total]):
            t.add_row(
                r.name if i == 0 else "", s.variant, str(s.images), str(s.faces), str(s.tp), str(s.fp), str(s.fn),
                f"{s.precision:.3f}", f"{s.recall:.3f}", f"{s.ap:.3f}", str(s.duplicates), str(s.misplaced),
                "-" if s.landmark_error is None else f"{s.landmark_error:.3f}", f"{s.ms_per_mp:.0f}",
                end_section=s.variant == "total",
            )
    Console(width=max(160, Console().width)).print(t)  # never wrap or elide a detector name in a log


if __name__ == "__main__":  # python -m facerest_cli.cli.eval_detect LABELS ...
    sys.exit(main(sys.argv[1:]))
