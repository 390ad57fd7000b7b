"""Fixtures shared by the archival tests."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.archival._data import RUN_ARGS, cli_cmd, cli_env, forty_images, jsonl_lines, outputs_bytes
from tests.conftest import REPO


@dataclass(frozen=True)
class Reference:
    src: Path  # 40 small photos
    outputs: dict[str, bytes]  # an uninterrupted CLI run's outputs
    face_keys: list[tuple[str, int]]  # (file name, face index) of its report.jsonl, sorted


@pytest.fixture(scope="session")
def forty(tmp_path_factory) -> Reference:
    """40 photos and one uninterrupted `facerest run` over them (the pipeline is deterministic with --restorer
    none: any other run over them must give the same bytes)."""
    root = tmp_path_factory.mktemp("forty")
    src = root / "in"
    forty_images(src, 40)
    ref = root / "ref"
    p = subprocess.run(cli_cmd("run", src, "-o", ref, *RUN_ARGS), env=cli_env(), cwd=str(REPO), capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    keys = sorted((Path(r["source"]).name, r["face_index"]) for r in jsonl_lines(ref / "report.jsonl"))
    assert len(keys) == len(set(keys)) >= 35  # deepface photos: about one face each
    return Reference(src, outputs_bytes(ref), keys)
