"""Raw EXIF surgery, so metadata survives byte for byte where it can.

Two jobs Pillow and tifffile do not do for us:

* ``upright_exif`` sets the orientation tag to 1 *in place* (the pixels we write are already upright) instead of
  re-serialising the whole block, which would move maker notes and break their internal offsets;
* ``tiff_exif_tags`` / ``add_exif_ifds`` carry EXIF into a TIFF written by tifffile: the IFD0 tags (make, model,
  date, artist, copyright, IPTC ...) become TIFF tags, and the Exif and GPS sub-IFDs (capture date, exposure,
  position), which tifffile refuses to write, are appended after the image and linked from IFD0.
"""

from __future__ import annotations

import struct

EXIF_PREFIX = b"Exif\x00\x00"
ORIENTATION = 0x0112
EXIF_IFD = 0x8769
GPS_IFD = 0x8825
INTEROP_IFD = 0xA005

# Tags that describe a TIFF's pixel layout or that we carry by other means (ICC, XMP, resolution): never copied
# from a source's IFD0 into EXIF or into another file's IFD0.
STRUCTURAL_TAGS = frozenset(
    {254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 274, 277, 278, 279, 280, 281, 284, 317, 320, 322, 323, 324,
     325, 338, 339, 340, 341, 347, 330, 400, 700, 32997, 32998, 34675, EXIF_IFD, GPS_IFD, INTEROP_IFD, 0x0201, 0x0202}
)

def _split(exif: bytes) -> tuple[bytes, bytes]:
    """(prefix, TIFF-structured body) of an EXIF block, with or without the JPEG ``Exif\\0\\0`` prefix."""
    if exif.startswith(EXIF_PREFIX):
        return EXIF_PREFIX, exif[len(EXIF_PREFIX):]
    return b"", exif


def _byte_order(body: bytes) -> str:
    if body[:4] == b"II*\x00":
        return "<"
    if body[:4] == b"MM\x00*":
        return ">"
    raise ValueError("not a classic TIFF/EXIF header")


def upright_exif(exif: bytes | None) -> bytes | None:
    """EXIF with IFD0's orientation set to 1, every other byte unchanged (falls back to Pillow's re-serialisation
    for blocks this parser does not understand; unreadable blocks pass through)."""
    if not exif:
        return None
    try:
        prefix, body = _split(exif)
        bo = _byte_order(body)
        (ifd0,) = struct.unpack_from(bo + "I", body, 4)
        (n,) = struct.unpack_from(bo + "H", body, ifd0)
        out = bytearray(body)
        for i in range(n):
            pos = ifd0 + 2 + 12 * i
            tag, typ, count = struct.unpack_from(bo + "HHI", body, pos)
            if tag == ORIENTATION:
                if typ != 3 or count != 1:
                    raise ValueError("orientation tag is not one SHORT")
                struct.pack_into(bo + "H", out, pos + 8, 1)
                break
        return prefix + bytes(out)
    except (ValueError, struct.error):
        pass
    from PIL import Image

    try:
        e = Image.Exif()
        e.load(exif)
        if e.get(ORIENTATION, 1) != 1:
            e[ORIENTATION] = 1
        return e.tobytes()
    except Exception:  # noqa: BLE001 - unreadable EXIF is passed through rather than lost
        return exif


def clean_tiff_exif(exif_obj) -> bytes | None:
    """EXIF bytes from a TIFF's IFD0 (Pillow ``Exif``): its descriptive tags and Exif/GPS sub-IFDs, without the
    TIFF's structural tags (strip offsets and the like would be garbage in another file)."""
    from PIL import Image

    clean = Image.Exif()
    for tag, value in exif_obj.items():
        if tag not in STRUCTURAL_TAGS:
            clean[tag] = value
    for sub in (EXIF_IFD, GPS_IFD):
        d = exif_obj.get_ifd(sub)
        if d:
            clean[sub] = {k: v for k, v in d.items() if k != INTEROP_IFD}
    if not len(clean):
        return None
    return clean.tobytes()


# IFD0 tags tifffile can write from EXIF as (dtype, python type); ``Software`` is passed to tifffile directly.
_TIFF_IFD0_TAGS = {
    269: "s", 270: "s", 271: "s", 272: "s", 285: "s", 306: "s", 315: "s", 316: "s", 33432: "s",  # text
    33723: "B",  # IPTC-NAA
    34377: "B",  # Photoshop image resources
}


def tiff_exif_tags(exif: bytes | None) -> tuple[list[tuple], str | None]:
    """tifffile ``extratags`` for the descriptive IFD0 tags of ``exif``, and its Software string."""
    if not exif:
        return [], None
    from PIL import Image

    try:
        e = Image.Exif()
        e.load(exif)
    except Exception:  # noqa: BLE001
        return [], None
    tags = []
    for tag, dtype in _TIFF_IFD0_TAGS.items():
        v = e.get(tag)
        if dtype == "s" and isinstance(v, str) and v:
            tags.append((tag, "s", 0, v, True))
        elif dtype == "B" and isinstance(v, (bytes, tuple)) and len(v):
            raw = bytes(v) if isinstance(v, bytes) else struct.pack(f"<{len(v)}I", *v)
            tags.append((tag, "B", len(raw), raw, True))
    software = e.get(305)
    return tags, software if isinstance(software, str) and software else None


def add_exif_ifds(tiff: bytes, exif: bytes | None) -> tuple[bytes, list[str]]:
    """Append the Exif and GPS sub-IFDs of ``exif`` to a single-image classic TIFF and link them from IFD0.

    IFD0 is rewritten after the image with two more entries (the old one stays in the file, unreferenced), so
    nothing already written moves. Returns the new bytes and warnings.
    """
    if not exif:
        return tiff, []
    import io

    buf = io.BytesIO(tiff)
    warnings = append_exif_ifds(buf, exif)
    return buf.getvalue(), warnings


def append_exif_ifds(f, exif: bytes | None) -> list[str]:
    """``add_exif_ifds`` on a file opened for reading and writing (a streamed TIFF: only its header and IFD0 are
    read back, the image data is never loaded). Nothing is written when it returns a warning."""
    if not exif:
        return []
    from PIL import Image, TiffImagePlugin

    try:
        e = Image.Exif()
        e.load(exif)
        subs = {tag: {k: v for k, v in e.get_ifd(tag).items() if k != INTEROP_IFD} for tag in (EXIF_IFD, GPS_IFD)}
    except Exception:  # noqa: BLE001
        return ["EXIF could not be parsed: its Exif/GPS sub-IFDs were not carried"]
    subs = {tag: d for tag, d in subs.items() if d}
    if not subs:
        return []
    f.seek(0)
    ifh = f.read(8)
    try:
        bo = _byte_order(ifh)
    except ValueError:
        return ["BigTIFF output: EXIF sub-IFDs (capture date, exposure, GPS) were not carried"]
    (ifd0,) = struct.unpack_from(bo + "I", ifh, 4)
    f.seek(ifd0)
    (n,) = struct.unpack(bo + "H", f.read(2))
    raw = f.read(12 * n + 4)
    entries = [raw[12 * i: 12 * i + 12] for i in range(n)]
    (next_ifd,) = struct.unpack_from(bo + "I", raw, 12 * n)
    entries = [en for en in entries if struct.unpack_from(bo + "H", en)[0] not in subs]

    end = f.seek(0, 2)
    pad = b"\0" if end % 2 else b""
    new_ifd0 = end + len(pad)
    size0 = 2 + 12 * (len(entries) + len(subs)) + 4
    pos = new_ifd0 + size0
    blobs = []
    for tag, values in sorted(subs.items()):
        ifd = TiffImagePlugin.ImageFileDirectory_v2(ifh, group=tag)
        for k, v in values.items():
            try:
                ifd[k] = v
            except Exception:  # noqa: BLE001 - one odd tag must not lose the rest
                continue
        blob = ifd.tobytes(pos)
        entries.append(struct.pack(bo + "HHII", tag, 4, 1, pos))
        blobs.append(blob + (b"\0" if len(blob) % 2 else b""))
        pos += len(blobs[-1])
    if pos > 0xFFFFFFFF:
        return ["TIFF too large for EXIF sub-IFDs: they were not carried"]
    entries.sort(key=lambda en: struct.unpack_from(bo + "H", en)[0])
    f.write(pad + struct.pack(bo + "H", len(entries)) + b"".join(entries) + struct.pack(bo + "I", next_ifd))
    for blob in blobs:
        f.write(blob)
    f.seek(4)
    f.write(struct.pack(bo + "I", new_ifd0))
    f.seek(0, 2)
    return []
