"""Face recognizers: aligned 112x112 faces in, L2-normalised embeddings out, batched.

Input convention (every recognizer): ``(N, 112, 112, 3)`` float32 **BGR** in ``[0, 1]``, aligned to the
ArcFace five-point template (``identity.align``). Each converts to its network's input with the normalisation its
weights.toml entry states (for the ArcFace family insightface's RGB ``(x*255 - 127.5) / 127.5``).

Names are weights.toml entries (role ``recognizer``); ``auto`` follows their ``auto`` ranks:

* ``arcface-r50``: insightface buffalo_l ``w600k_r50.onnx`` through onnxruntime (non-commercial licence);
* ``arcface-mobilefacenet``: MobileFaceNet, 128-d (``models/mobilefacenet.py``), MIT;
* ``arcface-iresnet50`` / ``arcface-iresnet100``: arcface_torch backbones (``models/iresnet.py``), 512-d.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from facerest_cli.errors import UsageError, WeightsError

if TYPE_CHECKING:
    from facerest_cli.registry import Execution, Model
    from facerest_cli.weights.cache import WeightsStore
    from facerest_cli.weights.registry import Registry

_MAX_BATCH = 64  # faces per network call: bounds memory whatever the restore batch size


@dataclass(frozen=True)
class Embeddings:
    """``vectors``: ``(N, D)`` float32, unit L2 norm. ``norms``: ``(N,)`` the raw embeddings' norms (a rough
    face-quality signal: blurred or non-face crops give small norms)."""

    vectors: np.ndarray
    norms: np.ndarray


class Recognizer(Protocol):
    name: str

    def embed(self, faces: np.ndarray) -> Embeddings:
        """``faces``: ``(N, 112, 112, 3)`` float32 BGR [0, 1], ArcFace-aligned."""
        ...


def arcface_blob(faces: np.ndarray, mean: float = 127.5, std: float = 127.5, value_range: float = 255.0) -> np.ndarray:
    """``(N, 112, 112, 3)`` float BGR [0, 1] -> ``(N, 3, 112, 112)`` float32 RGB ``(x*value_range - mean) / std``:
    what insightface's ``cv2.dnn.blobFromImages(imgs, 1/std, size, (mean,)*3, swapRB=True)`` feeds ArcFace."""
    faces = np.asarray(faces, np.float32)
    if faces.ndim != 4 or faces.shape[3] != 3:
        raise ValueError(f"expected (N, H, W, 3) BGR faces, got shape {faces.shape}")
    rgb = faces[..., ::-1] * np.float32(value_range)
    return np.ascontiguousarray(((rgb - np.float32(mean)) / np.float32(std)).transpose(0, 3, 1, 2), np.float32)


def normalise(raw: np.ndarray) -> Embeddings:
    raw = np.asarray(raw, np.float32).reshape(len(raw), -1)
    norms = np.linalg.norm(raw, axis=1)
    return Embeddings(raw / np.maximum(norms, 1e-12)[:, None], norms)


class TorchRecognizer:
    """A torch embedding network (MobileFaceNet, iResNet) built by ``facerest_cli.registry.build``; its input
    normalisation is its weights.toml entry's (one value per channel, as insightface's is)."""

    def __init__(self, model: "Model"):
        import torch

        self.model = model
        self.name = model.name
        self.device = torch.device(model.device)
        inp = model.spec.input
        self._norm = (inp.mean[0], inp.std[0], inp.value_range)
        self._channels_last = model.runner is None  # a backend network lays itself out
        if self._channels_last:
            # channels_last: the depthwise convolutions of MobileFaceNet run about 6x faster on CPU (measured).
            model.net = model.net.to(memory_format=torch.channels_last)

    def embed(self, faces: np.ndarray) -> Embeddings:
        import torch

        if len(faces) == 0:
            return normalise(np.zeros((0, 1), np.float32))
        out = []
        for i in range(0, len(faces), _MAX_BATCH):
            x = torch.from_numpy(arcface_blob(faces[i : i + _MAX_BATCH], *self._norm)).to(self.device)
            if self._channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                out.append(self.model(x).float().cpu().numpy())
        return normalise(np.concatenate(out))


def onnx_input_norm(path: Path) -> tuple[float, float]:
    """insightface's rule for ArcFace ONNX files: a graph that starts with Sub and Mul nodes (mxnet exports)
    normalises inside, so it takes raw 0-255 pixels; others (w600k_r50) take ``(x - 127.5) / 127.5``."""
    import onnx

    nodes = onnx.load(str(path), load_external_data=False).graph.node[:8]
    sub = any(n.name.startswith(("Sub", "_minus")) for n in nodes)
    mul = any(n.name.startswith(("Mul", "_mul")) for n in nodes)
    return (0.0, 1.0) if sub and mul else (127.5, 127.5)


class OnnxArcFace:
    """An ArcFace ONNX graph (insightface ``w600k_r50.onnx``) through onnxruntime."""

    def __init__(self, path: Path, name: str = "arcface-r50", device: str = "cpu"):
        import onnxruntime as ort

        self.name = name
        self.path = Path(path)
        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(self.path), providers=providers)
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise WeightsError(f"{self.path}: not a loadable ONNX model ({str(e).splitlines()[0]})") from None
        inp = self.session.get_inputs()[0]
        if list(inp.shape[1:]) != [3, 112, 112]:
            raise WeightsError(f"{self.path}: expected an ONNX input of shape (N, 3, 112, 112), got {inp.shape}")
        self.input_name = inp.name
        # Some exports fix the batch dimension to 1: call those one face at a time.
        self.fixed_batch = inp.shape[0] if isinstance(inp.shape[0], int) else None
        self.mean, self.std = onnx_input_norm(self.path)

    def embed(self, faces: np.ndarray) -> Embeddings:
        if len(faces) == 0:
            return normalise(np.zeros((0, 1), np.float32))
        step = self.fixed_batch or _MAX_BATCH
        out = []
        for i in range(0, len(faces), step):
            blob = arcface_blob(faces[i : i + step], self.mean, self.std)
            out.append(np.asarray(self.session.run(None, {self.input_name: blob})[0], np.float32))
        return normalise(np.concatenate(out))


def check_name(name: str, registry: "Registry | None" = None) -> str:
    from facerest_cli.registry import names
    from facerest_cli.weights.registry import load_registry

    choices = names("recognizer", registry if registry is not None else load_registry())
    if name in ("auto", "none") or name in choices:
        return name
    raise UsageError(f"unknown recognizer {name!r}; choose auto, none or one of: {', '.join(choices)}")


def resolve(name: str, store: "WeightsStore") -> str | None:
    """``--recognizer`` -> the weights entry to use, or None for ``none``. ``auto``: the best installed one
    (weights.toml ``auto`` ranks: arcface-r50, then arcface-mobilefacenet), else the one to fetch
    (arcface-mobilefacenet, MIT, 4 MB); whether it can really be had is ``build_recognizer``'s job."""
    from facerest_cli.registry import pick_auto

    check_name(name, store.registry)
    if name == "none":
        return None
    return pick_auto("recognizer", store) if name == "auto" else name


def build_recognizer(name: str, store: "WeightsStore", device: str = "cpu",
                     execution: "Execution | None" = None) -> Recognizer:
    """Build the named recognizer, fetching its weights if allowed (``WeightsMissingError`` offline)."""
    from facerest_cli.registry import build

    check_name(name, store.registry)
    if name in ("auto", "none"):
        raise UsageError(f"build_recognizer needs a recognizer name, got {name!r}")
    # channels_last: the depthwise convolutions of MobileFaceNet run about 6x faster on CPU (measured).
    model = build(name, store, device, execution=execution, role="recognizer", channels_last=True)
    if not model.spec.is_torch:  # an ONNX graph (insightface's arcface-r50)
        return OnnxArcFace(model.path, name, device)
    return TorchRecognizer(model)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two ``(N, D)`` sets of unit vectors."""
    return np.clip(np.einsum("nd,nd->n", a, b), -1.0, 1.0)
