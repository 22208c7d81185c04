"""Byte-level metadata I/O for PNG, JPEG and WebP: read, replace and insert XMP without touching pixels.

Written by hand (not with PIL) because Pillow 9.5, which A1111/Forge ship, cannot write XMP into
WebP or JPEG, and because every other chunk (ComfyUI `prompt`/`workflow`, A1111 `parameters`, EXIF,
ICC) must survive byte for byte. Every parser checks lengths (and PNG CRCs) and raises
`MalformedImage` instead of guessing.
"""

from __future__ import annotations

import logging
import struct
import zlib
from dataclasses import dataclass

from .errors import SdguardError

logger = logging.getLogger("sdguard.label")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
XMP_PNG_KEYWORD = b"XML:com.adobe.xmp"
XMP_JPEG_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
_JPEG_MAX_SEGMENT = 65533
_WEBP_XMP_FLAG = 0x04
_WEBP_ALPHA_FLAG = 0x10
# PNG chunks that describe the pixel encoding: they travel with IDAT when pixels are re-encoded.
PNG_PIXEL_CHUNKS = (b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"sBIT", b"bKGD", b"hIST")


class MalformedImage(SdguardError, ValueError):
    """The file is not a well-formed PNG, JPEG or WebP; nothing was written."""


def sniff(data: bytes) -> str:
    """'png', 'jpeg' or 'webp' from the magic bytes.

    Raises:
        MalformedImage: any other content.
    """
    if data.startswith(PNG_MAGIC):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    raise MalformedImage("not a PNG, JPEG or WebP file (unknown signature)")


# --- PNG --------------------------------------------------------------------------------------

@dataclass
class Chunk:
    """One PNG chunk or WebP chunk: its four-byte type and its data."""

    kind: bytes
    data: bytes


def png_chunks(data: bytes) -> list[Chunk]:
    """All chunks of a PNG, CRC-checked, ending with IEND.

    Raises:
        MalformedImage: bad signature, truncated chunk, CRC mismatch or missing IEND.
    """
    if not data.startswith(PNG_MAGIC):
        raise MalformedImage("not a PNG file")
    chunks, pos = [], len(PNG_MAGIC)
    while pos + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        end = pos + 12 + length
        if end > len(data):
            raise MalformedImage(f"PNG chunk {kind!r} at byte {pos} is truncated")
        body = data[pos + 8:pos + 8 + length]
        if zlib.crc32(kind + body) & 0xFFFFFFFF != struct.unpack(">I", data[end - 4:end])[0]:
            raise MalformedImage(f"PNG chunk {kind!r} at byte {pos} has a bad CRC")
        chunks.append(Chunk(kind, body))
        pos = end
        if kind == b"IEND":
            break
    if not chunks or chunks[0].kind != b"IHDR" or chunks[-1].kind != b"IEND":
        raise MalformedImage("PNG has no IHDR at the start or no IEND at the end")
    return chunks


def png_bytes(chunks: list[Chunk]) -> bytes:
    out = [PNG_MAGIC]
    for c in chunks:
        out.append(struct.pack(">I", len(c.data)) + c.kind + c.data
                   + struct.pack(">I", zlib.crc32(c.kind + c.data) & 0xFFFFFFFF))
    return b"".join(out)


def png_text(chunks: list[Chunk]) -> dict[str, str]:
    """Text metadata of a PNG (tEXt, zTXt, iTXt) as keyword -> text; undecodable entries are skipped."""
    out = {}
    for c in chunks:
        try:
            if c.kind == b"tEXt":
                k, v = c.data.split(b"\x00", 1)
                out[k.decode("latin-1")] = v.decode("latin-1")
            elif c.kind == b"zTXt":
                k, v = c.data.split(b"\x00", 1)
                out[k.decode("latin-1")] = zlib.decompress(v[1:]).decode("latin-1")
            elif c.kind == b"iTXt":
                k, rest = c.data.split(b"\x00", 1)
                compressed, rest = rest[0], rest[2:]
                _lang, _translated, text = rest.split(b"\x00", 2)
                out[k.decode("latin-1")] = (zlib.decompress(text) if compressed else text).decode("utf-8")
        except (ValueError, IndexError, zlib.error, UnicodeDecodeError):
            continue
    return out


def png_text_keyword(c: Chunk) -> bytes | None:
    return c.data.split(b"\x00", 1)[0] if c.kind in (b"tEXt", b"zTXt", b"iTXt") else None


def png_set_xmp(chunks: list[Chunk], xmp: str, drop_keywords: tuple[bytes, ...] = ()) -> list[Chunk]:
    """Replace any XMP iTXt (and text chunks named in drop_keywords) with one new XMP iTXt before IDAT."""
    keep = [c for c in chunks if png_text_keyword(c) not in (XMP_PNG_KEYWORD, *drop_keywords)]
    itxt = Chunk(b"iTXt", XMP_PNG_KEYWORD + b"\x00\x00\x00\x00\x00" + xmp.encode("utf-8"))
    first_idat = next(i for i, c in enumerate(keep) if c.kind == b"IDAT")
    return keep[:first_idat] + [itxt] + keep[first_idat:]


# --- JPEG -------------------------------------------------------------------------------------

def jpeg_segments(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """Marker segments before the scan, and the rest of the file (from SOS on).

    Returns:
        ([(marker, payload)], tail) where tail starts with the SOS marker.

    Raises:
        MalformedImage: no SOI, a truncated segment, or no SOS.
    """
    if not data.startswith(b"\xff\xd8"):
        raise MalformedImage("not a JPEG file")
    segments, pos = [], 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise MalformedImage(f"JPEG marker expected at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xDA:
            return segments, data[pos:]
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        if length < 2 or pos + 2 + length > len(data):
            raise MalformedImage(f"JPEG segment 0x{marker:02X} at byte {pos} is truncated")
        segments.append((marker, data[pos + 4:pos + 2 + length]))
        pos += 2 + length
    raise MalformedImage("JPEG has no image data (no SOS marker)")


def jpeg_bytes(segments: list[tuple[int, bytes]], tail: bytes) -> bytes:
    out = [b"\xff\xd8"]
    for marker, payload in segments:
        out.append(bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload)
    return b"".join(out) + tail


def jpeg_xmp(segments: list[tuple[int, bytes]]) -> str | None:
    for marker, payload in segments:
        if marker == 0xE1 and payload.startswith(XMP_JPEG_HEADER):
            return payload[len(XMP_JPEG_HEADER):].decode("utf-8", "replace")
    return None


def jpeg_set_xmp(segments: list[tuple[int, bytes]], xmp: str) -> list[tuple[int, bytes]]:
    """Replace the XMP APP1 segment, placing it after the leading APP0/APP1 (JFIF, EXIF) segments.

    Raises:
        ValueError: the XMP packet does not fit in one segment (the file itself is well-formed:
            its own XMP, which is kept, leaves no room for the label).
    """
    payload = XMP_JPEG_HEADER + xmp.encode("utf-8")
    if len(payload) > _JPEG_MAX_SEGMENT:
        # Extended XMP (split over several segments) is not written: few readers join it.
        raise ValueError(f"the XMP packet with the label would take {len(payload):,} bytes, more than the "
                         f"{_JPEG_MAX_SEGMENT:,} of one JPEG APP1 segment; the image's own XMP is kept and "
                         "leaves no room (remove it, or label a PNG or WebP)")
    keep = [(m, p) for m, p in segments if not (m == 0xE1 and p.startswith(XMP_JPEG_HEADER))]
    if len(segments) - len(keep) > 1:
        # The XMP standard allows one packet; readers use the first (which the label merges into).
        logger.warning("the JPEG holds %d standard XMP packets; the ones after the first are dropped",
                       len(segments) - len(keep))
    at = 0
    while at < len(keep) and keep[at][0] in (0xE0, 0xE1):
        at += 1
    return keep[:at] + [(0xE1, payload)] + keep[at:]


# --- WebP -------------------------------------------------------------------------------------

def webp_chunks(data: bytes) -> list[Chunk]:
    """The chunks inside a WebP RIFF container.

    Raises:
        MalformedImage: bad RIFF header or a truncated chunk.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise MalformedImage("not a WebP file")
    size = struct.unpack("<I", data[4:8])[0]
    if size + 8 > len(data) or size < 4:
        raise MalformedImage("WebP RIFF size exceeds the file")
    chunks, pos, end = [], 12, 8 + size
    while pos + 8 <= end:
        kind, length = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if pos + 8 + length > end:
            raise MalformedImage(f"WebP chunk {kind!r} at byte {pos} is truncated")
        chunks.append(Chunk(kind, data[pos + 8:pos + 8 + length]))
        pos += 8 + length + (length & 1)
    if not chunks:
        raise MalformedImage("WebP has no chunks")
    return chunks


def webp_bytes(chunks: list[Chunk]) -> bytes:
    body = b"".join(c.kind + struct.pack("<I", len(c.data)) + c.data + (b"\x00" if len(c.data) & 1 else b"")
                    for c in chunks)
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def webp_set_xmp(chunks: list[Chunk], xmp: str, size: tuple[int, int], has_alpha: bool) -> list[Chunk]:
    """Replace the 'XMP ' chunk, turning a simple (VP8/VP8L) file into the extended (VP8X) layout.

    Args:
        size: (width, height) of the canvas, needed to write a VP8X header.
        has_alpha: whether the image has an alpha channel (sets the VP8X alpha flag).
    """
    keep = [c for c in chunks if c.kind != b"XMP "]
    if keep[0].kind == b"VP8X":
        header = bytearray(keep[0].data)
        header[0] |= _WEBP_XMP_FLAG
        keep[0] = Chunk(b"VP8X", bytes(header))
    else:
        w, h = size
        flags = _WEBP_XMP_FLAG | (_WEBP_ALPHA_FLAG if has_alpha else 0)
        vp8x = bytes([flags, 0, 0, 0]) + (w - 1).to_bytes(3, "little") + (h - 1).to_bytes(3, "little")
        keep.insert(0, Chunk(b"VP8X", vp8x))
    return keep + [Chunk(b"XMP ", xmp.encode("utf-8"))]


def webp_xmp(chunks: list[Chunk]) -> str | None:
    for c in chunks:
        if c.kind == b"XMP ":
            return c.data.decode("utf-8", "replace")
    return None
