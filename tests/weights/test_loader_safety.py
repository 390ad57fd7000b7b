"""Acceptance 4: a checkpoint whose pickle would run code is refused by the real loader, and the code never runs."""

from __future__ import annotations

import os
import pickle

import pytest
import torch

from facerest_cli.errors import WeightsError
from facerest_cli.models import registry as arch_registry
from facerest_cli.weights.loader import load_model, numpy_pickle_load_safe
from tests.weights.conftest import entry_toml, make_store


class _Payload:
    """Unpickling this calls ``os.mkdir(marker)``: the marker's existence proves the payload ran."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def tiny_linear(**overrides) -> torch.nn.Module:
    return torch.nn.Linear(4, 2, **overrides)


def tiny_entry(arch: str) -> str:
    file = {"name": "tiny.pth", "url": ["https://e.org/tiny.pth"], "sha256": "", "key": "params_ema"}
    return entry_toml("tiny", [file], arch=arch, role="restorer")


@pytest.fixture
def tiny_arch(monkeypatch) -> str:
    monkeypatch.setitem(arch_registry.ARCHS, "tiny_linear", f"{__name__}:tiny_linear")
    return "tiny_linear"


def test_pickled_object_in_a_pth_is_refused_and_its_payload_never_runs(tmp_path, tiny_arch):
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "evil.pth"
    state = tiny_linear().state_dict()
    torch.save({"params_ema": dict(state), "meta": _Payload(str(marker))}, evil)

    # Installed the way a user installs a converted checkpoint, then loaded the way every stage loads weights.
    store = make_store(tmp_path, tiny_entry(tiny_arch))
    [res] = store.import_paths([evil], as_name="tiny")
    assert res.action == "installed"
    path = store.ensure("tiny")
    with pytest.raises(WeightsError, match="refused to load.*pickled objects other than tensors"):
        load_model(store.registry.get("tiny"), path)
    assert not marker.exists(), "the pickled payload ran during a safe load"

    # Control: the payload is live, so the refusal above is what kept it from running.
    torch.load(path, map_location="cpu", weights_only=False)
    assert marker.is_dir()


def test_the_same_tensors_without_a_payload_load(tmp_path, tiny_arch):
    good = tmp_path / "good.pth"
    net = tiny_linear()
    torch.save({"params_ema": net.state_dict()}, good)
    store = make_store(tmp_path, tiny_entry(tiny_arch))
    store.import_paths([good], as_name="tiny")
    loaded = load_model(store.registry.get("tiny"), store.ensure("tiny"))
    assert torch.equal(loaded.weight, net.weight)


def test_pickled_object_in_a_numpy_pickle_is_refused(tmp_path):
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "param_mean_std_62d_120x120.pkl"
    evil.write_bytes(pickle.dumps({"mean": [0.0], "x": _Payload(str(marker))}))
    with pytest.raises(WeightsError, match="refused to load"):
        numpy_pickle_load_safe(evil)
    assert not marker.exists()
