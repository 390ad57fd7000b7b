"""Acceptance 5: two `facerest weights fetch` processes of one model end with one verified file, fetched once."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from tests.conftest import REPO
from tests.weights.conftest import make_store, one_file, payload, write_registry

DATA = payload(1_500_000, seed=5)


def test_two_concurrent_fetches_end_with_one_verified_file(tmp_path, http_server):
    http_server.files["big.bin"] = DATA
    http_server.modes["big.bin"] = "slow"
    http_server.delay_s = 0.04  # ~2 s per transfer, so the two processes overlap
    text = one_file("big", "big.bin", [http_server.url("big.bin")], DATA)
    reg = write_registry(tmp_path, text)
    home = tmp_path / "home"
    env = os.environ | {"FACEREST_REGISTRY": str(reg), "FACEREST_HOME": str(home), "FACEREST_WEIGHTS_DIR": ""}
    cmd = [sys.executable, "-m", "facerest_cli", "weights", "fetch", "big", "--no-progress"]
    procs = [subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    deadline = time.monotonic() + 60
    while not http_server.hits("big.bin") and time.monotonic() < deadline:
        time.sleep(0.01)  # the first process holds the lock and is streaming into big.bin.part
    second_started = time.monotonic()
    procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    # The server thread records the end of its answer after the last bytes left; the client may exit first.
    deadline = time.monotonic() + 10
    while not http_server.finished and time.monotonic() < deadline:
        time.sleep(0.01)
    [(_, transfer_done)] = http_server.finished
    assert second_started < transfer_done, "the runs did not overlap; the test proves nothing"

    store = make_store(tmp_path, text)
    dest = store.home_path("big", "big.bin")
    assert dest.read_bytes() == DATA and store.state("big") == "verified"
    assert sorted(p.name for p in dest.parent.iterdir()) == ["big.bin", "big.bin.lock"]  # no .part, no temp
    # The second process waited on the lock, then found the verified file instead of downloading it again.
    assert len(http_server.hits("big.bin")) == 1
    assert all(str(dest) in out for out, _ in outs)
