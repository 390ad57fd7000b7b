"""What the CPU can do (bf16 units, cores), and the precision ``auto`` picks from it.

Detection reads ``/proc/cpuinfo`` (Linux) once per call; nothing is cached globally. Tests and users simulate
another CPU with an explicit ``CpuCaps`` or with ``FACEREST_CPU_FLAGS``, which only the CLI layer reads (through
``caps_from_env``) and then passes down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, Mapping

from facerest_cli.errors import UsageError

Requested = Literal["auto", "fp32", "bf16", "fp16"]
Precision = Literal["fp32", "bf16", "fp16"]
ENV_FLAGS = "FACEREST_CPU_FLAGS"

# The flags that matter here, as Linux spells them in /proc/cpuinfo.
_KNOWN = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")


@dataclass(frozen=True)
class CpuCaps:
    """CPU features relevant to inference. ``flags`` is sorted and holds only the names in ``_KNOWN``.

    ``amx``: Intel AMX with bf16 tiles (Sapphire Rapids and later); ``avx512_bf16``: the AVX512 bf16 dot-product
    instructions (Cooper Lake, Zen 4 and later). Either makes bf16 convolutions faster than fp32; without them
    bf16 is emulated and slower.
    """

    flags: tuple[str, ...] = ()
    cores: int = 1
    source: str = "detected"  # "detected", "FACEREST_CPU_FLAGS", or a test's label

    @property
    def amx(self) -> bool:
        return "amx_bf16" in self.flags

    @property
    def avx512_bf16(self) -> bool:
        return "avx512_bf16" in self.flags

    @property
    def bf16(self) -> bool:
        """Native bf16 arithmetic (AMX or AVX512_BF16)."""
        return self.amx or self.avx512_bf16

    @property
    def signature(self) -> str:
        """A short stable string for cache keys and reports, e.g. ``avx2+avx512_bf16+avx512f``."""
        return "+".join(self.flags) or "baseline"


def _linux_flags(cpuinfo: Path) -> set[str] | None:
    try:
        text = cpuinfo.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))  # what this process may run on (containers, taskset)
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def detect_cpu_caps(cpuinfo: Path = Path("/proc/cpuinfo")) -> CpuCaps:
    """The running CPU's capabilities. Where ``/proc/cpuinfo`` is absent (macOS, Windows) no bf16 flag is
    reported, so ``auto`` stays fp32 there; an explicit ``--precision bf16`` still works with the torch backend."""
    flags = _linux_flags(cpuinfo) or set()
    return CpuCaps(flags=tuple(sorted(f for f in flags if f in _KNOWN)), cores=_usable_cores())


def parse_cpu_flags(spec: str, base: CpuCaps) -> CpuCaps:
    """Apply a ``FACEREST_CPU_FLAGS`` value to ``base``.

    ``spec`` is comma-separated: ``none`` drops every flag; ``-NAME`` drops one; ``NAME`` adds one; ``cores=N``
    sets the core count. ``none`` simulates a CPU without bf16 on any machine; ``amx_bf16,avx512_bf16`` simulates
    one with it (the precision choice follows; the arithmetic is still what the real CPU does).
    """
    flags = set(base.flags)
    cores = base.cores
    for raw in spec.split(","):
        item = raw.strip().lower()
        if not item:
            continue
        if item == "none":
            flags.clear()
        elif item.startswith("cores="):
            try:
                cores = int(item[6:])
            except ValueError:
                cores = 0
            if cores < 1:
                raise UsageError(f"{ENV_FLAGS}: {raw.strip()!r} needs a positive integer")
        else:
            name = item.lstrip("+-")
            if name not in _KNOWN:
                raise UsageError(f"{ENV_FLAGS}: unknown flag {name!r}; known: none, cores=N, {', '.join(_KNOWN)}")
            (flags.discard if item.startswith("-") else flags.add)(name)
    return replace(base, flags=tuple(sorted(flags)), cores=cores, source=ENV_FLAGS)


def caps_from_env(env: Mapping[str, str] | None = None, detected: CpuCaps | None = None) -> CpuCaps:
    """For the CLI layer only: the detected caps, overridden by ``FACEREST_CPU_FLAGS`` when it is set."""
    env = os.environ if env is None else env
    base = detected if detected is not None else detect_cpu_caps()
    spec = env.get(ENV_FLAGS, "").strip()
    return parse_cpu_flags(spec, base) if spec else base


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision to run, and a one-line note for the user when the choice deserves one (else ``""``)."""

    precision: Precision
    note: str = ""


def choose_precision(requested: str, device: str, caps: CpuCaps, backend: str = "torch") -> PrecisionChoice:
    """Resolve ``--precision`` for ``device`` (``cpu``, ``cuda[:N]``, ``mps``) and ``backend``.

    ``auto``: bf16 on a CPU with AMX or AVX512_BF16, fp32 on other CPUs; fp32 on CUDA and MPS (today's default
    there; fp16/bf16 stay explicit choices on GPUs).
    Explicit ``bf16`` on a CPU without native bf16: the torch backend runs it (oneDNN emulates bf16, correct but
    slower than fp32) and says so in ``note``; the openvino backend raises ``UsageError``, because OpenVINO's CPU
    plugin would quietly run f32 instead and the user would not get what was asked.
    ``fp16`` on CPU raises ``UsageError`` for both backends (no fp16 compute on x86 CPUs before AMX-FP16).
    """
    if requested not in ("auto", "fp32", "bf16", "fp16"):
        raise UsageError(f"--precision must be auto, fp32, bf16 or fp16; got {requested!r}")
    if device != "cpu":
        if backend == "openvino":
            raise UsageError(f"--backend openvino runs on the CPU only; got --device {device}")
        return PrecisionChoice("fp32" if requested == "auto" else requested)  # type: ignore[arg-type]
    if requested == "auto":
        if caps.bf16:
            unit = "AMX" if caps.amx else "AVX512_BF16"
            return PrecisionChoice("bf16", f"precision auto: bf16 ({unit} on this CPU)")
        return PrecisionChoice("fp32", "precision auto: fp32 (this CPU has no AMX or AVX512_BF16)")
    if requested == "fp16":
        raise UsageError("--precision fp16 needs a GPU (--device cuda); on CPU use bf16 or fp32")
    if requested == "bf16" and not caps.bf16:
        if backend == "openvino":
            raise UsageError(
                "--precision bf16: this CPU has no AMX or AVX512_BF16, and OpenVINO would silently run f32; "
                "use --precision fp32 (or auto)"
            )
        return PrecisionChoice(
            "bf16", "--precision bf16: this CPU has no AMX or AVX512_BF16, so bf16 is emulated and slower than fp32"
        )
    return PrecisionChoice(requested)  # type: ignore[arg-type]
