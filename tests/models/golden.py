"""The proof of equivalence with the official networks, written once and used for every manifest.

For an architecture with a manifest in ../shared/checkpoint-formats:
 1. build our module with the official constructor arguments (the weights.toml entry's arch builder);
 2. its state_dict has exactly the manifest's keys, shapes and dtypes (fixed buffers included);
 3. write a checkpoint with make_checkpoint.py, wrapped as the official file is;
 4. load that file through the real loader (``facerest_cli.weights.loader.load_model``), strictly;
 5. run the golden's documented call on the golden's input;
 6. compare with the golden output at the stated tolerance.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from tests.conftest import shared_file


def make_checkpoint_module():
    path = shared_file("checkpoint-formats", "make_checkpoint.py")
    spec = importlib.util.spec_from_file_location("make_checkpoint", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def manifest(name: str) -> dict:
    return json.loads(shared_file("checkpoint-formats", f"{name}.json").read_text())


def golden(name: str) -> Mapping[str, np.ndarray]:
    m = manifest(name)
    return np.load(shared_file("checkpoint-formats", m["golden"]))


def check_rng_fingerprint(name: str) -> None:
    m = manifest(name)
    sd = make_checkpoint_module().make_state_dict(m, 0)
    s = sum(float(t.double().sum()) for t in sd.values())
    a = sum(float(t.double().abs().sum()) for t in sd.values())
    fp = m["weights_fingerprint_seed0"]
    assert len(sd) == fp["n_tensors"]
    assert abs(s - fp["sum"]) <= 1e-6 * max(1.0, abs(fp["abs_sum"])), "torch RNG differs from the goldens'"
    assert abs(a - fp["abs_sum"]) <= 1e-6 * fp["abs_sum"], "torch RNG differs from the goldens'"


def assert_state_dict_matches_manifest(module: torch.nn.Module, name: str) -> None:
    m = manifest(name)
    want = {row[0]: (tuple(int(d) for d in row[1]), str(row[2]).replace("torch.", "")) for row in m["tensors"]}
    have = {k: (tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in module.state_dict().items()}
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    assert not missing and not extra, f"keys differ: missing {missing[:5]} ({len(missing)}), extra {extra[:5]} ({len(extra)})"
    bad = [(k, have[k], want[k]) for k in want if have[k] != want[k]]
    assert not bad, f"shape/dtype differ: {bad[:5]}"


def assert_fixed_buffers_match(module: torch.nn.Module, name: str) -> None:
    """State dict in the official order (fixed buffers included), and the architecture-built fixed buffers (the
    upfirdn2d blur kernels) equal to the manifest's ``fixed_values``."""
    m = manifest(name)
    sd = module.state_dict()
    assert list(sd) == [row[0] for row in m["tensors"]]
    fixed = [row[0] for row in m["tensors"] if len(row) > 4 and row[4].get("fixed")]
    assert fixed and sorted(fixed) == sorted(m["fixed_values"])
    for key in fixed:
        assert torch.equal(sd[key], torch.tensor(m["fixed_values"][key], dtype=torch.float32)), key


def write_official_checkpoint(name: str, path: Path, seed: int = 0) -> Path:
    obj, _ = make_checkpoint_module().official_file_dict(manifest(name), seed, include_fixed=True)
    torch.save(obj, path)
    return path


def rel_l2(out: torch.Tensor | np.ndarray, ref: np.ndarray) -> float:
    out_t = torch.as_tensor(np.asarray(out.detach().cpu() if isinstance(out, torch.Tensor) else out)).double()
    ref_t = torch.from_numpy(np.asarray(ref)).double()
    assert tuple(out_t.shape) == tuple(ref_t.shape), f"shape {tuple(out_t.shape)} != golden {tuple(ref_t.shape)}"
    return float((out_t - ref_t).norm() / ref_t.norm())


def assert_close_to_golden(outputs: Mapping[str, torch.Tensor], name: str) -> dict[str, float]:
    """Each output against the golden: float32 rel-L2 <= 1e-4, float16-stored <= 1e-3, stats-only, exact ints."""
    g = golden(name)
    fp16 = set(str(g["float16_outputs"]).split(",")) - {""}
    stats_only = set(str(g["stats_only_outputs"]).split(",")) - {""}
    errs: dict[str, float] = {}
    for key, out in outputs.items():
        out = out.detach().cpu()
        if key in stats_only:
            o = out.double()
            s, a, sd = float(o.sum()), float(o.abs().sum()), float(o.std(unbiased=False))
            ref_s, ref_a, ref_sd = (float(g[f"{key}__{k}"]) for k in ("sum", "abssum", "std"))
            err = max(abs(sd - ref_sd) / ref_sd, abs(a - ref_a) / ref_a, abs(s - ref_s) / ref_a)
            assert err <= 1e-4, f"{name}.{key}: stats error {err:.3g} > 1e-4"
        elif not out.dtype.is_floating_point:
            assert np.array_equal(out.numpy().reshape(g[key].shape), g[key]), f"{name}.{key}: integers differ"
            err = 0.0
        else:
            err = rel_l2(out.reshape(g[key].shape), g[key])
            tol = 1e-3 if key in fp16 else 1e-4
            assert err <= tol, f"{name}.{key}: relative L2 {err:.3g} > {tol}"
        errs[key] = err
    return errs


def run_equivalence(
    manifest_name: str,
    entry_name: str,
    call: Callable[[torch.nn.Module, Mapping[str, np.ndarray]], Mapping[str, torch.Tensor]],
    tmp_path: Path,
) -> dict[str, float]:
    """Steps 1-6 for one manifest; ``call(net, golden)`` runs the golden's documented call and returns outputs."""
    from facerest_cli.models.registry import build_arch
    from facerest_cli.weights.loader import load_model
    from facerest_cli.weights.registry import load_registry

    check_rng_fingerprint(manifest_name)
    entry = load_registry().get(entry_name)
    # 1-2: our module, built with the official constructor arguments, has the official state dict.
    assert_state_dict_matches_manifest(build_arch(entry.arch), manifest_name)
    # 3: an official-layout file.
    ckpt = write_official_checkpoint(manifest_name, tmp_path / manifest(manifest_name)["checkpoint_file"].split(" ")[0])
    # 4: through the loader `facerest run` uses, strictly.
    net = load_model(entry, ckpt)
    assert not net.training
    # 5-6
    g = golden(manifest_name)
    with torch.inference_mode():
        outputs = call(net, g)
    return assert_close_to_golden(outputs, manifest_name)
