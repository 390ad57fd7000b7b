"""weights.toml: the schema, the parser and its validation.

Weights are data (torchvision's ``WeightsEnum``, timm's ``PretrainedCfg``): every model the pipeline can use is one
table in ``weights.toml`` carrying its files (mirrors, sha256, size, checkpoint layout), licence, origin,
expected input and alignment template. Code never hard-codes a URL or a hash.

This module is pure Python (no torch): ``facerest weights list`` must stay fast.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping, Sequence

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

from facerest_cli.errors import WeightsError
from facerest_cli.models.registry import is_known

ROLES = ("detector", "restorer", "recognizer", "prior", "parser", "morphable-model", "upsampler", "metric")
COLOR_ORDERS = ("rgb", "bgr", "gray")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True)
class WeightsFile:
    """One file of an entry.

    ``sha256 == ""`` means the true hash is unknown: the first verified download pins it in ``weights.lock``.
    ``alt_sha256`` lists byte-different re-releases of the same weights (e.g. biubug6's RetinaFace file and
    facexlib's re-save), all accepted. ``member`` is a path inside a zip archive (the url then points at the zip,
    whose own hash is ``archive_sha256``). For ``.pth`` files, ``key`` is the container key the state dict sits
    under, ``key_fallback`` the keys tried after it, ``prefix`` a prefix every state-dict key carries in the file,
    ``rename`` maps file keys (after the prefix) to module keys, and ``ignore`` lists file keys the official loader
    drops (unused heads). ``arch`` names the architecture this file loads into when it is not the entry's
    own: an entry of two networks (DifFace: its UNet is ``entry.arch``, its SwinIR stage a second file with
    ``arch = "difface_swinir"``); empty means ``entry.arch``.
    """

    name: str
    url: tuple[str, ...] = ()
    sha256: str = ""
    size: int = 0
    alt_sha256: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    member: str | None = None
    archive_name: str | None = None
    archive_sha256: str = ""
    archive_size: int = 0
    key: str | None = None
    key_fallback: tuple[str, ...] = ()
    prefix: str = ""
    rename: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    ignore: tuple[str, ...] = ()
    arch: str = ""

    @property
    def accepted_sha256(self) -> tuple[str, ...]:
        return tuple(h for h in (self.sha256, *self.alt_sha256) if h)

    @property
    def known_hash(self) -> bool:
        return bool(self.sha256)


@dataclass(frozen=True)
class InputSpec:
    """What the network expects: ``x = (p * value_range - mean) / std`` for pixels ``p`` in [0, 1], in ``color``
    order, ``size``×``size``. ``value_range`` is 1 for nets whose statistics are stated on [0, 1] (ImageNet, [-1, 1]
    restorers) and 255 for those stated on 0-255 values (RetinaFace's BGR means, 3DDFA, insightface ArcFace)."""

    size: int = 0
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    color: str = "rgb"
    normalisation: str = ""
    value_range: float = 1.0


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    role: str
    arch: str
    files: tuple[WeightsFile, ...]
    license: str
    source: str
    input: InputSpec = InputSpec()
    template: str = ""
    requires: tuple[str, ...] = ()
    notes: str = ""
    user_import_only: bool = False
    non_commercial: bool = False
    auto: int | None = None  # rank in its role's ``auto`` choice (lowest first); None: auto never picks it
    auto_fetch: bool = False  # ``auto`` fetches this one when no ranked entry of its role is installed

    def file(self, name: str | None = None) -> WeightsFile:
        """The file called ``name``, or the first (main) file."""
        if name is None:
            return self.files[0]
        for f in self.files:
            if f.name == name:
                return f
        raise WeightsError(f"weights entry {self.name!r} has no file {name!r}")


@dataclass(frozen=True)
class Registry:
    entries: Mapping[str, WeightsEntry]
    source: str

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def __iter__(self):
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, name: str) -> WeightsEntry:
        try:
            return self.entries[name]
        except KeyError:
            known = ", ".join(sorted(self.entries))
            raise WeightsError(f"unknown model {name!r}; weights.toml knows: {known}") from None

    def by_role(self, role: str) -> list[WeightsEntry]:
        return [e for e in self.entries.values() if e.role == role]


# --------------------------------------------------------------------------------------------------- parsing

_FILE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "url": list,
    "sha256": str,
    "size": int,
    "alt_sha256": list,
    "aliases": list,
    "member": str,
    "archive_name": str,
    "archive_sha256": str,
    "archive_size": int,
    "key": str,
    "key_fallback": list,
    "prefix": str,
    "rename": dict,
    "ignore": list,
    "arch": str,
}
_ENTRY_FIELDS: dict[str, type | tuple[type, ...]] = {
    "role": str,
    "arch": str,
    "files": list,
    "license": str,
    "source": str,
    "input": dict,
    "template": str,
    "requires": list,
    "notes": str,
    "user_import_only": bool,
    "non_commercial": bool,
    "auto": int,
    "auto_fetch": bool,
}
_REQUIRED_ENTRY = ("role", "arch", "files", "license", "source")
_INPUT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "size": int,
    "mean": list,
    "std": list,
    "color": str,
    "normalisation": str,
    "value_range": (int, float),
}


def _check_fields(where: str, table: Mapping[str, Any], spec: Mapping[str, Any], errors: list[str]) -> None:
    for k, v in table.items():
        if k not in spec:
            errors.append(f"{where}: unknown field {k!r}")
        elif not isinstance(v, spec[k]) or (spec[k] is not bool and isinstance(v, bool)):
            want = " or ".join(t.__name__ for t in spec[k]) if isinstance(spec[k], tuple) else spec[k].__name__
            errors.append(f"{where}.{k}: expected {want}, got {type(v).__name__} {v!r}")


def _str_list(where: str, v: Any, errors: list[str]) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        errors.append(f"{where}: expected a list of strings, got {v!r}")
        return ()
    return tuple(v)


def _parse_file(where: str, t: Mapping[str, Any], errors: list[str]) -> WeightsFile | None:
    if not isinstance(t, dict):
        errors.append(f"{where}: expected a table, got {t!r}")
        return None
    _check_fields(where, t, _FILE_FIELDS, errors)
    if "name" not in t:
        errors.append(f"{where}: missing 'name'")
        return None
    name = t["name"]
    if isinstance(name, str) and ("/" in name or "\\" in name or name in ("", ".", "..")):
        errors.append(f"{where}.name: must be a plain file name, got {name!r}")
    urls = _str_list(f"{where}.url", t.get("url", []), errors)
    for u in urls:
        if not u.startswith(("https://", "http://")):
            errors.append(f"{where}.url: not an http(s) URL: {u!r}")
    for hk in ("sha256", "archive_sha256"):
        h = t.get(hk, "")
        if h and not (isinstance(h, str) and _SHA256.match(h)):
            errors.append(f"{where}.{hk}: expected 64 lowercase hex digits or \"\", got {h!r}")
    alts = _str_list(f"{where}.alt_sha256", t.get("alt_sha256", []), errors)
    for h in alts:
        if not _SHA256.match(h):
            errors.append(f"{where}.alt_sha256: bad hash {h!r}")
    for ik in ("size", "archive_size"):
        if isinstance(t.get(ik, 0), int) and t.get(ik, 0) < 0:
            errors.append(f"{where}.{ik}: must be >= 0")
    if t.get("member") and not t.get("archive_name"):
        errors.append(f"{where}: 'member' needs 'archive_name' (the zip the url points at)")
    rename = t.get("rename", {})
    if isinstance(rename, dict) and not all(isinstance(k, str) and isinstance(v, str) for k, v in rename.items()):
        errors.append(f"{where}.rename: expected a table of strings")
    return WeightsFile(
        name=str(name),
        url=urls,
        sha256=str(t.get("sha256", "")),
        size=int(t.get("size", 0)) if isinstance(t.get("size", 0), int) else 0,
        alt_sha256=alts,
        aliases=_str_list(f"{where}.aliases", t.get("aliases", []), errors),
        member=t.get("member"),
        archive_name=t.get("archive_name"),
        archive_sha256=str(t.get("archive_sha256", "")),
        archive_size=int(t.get("archive_size", 0)) if isinstance(t.get("archive_size", 0), int) else 0,
        key=t.get("key"),
        key_fallback=_str_list(f"{where}.key_fallback", t.get("key_fallback", []), errors),
        prefix=str(t.get("prefix", "")),
        rename=MappingProxyType(dict(rename)) if isinstance(rename, dict) else MappingProxyType({}),
        ignore=_str_list(f"{where}.ignore", t.get("ignore", []), errors),
        arch=str(t.get("arch", "")),
    )


def _parse_input(where: str, t: Mapping[str, Any], errors: list[str]) -> InputSpec:
    _check_fields(where, t, _INPUT_FIELDS, errors)
    color = t.get("color", "rgb")
    if color not in COLOR_ORDERS:
        errors.append(f"{where}.color: expected one of {COLOR_ORDERS}, got {color!r}")
    nums: dict[str, tuple[float, ...]] = {}
    for k in ("mean", "std"):
        v = t.get(k, [])
        if not isinstance(v, list) or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            errors.append(f"{where}.{k}: expected a list of numbers, got {v!r}")
            v = []
        nums[k] = tuple(float(x) for x in v)
    if nums["mean"] and nums["std"] and len(nums["mean"]) != len(nums["std"]):
        errors.append(f"{where}: mean and std differ in length")
    if any(s == 0 for s in nums["std"]):
        errors.append(f"{where}.std: zero entries")
    vr = t.get("value_range", 1)
    if vr not in (1, 255):
        errors.append(f"{where}.value_range: expected 1 or 255, got {vr!r}")
    elif vr == 1 and any(abs(m) > 1 for m in nums["mean"]):
        errors.append(f"{where}: mean {list(nums['mean'])} is stated on 0-255 values: set value_range = 255")
    return InputSpec(
        size=int(t.get("size", 0)) if isinstance(t.get("size", 0), int) else 0,
        mean=nums["mean"],
        std=nums["std"],
        color=str(color),
        normalisation=str(t.get("normalisation", "")),
        value_range=float(vr) if vr in (1, 255) else 1.0,
    )


def _toml(text: str, source: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        # tomllib itself rejects a table defined twice, which is how a duplicated name shows up.
        raise WeightsError(f"{source}: not valid TOML ({e})") from None


def parse_registry(text: str, source: str = "weights.toml", fragments: Sequence[tuple[str, str]] = ()) -> Registry:
    """Parse and validate the whole file and any ``(text, source)`` fragments (users' own models), which add
    entries but never replace one; every problem is reported at once in one ``WeightsError``."""
    tables = [(name, t, source) for name, t in _toml(text, source).items()]
    known = {name: source for name, _, _ in tables}
    errors: list[str] = []
    for frag_text, frag_source in fragments:
        for name, t in _toml(frag_text, frag_source).items():
            if name in known:
                errors.append(f"{frag_source}[{name}]: {known[name]} already defines {name!r}; pick another name")
                continue
            known[name] = frag_source
            tables.append((name, t, frag_source))
    entries: dict[str, WeightsEntry] = {}
    for name, t, where_file in tables:
        where = f"{where_file}[{name}]"
        if not isinstance(t, dict):
            errors.append(f"{where}: expected a table")
            continue
        if not _NAME.match(name):
            errors.append(f"{where}: names are lowercase letters, digits, '.', '_' and '-'")
        _check_fields(where, t, _ENTRY_FIELDS, errors)
        missing = [k for k in _REQUIRED_ENTRY if k not in t]
        if missing:
            errors.append(f"{where}: missing {', '.join(missing)}")
            continue
        if t["role"] not in ROLES:
            errors.append(f"{where}.role: expected one of {ROLES}, got {t['role']!r}")
        if isinstance(t["arch"], str) and not is_known(t["arch"]):
            errors.append(f"{where}.arch: unknown architecture {t['arch']!r} (facerest_cli/models/registry.py, or "
                          "'package.module:attr')")
        if t.get("auto_fetch") and "auto" not in t:
            errors.append(f"{where}: auto_fetch needs an auto rank")
        files = []
        raw_files = t["files"] if isinstance(t["files"], list) else []
        if not raw_files:
            errors.append(f"{where}.files: at least one file is needed")
        for i, ft in enumerate(raw_files):
            f = _parse_file(f"{where}.files[{i}]", ft, errors)
            if f is not None:
                files.append(f)
        if len({f.name for f in files}) != len(files):
            errors.append(f"{where}.files: two files share a name")
        user_only = bool(t.get("user_import_only", False))
        for f in files:
            if not user_only and not f.url:
                errors.append(f"{where}: file {f.name!r} has no url (set user_import_only = true if it has none)")
        entries[name] = WeightsEntry(
            name=name,
            role=str(t["role"]),
            arch=str(t["arch"]),
            files=tuple(files),
            license=str(t["license"]),
            source=str(t["source"]),
            input=_parse_input(f"{where}.input", t.get("input", {}), errors),
            template=str(t.get("template", "")),
            requires=_str_list(f"{where}.requires", t.get("requires", []), errors),
            notes=str(t.get("notes", "")),
            user_import_only=user_only,
            non_commercial=bool(t.get("non_commercial", False)),
            auto=t["auto"] if isinstance(t.get("auto"), int) and not isinstance(t.get("auto"), bool) else None,
            auto_fetch=bool(t.get("auto_fetch", False)),
        )
    for e in entries.values():
        for r in e.requires:
            if r not in entries:
                errors.append(f"{source}[{e.name}].requires: {r!r} is not an entry")
            elif r == e.name:
                errors.append(f"{source}[{e.name}].requires: an entry cannot require itself")
    if errors:
        raise WeightsError(f"{source} is invalid:\n  " + "\n  ".join(errors))
    return Registry(entries=MappingProxyType(entries), source=source)


def load_registry(path: Path | str | None = None, model_dir: Path | None = None) -> Registry:
    """The registry shipped with the package (or the file at ``path``), plus every ``*.toml`` fragment in
    ``model_dir`` (``$FACEREST_HOME/models``: a user's own models), in name order."""
    if path is not None:
        p = Path(path)
        text, source = p.read_text(encoding="utf-8"), str(p)
    else:
        text = resources.files("facerest_cli").joinpath("weights.toml").read_text(encoding="utf-8")
        source = "weights.toml"
    fragments = []
    if model_dir is not None and model_dir.is_dir():
        fragments = [(f.read_text(encoding="utf-8"), str(f)) for f in sorted(model_dir.glob("*.toml"))]
    return parse_registry(text, source, fragments)
