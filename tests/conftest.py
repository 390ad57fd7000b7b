"""Shared test fixtures. ../shared is test data every developer and CI has: a missing file there is a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACEREST_SHARED_DIR", REPO.parent / "shared")).resolve()
WEIGHTS = Path(os.environ.get("FACEREST_WEIGHTS_DIR", SHARED / "weights")).resolve()
IMAGES = SHARED / "images"
FORMATS = SHARED / "checkpoint-formats"


def shared_file(*parts: str) -> Path:
    """A file under ../shared; fails (never skips) when it is missing, as CI requires."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.fail(f"missing shared test file {p} (../shared must sit beside the repo)")
    return p


def weights_file(*parts: str) -> Path:
    p = WEIGHTS.joinpath(*parts)
    if not p.exists():
        pytest.fail(f"missing shared weights file {p} (set FACEREST_WEIGHTS_DIR=../shared/weights)")
    return p


@pytest.fixture(scope="session", autouse=True)
def _session_env(tmp_path_factory):
    """Before any module-scoped fixture: weights from ../shared, never the user's real cache, never offline."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FACEREST_HOME", str(tmp_path_factory.mktemp("facerest_session_home")))
    mp.setenv("FACEREST_WEIGHTS_DIR", str(WEIGHTS))
    mp.delenv("FACEREST_OFFLINE", raising=False)
    # Tests run the networks as the official code does (torch, fp32) unless they test a backend: every test has its
    # own FACEREST_HOME, so OpenVINO conversions could never be cached between them. tests/backend covers the rest.
    mp.setenv("FACEREST_BACKEND", "torch")
    mp.setenv("FACEREST_PRECISION", "fp32")
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory, monkeypatch):
    """Every test gets its own empty FACEREST_HOME (cache, lock file), and reads ../shared/weights read-only."""
    home = tmp_path_factory.mktemp("facerest_home")
    monkeypatch.setenv("FACEREST_HOME", str(home))
    monkeypatch.setenv("FACEREST_WEIGHTS_DIR", str(WEIGHTS))
    monkeypatch.delenv("FACEREST_OFFLINE", raising=False)
    yield home


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    """Deterministic CPU kernels for golden comparisons; TF32 never applies on CPU."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def run_cli(*args: str, env: dict | None = None, timeout: float = 300):
    """Run the real ``facerest`` CLI in a subprocess; returns CompletedProcess (text stdout/stderr)."""
    import subprocess
    import sys

    e = dict(os.environ)
    e.setdefault("FACEREST_WEIGHTS_DIR", str(WEIGHTS))
    e["PYTHONUNBUFFERED"] = "1"
    if env:
        e.update(env)
    return subprocess.run(
        [sys.executable, "-m", "facerest_cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=e,
        timeout=timeout,
        cwd=str(REPO),
    )


def run_images(inputs, out_dir, restorer=None, restorer_name=None, **opts):
    """In-process ``facerest run`` (same code path as the CLI minus argument parsing): returns RunResult.

    ``restorer`` injects a Restorer object (test doubles); ``restorer_name`` is ``--restorer NAME``; other keyword
    arguments are fields of the config dataclasses (``batch_size=8``, ``aligned=True``...)."""
    if restorer_name is not None:
        opts["restorer"] = restorer_name
    from facerest_cli.config import (
        BlendConfig,
        DetectConfig,
        IdentityConfig,
        OutputConfig,
        PriorConfig,
        RestoreConfig,
        RunConfig,
        VideoConfig,
    )
    from facerest_cli.job import run_job
    from facerest_cli.weights.cache import WeightsConfig

    groups = {"detect": DetectConfig, "restore": RestoreConfig, "blend": BlendConfig, "output": OutputConfig,
              "identity": IdentityConfig, "prior": PriorConfig, "video": VideoConfig}
    parts: dict = {k: {} for k in groups}
    top: dict = {}
    for k, v in opts.items():
        if k == "restorer" and restorer_name is None:
            raise TypeError("use restorer_name= for --restorer NAME")
        if k in groups and isinstance(v, groups[k]):  # a whole config group, e.g. prior=PriorConfig(prior="off")
            parts[k] = {f: getattr(v, f) for f in groups[k].__dataclass_fields__}
            continue
        for g, cls in groups.items():
            if k in cls.__dataclass_fields__:
                parts[g][k] = v
                break
        else:
            top[k] = v
    parts["output"]["out_dir"] = Path(out_dir)
    parts["restore"].setdefault("backend", os.environ.get("FACEREST_BACKEND", "torch"))  # see _session_env
    parts["restore"].setdefault("precision", os.environ.get("FACEREST_PRECISION", "fp32"))
    cfg = RunConfig(
        inputs=tuple(Path(p) for p in (inputs if isinstance(inputs, (list, tuple)) else [inputs])),
        **{g: groups[g](**parts[g]) for g in groups},
        **top,
    )
    return run_job(cfg, WeightsConfig.from_env(), restorer=restorer)


def read_jsonl(path: Path) -> list[dict]:
    import json

    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
