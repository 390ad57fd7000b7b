"""Diffusion face restorers: DifFace and 3Diffusion (pixel-space IDDPM at 512), and their Gaussian diffusion.

Two layers:

* The diffusion arithmetic, checkpoint-exact with zsyOAOA/DifFace ``models/gaussian_diffusion.py`` +
  ``respace.py`` (improved-DDPM): linear beta schedule over 1000 steps, ``space_timesteps`` respacing (plain
  section counts and ``"ddimN"``), ``q_sample``, epsilon prediction with learned-range variance, the DDPM
  ancestral step (3Diffusion) and the DDIM(eta) step (DifFace: eta 0.5, gamma 0). Per-step coefficients are
  float64 in the schedule and float32 where they meet a tensor, as the official ``_extract_into_tensor`` does.
* ``DiffusionRestorer``: the official restoration recipe on a batch of aligned 512x512 crops. SwinIR gives a first
  estimate, clamped to [0, 1]; it is mapped to [-1, 1], noised to respaced index ``steps`` (original t ~ 400) with
  ``q_sample`` and denoised back with ``steps`` UNet passes; each pass runs the faces ``batch_size`` per call.

Randomness: every face owns a ``torch.Generator`` seeded from ``(seed, face key)`` (``face_seed``); its first draw
is the ``q_sample`` noise, then one draw per step after that step's UNet call -- the official order (with one
face and a generator seeded like the official global one, the official run is reproduced, which the golden tests
do). Noise is drawn on the CPU in float32 whatever the device, so a face's noise never depends on the device, the
batch or the other faces.

Batch independence: a face must restore to the same pixels alone or among others. The diffusion arithmetic is
elementwise, so only the networks could mix faces: CPU kernels pick their blocking, hence their float summation
order, from the tensor shapes, and the batch size is one of them. Measured on this project's CPU (torch 2.13,
oneDNN, AVX-512): batched ``nn.Linear`` rows differ from single-row results, and the UNet's first 3->32 conv at
64x64 gives other bits for batch 8 than for batch 1 (at 512x512 batch 2 matched batch 1, but nothing promises that
for every shape), while a batch of a given shape gives the same bits to a face in any position (64 and 512). So
every UNet call holds exactly ``batch_size`` faces (the last call padded with copies of one face, outputs dropped),
the UNet's embedding MLPs run row by row (``RowwiseLinear``), and SwinIR runs one face per call. A face's float32
output is then identical bit for bit alone, among others, in any order and on a resumed run, for a given
``batch_size``, device and precision (tests/restore/test_diffusion.py).

This module depends on no stage scheduler, and imports torch only inside functions.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Literal, Sequence

import numpy as np

from facerest_cli.errors import UsageError

if TYPE_CHECKING:
    from pathlib import Path

    import torch
    from torch import nn

    from facerest_cli.weights.cache import WeightsStore
    from facerest_cli.weights.registry import WeightsEntry, WeightsFile

__all__ = [
    "DEFAULT_SEED",
    "KINDS",
    "DiffusionPlan",
    "DiffusionRestorer",
    "DiffusionResult",
    "SpacedDiffusion",
    "StepOutput",
    "face_generator",
    "face_seed",
    "generator_noise",
    "linear_betas",
    "load_diffusion_restorer",
    "load_network_file",
    "plan_for",
    "respacing_for",
    "sample",
    "space_timesteps",
    "unet_call",
]

NUM_TIMESTEPS = 1000
DEFAULT_SEED = 12345  # DifFace's official sampling seed; any fixed value makes runs reproducible
Sampler = Literal["ddpm", "ddim"]
KINDS: tuple[str, ...] = ("difface", "3diffusion")
ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------------- schedule


def linear_betas(num_timesteps: int = NUM_TIMESTEPS) -> np.ndarray:
    """Ho et al.'s linear schedule (1e-4 .. 0.02 at 1000 steps, rescaled for other lengths), float64."""
    scale = 1000 / num_timesteps
    return np.linspace(scale * 0.0001, scale * 0.02, num_timesteps, dtype=np.float64)


def space_timesteps(num_timesteps: int, section_counts: str | Sequence[int]) -> set[int]:
    """The original timesteps a respaced process keeps (``respace.space_timesteps`` semantics).

    ``section_counts``: ``"ddimN"`` (the DDIM paper's integer stride giving exactly N steps: ``range(0, T, s)``),
    or comma-separated counts / a sequence of ints: the T steps are cut into equal sections and section i keeps
    ``counts[i]`` steps at a fractional stride, each rounded (Python's round-half-even) -- e.g. ``"250"`` keeps
    about ``round(i * 999 / 249)`` for i in 0..249 (the stride is accumulated, as officially).
    """
    if isinstance(section_counts, str):
        if section_counts.startswith("ddim"):
            desired = int(section_counts[len("ddim"):])
            for stride in range(1, num_timesteps):
                if len(range(0, num_timesteps, stride)) == desired:
                    return set(range(0, num_timesteps, stride))
            raise ValueError(f"cannot create exactly {desired} steps out of {num_timesteps} with an integer stride")
        section_counts = [int(x) for x in section_counts.split(",")]
    size_per, extra = divmod(num_timesteps, len(section_counts))
    start, steps = 0, []
    for i, count in enumerate(section_counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise ValueError(f"cannot divide a section of {size} steps into {count}")
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        cur = 0.0
        for _ in range(count):
            steps.append(start + round(cur))
            cur += stride
        start += size
    return set(steps)


@dataclass(frozen=True)
class StepOutput:
    """One reverse step: ``sample`` = x at the next (lower) index, ``pred_xstart`` = the clipped x0 estimate."""

    sample: "torch.Tensor"
    pred_xstart: "torch.Tensor"


class SpacedDiffusion:
    """The improved-DDPM Gaussian diffusion, respaced (``SpacedDiffusion`` of the official ``respace.py``).

    ``respacing``: ``"ddimN"`` or section counts (see ``space_timesteps``); ``""`` keeps all 1000 steps. Indices
    passed to the methods are RESPACED indices ``0 .. num_steps-1``; ``timestep_map[i]`` is the original timestep
    the UNet is called with (``rescale_timesteps=False``). Arrays are float64 numpy and never change.
    Tensors are images in the ``[-1, 1]`` scale, ``(N, C, H, W)`` float32; one index for the whole batch.
    """

    def __init__(self, respacing: str = "", num_timesteps: int = NUM_TIMESTEPS) -> None:
        base = linear_betas(num_timesteps)
        keep = space_timesteps(num_timesteps, respacing) if respacing else set(range(num_timesteps))
        base_cumprod = np.cumprod(1.0 - base)
        betas, timestep_map, last = [], [], 1.0
        for i, a in enumerate(base_cumprod):
            if i in keep:
                betas.append(1 - a / last)
                last = a
                timestep_map.append(i)
        self.respacing = respacing
        self.timestep_map = np.asarray(timestep_map, dtype=np.int64)
        b = np.asarray(betas, dtype=np.float64)
        self.betas = b
        self.num_steps = len(b)
        ac = np.cumprod(1.0 - b)
        self.alphas_cumprod = ac
        self.alphas_cumprod_prev = np.append(1.0, ac[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(ac)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - ac)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / ac)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / ac - 1)
        self.posterior_variance = b * (1.0 - self.alphas_cumprod_prev) / (1.0 - ac)
        # The posterior variance is 0 at index 0: its log is clipped to the value at index 1 (official).
        self.posterior_log_variance_clipped = np.log(np.append(self.posterior_variance[1], self.posterior_variance[1:]))
        self.log_betas = np.log(b)
        self.posterior_mean_coef1 = b * np.sqrt(self.alphas_cumprod_prev) / (1.0 - ac)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(1.0 - b) / (1.0 - ac)

    @staticmethod
    def _c(arr: np.ndarray, index: int, like: "torch.Tensor") -> "torch.Tensor":
        """``arr[index]`` as a 0-dim float32 tensor: float64 -> float32 exactly as ``_extract_into_tensor``."""
        import torch

        return torch.tensor(float(arr[index]), dtype=torch.float64).to(device=like.device, dtype=torch.float32)

    def _check(self, index: int) -> None:
        if not 0 <= index < self.num_steps:
            raise ValueError(f"respaced index {index} outside 0..{self.num_steps - 1} ({self.respacing!r})")

    def original_timestep(self, index: int) -> int:
        self._check(index)
        return int(self.timestep_map[index])

    def q_sample(self, x_start: "torch.Tensor", index: int, noise: "torch.Tensor") -> "torch.Tensor":
        """Sample q(x_t | x_0) at respaced ``index``: ``sqrt(abar) * x0 + sqrt(1 - abar) * noise``."""
        self._check(index)
        if noise.shape != x_start.shape:
            raise ValueError(f"noise {tuple(noise.shape)} and x_start {tuple(x_start.shape)} differ")
        return (self._c(self.sqrt_alphas_cumprod, index, x_start) * x_start
                + self._c(self.sqrt_one_minus_alphas_cumprod, index, x_start) * noise)

    def _prediction(self, model_output: "torch.Tensor", x: "torch.Tensor", index: int):
        """eps, clipped x0, posterior mean and learned-range log variance (``p_mean_variance``)."""
        self._check(index)
        c = x.shape[1]
        if model_output.shape != (x.shape[0], 2 * c, *x.shape[2:]):
            raise ValueError(
                f"model output {tuple(model_output.shape)} is not (N, {2 * c}, H, W) for x {tuple(x.shape)}"
            )
        eps, var_values = model_output.float().split(c, dim=1)
        min_log = self._c(self.posterior_log_variance_clipped, index, x)
        max_log = self._c(self.log_betas, index, x)
        frac = (var_values + 1) / 2  # the model's [-1, 1] interpolates between the two log variances
        log_variance = frac * max_log + (1 - frac) * min_log
        pred_xstart = (self._c(self.sqrt_recip_alphas_cumprod, index, x) * x
                       - self._c(self.sqrt_recipm1_alphas_cumprod, index, x) * eps).clamp(-1, 1)
        mean = (self._c(self.posterior_mean_coef1, index, x) * pred_xstart
                + self._c(self.posterior_mean_coef2, index, x) * x)
        return eps, pred_xstart, mean, log_variance

    def ddpm_step(self, model_output: "torch.Tensor", x: "torch.Tensor", index: int,
                  noise: "torch.Tensor") -> StepOutput:
        """Ancestral step x_index -> x_{index-1} (``p_sample``); no noise is added at index 0."""
        import torch

        _, pred_xstart, mean, log_variance = self._prediction(model_output, x, index)
        nonzero = float(index != 0)
        return StepOutput(mean + nonzero * torch.exp(0.5 * log_variance) * noise, pred_xstart)

    def ddim_step(self, model_output: "torch.Tensor", x: "torch.Tensor", index: int, noise: "torch.Tensor",
                  eta: float) -> StepOutput:
        """DDIM(eta) step (``ddim_sample``; DifFace uses the model's raw eps, not one re-derived from clipped x0)."""
        import torch

        eps, pred_xstart, _, _ = self._prediction(model_output, x, index)
        ab = self._c(self.alphas_cumprod, index, x)
        ab_prev = self._c(self.alphas_cumprod_prev, index, x)
        sigma = eta * torch.sqrt((1 - ab_prev) / (1 - ab)) * torch.sqrt(1 - ab / ab_prev)
        mean_pred = pred_xstart * torch.sqrt(ab_prev) + torch.sqrt(1 - ab_prev - sigma**2) * eps
        nonzero = float(index != 0)
        return StepOutput(mean_pred + nonzero * sigma * noise, pred_xstart)


# -------------------------------------------------------------------------------------------------- sampling

NoiseFn = Callable[[], "torch.Tensor"]
ModelFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]
ObserveFn = Callable[[int, StepOutput], None]


def sample(
    diffusion: SpacedDiffusion,
    model_fn: ModelFn,
    x_start: "torch.Tensor",
    noise_fn: NoiseFn,
    start_index: int,
    sampler: Sampler,
    eta: float = 0.0,
    progress: ProgressFn | None = None,
    observe: ObserveFn | None = None,
) -> "torch.Tensor":
    """Noise ``x_start`` to ``start_index`` and denoise it back to index 0 with ``start_index`` model calls.

    ``x_start`` ``(N, C, H, W)`` float32 in ``[-1, 1]``. ``model_fn(x_t, t)`` gets the ORIGINAL timesteps
    ``t`` ``(N,)`` int64 and returns ``(N, 2C, H, W)``. ``noise_fn()`` returns the next ``(N, C, H, W)`` standard
    normal draw: it is called once for ``q_sample``, then once per step AFTER that step's model call (the
    official order). ``progress(k, start_index)`` after step k; ``observe(k, step_output)`` for tests and
    diagnostics (``observe(0, StepOutput(x_T, x_start))`` after ``q_sample``).
    Returns x_0 ``(N, C, H, W)`` in the ``[-1, 1]`` scale, not clamped.
    """
    import torch

    if sampler not in ("ddpm", "ddim"):
        raise ValueError(f"sampler must be 'ddpm' or 'ddim'; got {sampler!r}")
    x = diffusion.q_sample(x_start, start_index, noise_fn().to(x_start.device))
    if observe is not None:
        observe(0, StepOutput(x, x_start))
    for k, index in enumerate(range(start_index - 1, -1, -1), start=1):
        t = torch.full((x.shape[0],), diffusion.original_timestep(index), dtype=torch.int64, device=x.device)
        out = model_fn(x, t)
        noise = noise_fn().to(x.device)
        step = (diffusion.ddim_step(out, x, index, noise, eta) if sampler == "ddim"
                else diffusion.ddpm_step(out, x, index, noise))
        x = step.sample
        if observe is not None:
            observe(k, step)
        if progress is not None:
            progress(k, start_index)
    return x


def face_seed(seed: int, key: str) -> int:
    """The 63-bit seed of one face's noise stream: sha256 of ``"<seed>:<key>"`` (stable across runs/platforms)."""
    digest = hashlib.sha256(f"facerest-diffusion:{int(seed)}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def face_generator(seed: int, key: str) -> "torch.Generator":
    """A CPU generator for one face (see ``face_seed``); the caller's key is e.g. ``"<input sha256>:<face index>"``."""
    import torch

    return torch.Generator(device="cpu").manual_seed(face_seed(seed, key))


def generator_noise(generators: Sequence["torch.Generator"], shape: tuple[int, ...]) -> NoiseFn:
    """A ``NoiseFn`` drawing ``(1, *shape)`` float32 on the CPU from each face's own generator, in face order."""
    import torch

    def draw() -> "torch.Tensor":
        return torch.cat([torch.randn((1, *shape), generator=g, dtype=torch.float32) for g in generators])

    return draw


def unet_call(
    net: "nn.Module", x_t: "torch.Tensor", t: "torch.Tensor", render: "torch.Tensor | None" = None
) -> "torch.Tensor":
    """One denoiser call, the unit an inference backend may replace.

    ``x_t`` ``(N, 3, H, W)`` in ``[-1, 1]``; ``t`` ``(N,)`` int64 original timesteps; ``render`` ``(N, 3, H, W)``
    RGB ``[0, 1]`` for the 3Diffusion UNet (fed as the official ``cat[x_t, render, render]``), None for DifFace.
    Returns ``(N, 6, H, W)`` float32: epsilon and the learned-range variance values.
    """
    import torch

    x = x_t if render is None else torch.cat([x_t, render.to(x_t.dtype), render.to(x_t.dtype)], dim=1)
    return net(x, t).float()


# ------------------------------------------------------------------------------------------------- restorer


@dataclass(frozen=True)
class DiffusionPlan:
    """What one diffusion restorer does; every field belongs in the run report."""

    kind: str  # "difface" | "3diffusion"
    steps: int  # UNet calls per face
    respacing: str  # the official timestep_respacing string, e.g. "ddim250" (DifFace) or "250" (3Diffusion)
    sampler: str  # "ddim" | "ddpm"
    eta: float  # DDIM eta (0 for ddpm)
    start_timestep: int  # the original timestep q_sample noises the SwinIR estimate to (~400)
    seed: int
    batch_size: int  # faces per UNet call, always exactly (padded): see DiffusionRestorer
    precision: str  # "fp32" | "bf16" | "fp16"


def respacing_for(steps: int, sampler: Sampler) -> str:
    """The respacing that makes ``steps`` UNet calls from the official noise level (t ~ 400).

    The official runs keep 250 of 1000 steps and start at respaced index 100 (t = 400 / 401), i.e. 2.5 kept
    steps per call: ``steps`` calls use ``round(2.5 * steps)`` kept steps, started at index ``steps``. DDIM uses
    ``"ddimK"`` (an integer stride, as DifFace's ``ddim250``) when one exists, else plain ``"K"``.
    """
    if not 1 <= steps <= 400:
        raise UsageError(f"--steps must be between 1 and 400 (official 100); got {steps}")
    count = (5 * steps + 1) // 2
    if sampler == "ddim" and any(len(range(0, NUM_TIMESTEPS, s)) == count for s in range(1, NUM_TIMESTEPS)):
        return f"ddim{count}"
    return str(count)


def plan_for(kind: str, steps: int = 100, seed: int = DEFAULT_SEED, batch_size: int = 1,
             precision: str = "fp32") -> DiffusionPlan:
    """The official sampler of ``kind`` (DifFace: DDIM eta 0.5; 3Diffusion: DDPM ancestral) at ``steps`` calls."""
    if kind not in KINDS:
        raise UsageError(f"unknown diffusion restorer {kind!r}; known: {', '.join(KINDS)}")
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1; got {batch_size}")
    if precision not in ("fp32", "bf16", "fp16"):
        raise UsageError(f"precision must be fp32, bf16 or fp16; got {precision!r}")
    sampler: Sampler = "ddim" if kind == "difface" else "ddpm"
    respacing = respacing_for(steps, sampler)
    start_t = int(SpacedDiffusion(respacing).timestep_map[steps])
    return DiffusionPlan(kind, steps, respacing, sampler, 0.5 if sampler == "ddim" else 0.0, start_t, int(seed),
                         batch_size, precision)


@dataclass(frozen=True)
class DiffusionResult:
    """``faces``: restored ``(N, 3, S, S)`` float32 RGB ``[0, 1]`` on the CPU; ``estimate``: the clamped SwinIR
    first stage (same layout); ``plan``: what was run."""

    faces: "torch.Tensor"
    estimate: "torch.Tensor"
    plan: DiffusionPlan
    face_seeds: tuple[int, ...] = field(default=())


class DiffusionRestorer:
    """DifFace or 3Diffusion on aligned crops: ``restore(faces, keys, render=None, progress=None)``.

    ``unet``: ``difface_unet()`` / ``tdiffusion_unet()`` with weights loaded; ``swinir``: ``difface_swinir()``
    with DifFace's or 3Diffusion's SwinIR file. Built once, called with any number of faces.

    Batching: every UNet call holds exactly ``batch_size`` faces (the last call of a restore is padded with copies
    of one of its faces, whose outputs are dropped), so the kernels always see the same shapes and a face's
    pixels do not depend on how many faces, or which, share its call. ``batch_size`` is therefore part of a
    result's identity (it is in ``plan``): 1 on CPU, where batching buys little and a lone face would otherwise
    pay for the padding; larger on CUDA. SwinIR runs one face per call (once per face, a negligible cost).
    ``size`` (a multiple of 64; official 512) exists for small tests. Not thread-safe.
    """

    template = "ffhq512"

    def __init__(
        self,
        kind: str,
        unet: "nn.Module",
        swinir: "nn.Module",
        *,
        steps: int = 100,
        seed: int = DEFAULT_SEED,
        device: str = "cpu",
        precision: str = "fp32",
        batch_size: int = 1,
        size: int = 512,
    ) -> None:
        import torch

        self.plan = plan_for(kind, steps, seed, batch_size, precision)
        self.name = kind
        self.size = size
        self.needs_render = kind == "3diffusion"
        if getattr(unet, "threed", False) != self.needs_render:
            has = "has" if getattr(unet, "threed", False) else "lacks"
            raise UsageError(f"{kind}: the UNet given {has} the 3D branch")
        self.device = torch.device(device)
        self.diffusion = SpacedDiffusion(self.plan.respacing)
        self.unet = unet.to(self.device).eval().requires_grad_(False)
        self.swinir = swinir.to(self.device).eval().requires_grad_(False)

    def _autocast(self):
        import torch

        if self.plan.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.plan.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _unet_fixed_batches(
        self, x: "torch.Tensor", t: "torch.Tensor", render: "torch.Tensor | None"
    ) -> "torch.Tensor":
        """``unet_call`` over calls of exactly ``batch_size`` faces (see the class docstring), concatenated."""
        import torch

        bs = self.plan.batch_size
        outs = []
        for i in range(0, x.shape[0], bs):
            parts = [None if p is None else p[i : i + bs] for p in (x, t, render)]
            real = parts[0].shape[0]
            if real < bs:  # pad with copies of the call's first face; their outputs are dropped below
                parts = [None if p is None else torch.cat([p, p[:1].expand(bs - real, *p.shape[1:])]) for p in parts]
            outs.append(unet_call(self.unet, *parts)[:real])
        return torch.cat(outs)

    def estimate(self, faces: "torch.Tensor") -> "torch.Tensor":
        """The SwinIR first stage, clamped to [0, 1]: ``(N, 3, S, S)`` RGB [0, 1] in, same out (on ``device``)."""
        import torch

        x = faces.to(self.device, torch.float32)
        with torch.inference_mode():
            with self._autocast():
                out = torch.cat([self.swinir(x[i : i + 1]).float() for i in range(x.shape[0])])
            return out.clamp_(0.0, 1.0)

    def restore(
        self,
        faces: "torch.Tensor",
        keys: Sequence[str],
        render: "torch.Tensor | None" = None,
        progress: ProgressFn | None = None,
        *,
        generators: Sequence["torch.Generator"] | None = None,
        observe: ObserveFn | None = None,
    ) -> DiffusionResult:
        """Restore ``faces`` ``(N, 3, 512, 512)`` float RGB ``[0, 1]`` (aligned FFHQ crops).

        ``keys``: one string per face naming it stably (the pipeline passes ``"<input sha256>:<face index>"``):
        the face's noise depends on ``(seed, key)`` only, so it restores to the same pixels alone, in any batch
        and on a resumed run. ``render`` ``(N, 3, 512, 512)`` RGB ``[0, 1]``: the 3D-prior render, required by
        3diffusion, refused by difface. ``progress(steps_done, steps_total)`` after each denoising step (one
        step = one UNet pass over all N faces). ``generators`` replaces the ``(seed, key)`` streams with the
        caller's own CPU generators, one per face (reproducing an official run: one generator seeded with the
        official seed); ``observe`` sees every step (``sample``).
        """
        import torch

        n = faces.shape[0]
        if faces.ndim != 4 or tuple(faces.shape[1:]) != (3, self.size, self.size) or n == 0:
            raise UsageError(f"{self.name}: faces must be (N>0, 3, {self.size}, {self.size}); got {tuple(faces.shape)}")
        if len(keys) != n:
            raise UsageError(f"{self.name}: {n} faces but {len(keys)} keys")
        if self.needs_render:
            if render is None or tuple(render.shape) != tuple(faces.shape):
                got = None if render is None else tuple(render.shape)
                raise UsageError(
                    f"3diffusion needs the 3D-prior render (N, 3, {self.size}, {self.size}) in [0, 1]; got {got}"
                )
            render = render.to(self.device, torch.float32)
        elif render is not None:
            raise UsageError(f"{self.name} takes no 3D render")
        seeds = tuple(face_seed(self.plan.seed, k) for k in keys)
        if generators is None:
            generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds]
        elif len(generators) != n:
            raise UsageError(f"{self.name}: {n} faces but {len(generators)} generators")
        else:
            seeds = ()  # the caller's generators: no seed of ours describes them

        def model_fn(x: "torch.Tensor", t: "torch.Tensor") -> "torch.Tensor":
            with self._autocast():
                return self._unet_fixed_batches(x, t, render)

        with torch.inference_mode():
            estimate = self.estimate(faces)
            x0 = sample(self.diffusion, model_fn, (estimate - 0.5) / 0.5,
                        generator_noise(generators, tuple(faces.shape[1:])), self.plan.steps, self.plan.sampler,
                        self.plan.eta, progress=progress, observe=observe)
            restored = (x0 * 0.5 + 0.5).clamp_(0.0, 1.0)
        return DiffusionResult(restored.cpu(), estimate.cpu(), self.plan, seeds)

    __call__ = restore


def load_network_file(entry: "WeightsEntry", file: "WeightsFile", path: "Path | str") -> "nn.Module":
    """Build ``file.arch`` (else ``entry.arch``) and load ``path`` into it strictly, as the official loaders read
    these files: DifFace's ``BaseSampler.load_model`` unwraps ``{'state_dict': ...}`` when present and
    ``util_net.reload_model`` / ``reload_model2`` strip a leading ``module.`` (DDP); the real files were never
    opened, so both layouts are accepted. Any missing, unexpected or reshaped key is a ``WeightsError`` naming
    the file and the keys (``load_state_dict_exact``): a file of another UNet variant is refused, never
    partially loaded. Returns the module in eval mode."""
    from collections.abc import Mapping

    import torch

    from facerest_cli.errors import WeightsError
    from facerest_cli.models.registry import build_arch
    from facerest_cli.weights.loader import load_state_dict_exact, torch_load_safe

    obj = torch_load_safe(path)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: expected a state dict (name -> tensor), got {type(obj).__name__}")
    sd: dict[str, torch.Tensor] = {}
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, torch.Tensor):
            raise WeightsError(f"{path}: entry {k!r} is a {type(v).__name__}, not a named tensor")
        sd[k[len("module."):] if k.startswith("module.") else k] = v
    module = build_arch(file.arch or entry.arch)
    load_state_dict_exact(module, sd, path)
    return module.eval()


def load_diffusion_restorer(
    name: str,
    store: "WeightsStore",
    *,
    steps: int = 100,
    seed: int = DEFAULT_SEED,
    device: str = "cpu",
    precision: str = "fp32",
    batch_size: int = 1,
) -> DiffusionRestorer:
    """Build ``name`` (``difface`` / ``3diffusion``) from its weights.toml entry: the UNet from the entry's first
    file (``entry.arch``), SwinIR from the file whose ``arch`` is ``difface_swinir`` (see ``load_network_file``)."""
    if name not in KINDS:
        raise UsageError(f"unknown diffusion restorer {name!r}; known: {', '.join(KINDS)}")
    entry = store.registry.get(name)
    unet_file = entry.files[0]
    swinir_files = [f for f in entry.files if f.arch == "difface_swinir"]
    if len(swinir_files) != 1 or unet_file.arch:
        raise UsageError(
            f"weights.toml[{name}]: the first file must be the UNet and exactly one file have arch 'difface_swinir'"
        )
    unet = load_network_file(entry, unet_file, store.ensure(name, unet_file.name))
    swinir = load_network_file(entry, swinir_files[0], store.ensure(name, swinir_files[0].name))
    return DiffusionRestorer(name, unet, swinir, steps=steps, seed=seed, device=device, precision=precision,
                             batch_size=batch_size)


# --------------------------------------------------------------------------------------------- pipeline side


@dataclass(frozen=True)
class DiffusionInfo:
    """report.jsonl ``diffusion``: how a face was sampled, enough to reproduce it."""

    restorer: str
    steps: int
    respacing: str
    sampler: str
    eta: float
    start_timestep: int
    seed: int
    face_seed: int
    face_key: str
    batch_size: int
    precision: str
    render: str | None = None  # 3diffusion: "bfm09" | "3ddfa-mean-face"

    def to_json(self) -> dict:
        from dataclasses import asdict

        return {k: v for k, v in asdict(self).items() if v is not None}


class DiffusionFaceRestorer:
    """A ``DiffusionRestorer`` behind the pipeline's ``Restorer`` contract (``restore.base``).

    The runtime hands it each face's stable key (``needs_keys``) and, for 3diffusion, the 3D prior's render.
    Its output for a key is kept (a few faces) so an identity-guard retry, which only lowers the strength the
    runtime blends with, does not sample the same face again: the restored face itself would be identical.
    """

    template = "ffhq512"
    needs_keys = True
    _KEEP = 16  # restored faces kept for guard retries (512x512x3 float32: 3 MB each)

    def __init__(self, inner: DiffusionRestorer, progress: ProgressFn | None = None):
        self.inner = inner
        self.name = inner.name
        self.size = inner.size
        self.prior_fields: tuple[str, ...] = ("render",) if inner.needs_render else ()
        self.needs_prior = inner.needs_render
        self.progress = progress
        self._kept: dict[str, "torch.Tensor"] = {}

    @property
    def plan(self) -> DiffusionPlan:
        return self.inner.plan

    def __call__(self, faces: "torch.Tensor", prior: Sequence | None = None,
                 keys: Sequence[str] | None = None) -> "torch.Tensor":
        import torch

        if keys is None or len(keys) != faces.shape[0]:
            raise UsageError(f"{self.name}: the runtime must give one key per face")
        todo = [i for i, k in enumerate(keys) if k not in self._kept]
        if todo:
            render = None
            if self.needs_prior:
                if prior is None or any(prior[i] is None for i in todo):
                    raise UsageError(f"the {self.name} restorer needs the 3D prior stage (its rendered face)")
                render = torch.from_numpy(np.stack([prior[i].render for i in todo])).permute(0, 3, 1, 2)
            out = self.inner.restore(faces[todo].float().cpu(), [keys[i] for i in todo], render, self.progress).faces
            for i, face in zip(todo, out):
                self._kept[keys[i]] = face
        result = torch.stack([self._kept[k] for k in keys]).to(faces.device)
        while len(self._kept) > self._KEEP:
            self._kept.pop(next(iter(self._kept)))
        return result

    def info(self, key: str, render: str | None) -> DiffusionInfo:
        p = self.plan
        return DiffusionInfo(restorer=self.name, steps=p.steps, respacing=p.respacing, sampler=p.sampler, eta=p.eta,
                             start_timestep=p.start_timestep, seed=p.seed, face_seed=face_seed(p.seed, key),
                             face_key=key, batch_size=p.batch_size, precision=p.precision, render=render)


class DiffusionReportStage:
    """BatchStage: writes each face's ``record.diffusion`` (sampler, steps, seeds, render source)."""

    name = "diffusion-report"
    retries = False
    needs: frozenset[str] = frozenset({"record", "restored"})
    provides: frozenset[str] = frozenset()
    finalizes: frozenset[str] = frozenset()

    def __init__(self, restorer: DiffusionFaceRestorer):
        self.restorer = restorer

    def before_restore(self, faces) -> None:
        pass

    def after_restore(self, faces) -> list:
        for f in faces:
            source = getattr(f.prior, "source", None) if self.restorer.needs_prior else None
            f.record.diffusion = self.restorer.info(f.key, source)
        return []

    def summary(self) -> None:
        return None
