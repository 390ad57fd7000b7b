"""Input discovery: files and folders (walked recursively, in a stable order) -> ``InputItem``s.

Each item carries the path relative to its input root, which decides where its output goes. Files that cannot be
inputs are reported, not silently dropped, when the user named them explicitly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal

from facerest_cli.config import IMAGE_EXTENSIONS
from facerest_cli.errors import UsageError

VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v"})

Kind = Literal["image", "video"]


@dataclass(frozen=True)
class InputItem:
    path: Path  # as found under its root (may be a symlink)
    rel_path: Path  # relative to the input root; the output keeps this layout
    kind: Kind


def classify(path: Path) -> Kind | None:
    """By extension, corrected by the first 16 bytes: a video is found by its content (mis-named, or with an
    unknown extension), a picture named like a video is an image."""
    from facerest_cli.video.probe import sniff_kind

    ext = path.suffix.lower()
    by_ext: Kind | None = "image" if ext in IMAGE_EXTENSIONS else "video" if ext in VIDEO_EXTENSIONS else None
    if not path.is_file():  # a FIFO would block the sniffing read forever; the decoder reports what it is
        return by_ext
    return sniff_kind(path, by_ext)  # type: ignore[return-value]


def _is_within(path: Path, parent: Path) -> bool:
    try:
        path.relative_to(parent)
        return True
    except ValueError:
        return False


def _excluded(d: Path, excluded: list[Path]) -> bool:
    real = Path(os.path.realpath(d))
    return any(_is_within(Path(os.path.abspath(d)), e) or _is_within(real, e) for e in excluded)


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


def discover(inputs: Iterable[Path], exclude: Iterable[Path] = ()) -> tuple[list[InputItem], list[Skipped]]:
    """Every image/video under ``inputs``, and the other files found there (skipped, with the reason).

    ``exclude`` (e.g. the output dir) is never walked into. A file given explicitly is always returned (even with
    an unknown extension: decoding then reports why it is not usable). Inside folders only known extensions are
    taken, case-insensitively, in sorted order; hidden files and folders are ignored.
    """
    # By absolute and by resolved path: an output folder reached through a symbolic link is still excluded.
    excluded = [Path(f(p)) for p in exclude for f in (os.path.abspath, os.path.realpath)]
    items: list[InputItem] = []
    skipped: list[Skipped] = []
    for raw in inputs:
        root = Path(raw)
        if not root.exists() and not root.is_symlink():
            raise UsageError(f"input not found: {root}")
        if root.is_dir():
            root_abs = Path(os.path.abspath(root))
            for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
                here = Path(dirpath)
                here_abs = Path(os.path.abspath(here))
                dirnames[:] = sorted(
                    d for d in dirnames if not d.startswith(".") and not _excluded(here_abs / d, excluded)
                )
                # A directory named like an image (x.jpg/) is walked as a folder, never taken as a file.
                for name in sorted(filenames):
                    p = here / name
                    if name.startswith("."):
                        continue
                    kind = classify(p)
                    if kind is None:
                        skipped.append(Skipped(p, f"not an image or video file ({p.suffix or 'no extension'})"))
                        continue
                    items.append(InputItem(path=p, rel_path=Path(os.path.abspath(p)).relative_to(root_abs), kind=kind))
        else:
            kind = classify(root) or "image"
            items.append(InputItem(path=root, rel_path=Path(root.name), kind=kind))
    return items, skipped
