"""Adding a restorer takes a weights.toml table and an architecture module, nothing else (issue 15): a toy
restorer registered from a fragment in $FACEREST_HOME/models runs end to end through the real CLI."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch

from tests.conftest import read_jsonl, run_cli, shared_file

FRAGMENT = """
[toy-negate]
role = "restorer"
arch = "tests.restore.toy_arch:TOY"
license = "MIT"
source = "tests/restore/toy_arch.py"
template = "ffhq512"
input = {{ size = 512, color = "rgb", mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }}
[[toy-negate.files]]
name = "toy_negate.pth"
url = ["http://127.0.0.1:9/toy_negate.pth"]
sha256 = "{sha}"
size = {size}
"""


def test_a_toy_restorer_from_a_fragment_and_a_module_runs_end_to_end(tmp_path, _isolated_home):
    from tests.restore.toy_arch import negate_state_dict

    ckpt = tmp_path / "toy_negate.pth"
    torch.save(negate_state_dict(), ckpt)
    data = ckpt.read_bytes()
    models = _isolated_home / "models"
    models.mkdir()
    (models / "toy.toml").write_text(FRAGMENT.format(sha=hashlib.sha256(data).hexdigest(), size=len(data)))

    listed = run_cli("weights", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "toy-negate" in {e["name"] for e in json.loads(listed.stdout)}
    imported = run_cli("weights", "import", ckpt)  # recognised by its sha256, like any published file
    assert imported.returncode == 0 and "toy-negate" in imported.stdout, imported.stdout + imported.stderr
    assert "toy-negate" in run_cli("run", "--help", env={"COLUMNS": "250"}).stdout

    src = shared_file("images", "gfpgan", "cropped_faces", "Adele_crop.png")
    out = tmp_path / "out"
    proc = run_cli("run", src, "-o", out, "--aligned", "--restorer", "toy-negate", "--recognizer", "none",
                   "--prior", "off", "--quiet", "--offline")
    assert proc.returncode == 0, proc.stderr
    (rec,) = read_jsonl(out / "report.jsonl")
    assert rec["restorer"] == "toy-negate"
    import cv2

    before = cv2.imread(str(src)).astype(np.int32)
    after = cv2.imread(str(out / src.name)).astype(np.int32)
    # The network computed -x in [-1, 1], i.e. 1 - p on pixels: the output is the negative, to rounding.
    assert np.abs(after - (255 - before)).max() <= 1
