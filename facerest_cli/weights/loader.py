"""Turn a verified weights file into a ready ``nn.Module``.

The one loader every stage uses (and the golden-equivalence tests use): it reads the official file format
exactly as published -- container key, key prefix, renamed heads, ignored extra heads -- and loads it strictly:
a missing key, an unexpected key or a shape mismatch is an error naming the file, never a silent partial load.

Finding and verifying the file (sha256) is the cache's job (``facerest_cli.weights.cache``); this module only
takes a path that has already been verified.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from facerest_cli.errors import WeightsError
from facerest_cli.weights.registry import WeightsEntry, WeightsFile

if TYPE_CHECKING:  # torch is imported lazily: the registry and CLI must not pay for it
    import torch
    from torch import nn


def torch_load_safe(path: Path | str) -> Any:
    """``torch.load(weights_only=True, map_location='cpu')``; refuses (never retries unsafely) anything else.

    ``weights_only=True`` makes the unpickler accept only tensors and plain containers, so a file carrying a
    pickled callable fails here before any of its code can run.
    """
    import torch

    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(
            f"{path}: refused to load: the file holds pickled objects other than tensors "
            f"(unsafe; torch.load(weights_only=True) said: {first})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, AttributeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({first})") from None


_NUMPY_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("collections", "OrderedDict"),
    ("builtins", "dict"),
    ("builtins", "list"),
    ("builtins", "tuple"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_PICKLE_ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def numpy_pickle_load_safe(path: Path | str) -> Any:
    """Load the 3DDFA ``.pkl`` configs (dicts of numpy arrays) without letting the pickle run code."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return _NumpyOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise WeightsError(f"{path}: refused to load: {e} (only numpy arrays and plain containers are read)") from None


def extract_state_dict(obj: Any, spec: WeightsFile, path: Path | str) -> dict[str, "torch.Tensor"]:
    """Unwrap the official layout: container key (with fallbacks), key prefix, renamed and ignored keys.

    Keys of the container that do not carry ``spec.prefix`` (a Lightning ``.ckpt``'s loss / discriminator
    entries) are left out, as the official loaders leave them out.
    """
    import torch

    path = Path(path)
    sd = obj
    if spec.key is not None:
        if not isinstance(obj, Mapping):
            raise WeightsError(f"{path}: expected a dict with key {spec.key!r}, got {type(obj).__name__}")
        for k in (spec.key, *spec.key_fallback):
            if k in obj:
                sd = obj[k]
                break
        else:
            wanted = " or ".join(repr(k) for k in (spec.key, *spec.key_fallback))
            raise WeightsError(f"{path}: no {wanted} in the checkpoint (its top-level keys: {sorted(obj)[:8]})")
    if not isinstance(sd, Mapping):
        raise WeightsError(f"{path}: expected a state dict (name -> tensor), got {type(sd).__name__}")
    out: dict[str, torch.Tensor] = {}
    ignore = set(spec.ignore)
    for k, v in sd.items():
        if not isinstance(k, str):
            raise WeightsError(f"{path}: state dict key {k!r} is not a string")
        if spec.prefix:
            if not k.startswith(spec.prefix):
                continue
            k = k[len(spec.prefix) :]
        k = spec.rename.get(k, k)
        if k in ignore:
            continue
        if not isinstance(v, torch.Tensor):
            raise WeightsError(f"{path}: entry {k!r} is a {type(v).__name__}, not a tensor")
        out[k] = v
    if not out:
        raise WeightsError(f"{path}: no tensors found (prefix {spec.prefix!r})")
    return out


def load_state_dict_exact(module: "nn.Module", sd: Mapping[str, "torch.Tensor"], path: Path | str) -> None:
    """Strict load with a readable error: missing / unexpected keys and shape mismatches, each listed."""
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [
        f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} with other shapes (e.g. {'; '.join(shapes[:3])})")
        raise WeightsError(
            f"{path}: does not match architecture {type(module).__name__}: " + ", ".join(parts)
        )
    module.load_state_dict(sd, strict=True)


def load_weights_into(module: "nn.Module", path: Path | str, spec: WeightsFile) -> "nn.Module":
    """Read ``path`` (a ``.pth``/``.ckpt`` or ``.safetensors``) per ``spec`` and load it strictly into ``module``."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path), device="cpu")
        except Exception as e:  # safetensors raises its own SafetensorError
            raise WeightsError(f"{path}: not a readable safetensors file ({e})") from None
        spec = WeightsFile(name=spec.name, prefix=spec.prefix, rename=spec.rename, ignore=spec.ignore)
    else:
        obj = torch_load_safe(path)
    sd = extract_state_dict(obj, spec, path)
    load_state_dict_exact(module, sd, path)
    return module


def load_model(entry: WeightsEntry, path: Path | str, file: WeightsFile | None = None, **overrides: Any) -> "nn.Module":
    """Build the file's arch (``file.arch``, else ``entry.arch``) with its official constructor arguments, load
    ``path`` strictly, return it in eval mode. ``file`` defaults to the entry's first (main) file."""
    from facerest_cli.models.registry import build_arch

    spec = file or entry.files[0]
    module = build_arch(spec.arch or entry.arch, **overrides)
    load_weights_into(module, path, spec)
    return module.eval()
