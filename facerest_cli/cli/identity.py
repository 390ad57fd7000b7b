"""``facerest identity compare A B``: is the largest face in A the same person as the largest face in B?"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import typer

from facerest_cli.cli._common import reports_errors

app = typer.Typer(help="Identity checks with the ArcFace recognizers.", no_args_is_help=True)


@app.command(no_args_is_help=True)
@reports_errors
def compare(
    a: Path = typer.Argument(..., help="First image.", show_default=False),
    b: Path = typer.Argument(..., help="Second image.", show_default=False),
    recognizer: str = typer.Option("auto", help="auto (arcface-r50 when installed, else arcface-mobilefacenet) | arcface-r50 | arcface-mobilefacenet | arcface-iresnet50 | arcface-iresnet100."),
    detector: str = typer.Option("yunet", help="Face detector: yunet | retinaface-mnet | retinaface-r50 | scrfd | scrfd-10g."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON: cosine, model, and per image the detected box, score and raw embedding norm."),
    device: str = typer.Option("auto", help="auto | cpu | cuda | cuda:N | mps."),
    weights_dir: List[Path] = typer.Option([], "--weights-dir", help="Read-only folder of weights searched first (repeatable)."),
    offline: bool = typer.Option(False, "--offline", envvar="FACEREST_OFFLINE", help="Never download; fail if weights are missing."),
) -> None:
    """Print the ArcFace cosine between the largest face in image A and the largest face in image B.

    Same person: usually above 0.5 with arcface-mobilefacenet (0.36 separates the 300 deepface test pairs).
    """
    from facerest_cli.config import DetectConfig
    from facerest_cli.detect.registry import build_detector
    from facerest_cli.errors import UsageError
    from facerest_cli.identity.compare import embed_faces, largest_face
    from facerest_cli.identity.recognizers import build_recognizer, cosine, resolve
    from facerest_cli.restore.runtime import resolve_device
    from facerest_cli.weights.cache import WeightsConfig, WeightsStore

    store = WeightsStore(WeightsConfig.from_env(weights_dirs=tuple(weights_dir), offline=offline))
    name = resolve(recognizer, store)
    if name is None:
        raise UsageError("--recognizer none: compare needs a recognizer")
    dev = resolve_device(device)
    det = build_detector(DetectConfig(detector=detector), store, dev)
    found = [largest_face(p, det) for p in (a, b)]  # a bad image fails before the recognizer loads
    rec = build_recognizer(name, store, dev)
    ea, eb = embed_faces(found, rec)
    cos = float(cosine(ea.vector[None], eb.vector[None])[0])
    if as_json:
        typer.echo(json.dumps({"cosine": round(cos, 4), "model": rec.name, "a": ea.to_dict(), "b": eb.to_dict()}, indent=2))
    else:
        typer.echo(f"{cos:.4f}")


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="identity")
