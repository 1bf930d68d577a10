"""Broken media on purpose: valid sample files and the mutations that break them.

One vocabulary of damage for the in-process property tests (Hypothesis draws the mutations) and the
broken-media corpus sent to a live server (`random_mutations` with fixed seeds):

- ("flip", pos, bit): one bit flipped;
- ("insert", pos, data): bytes inserted;
- ("delete", pos, count): bytes removed;
- ("truncate", pos): the file cut at pos;
- ("field", index, value): a header field overwritten with an extreme value (0, 1, 0x7f..., 0xff...):
  `index` picks one of the format's field offsets (`field_offsets`: PNG chunks, JPEG segments, GIF
  descriptors, RIFF/WebP chunks, MP4 boxes, Matroska/WebM elements).

Positions are taken modulo the current length, so any integer is a valid position.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
from PIL import Image

from harness.media import encode_video, gradient_image, image_bytes

Mutation = tuple
"""One of ("flip", pos, bit), ("insert", pos, bytes), ("delete", pos, n), ("truncate", pos), ("field", i, bytes)."""

FIELD_VALUES: tuple[bytes, ...] = (
    b"\x00",
    b"\x01",
    b"\x7f",
    b"\x80",
    b"\xff",
    b"\x00\x00",
    b"\xff\xff",
    b"\x7f\xff",
    b"\x00\x00\x00\x00",
    b"\x00\x00\x00\x01",
    b"\x00\x00\x00\x08",
    b"\x7f\xff\xff\xff",
    b"\x80\x00\x00\x00",
    b"\xff\xff\xff\xff",
)
"""Values written over header fields: zero, one, the smallest box size, signed and unsigned extremes."""

IMAGE_KINDS = ("png", "jpeg", "gif", "webp")
VIDEO_KINDS = ("mp4-faststart", "mp4-moov-last", "mkv", "webm")


def sample_files() -> dict[str, bytes]:
    """Small valid files, one per kind: PNG, JPEG, GIF, WebP (24x16 images), MP4 with the index
    (moov) first and last, MKV (H.264) and WebM (VP9) clips of 8 frames of 32x24 at 8 fps."""
    img = gradient_image(24, 16, 3)
    rgba = gradient_image(24, 16, 4, mode="RGBA")
    frames = np.stack([np.asarray(gradient_image(32, 24, 10 + k)) for k in range(8)])
    return {
        "png": image_bytes(rgba, "PNG"),
        "jpeg": image_bytes(img, "JPEG", quality=90),
        "gif": image_bytes(img.convert("P", palette=Image.Palette.ADAPTIVE), "GIF"),
        "webp": image_bytes(img, "WEBP", quality=80),
        "mp4-faststart": encode_video(8, 8, images=frames, gop=4, faststart=True),
        "mp4-moov-last": encode_video(8, 8, images=frames, gop=4),
        "mkv": encode_video(8, 8, images=frames, gop=4, container="matroska"),
        "webm": encode_video(8, 8, images=frames, gop=4, container="webm", codec="libvpx-vp9"),
    }


def apply(data: bytes, mutations: Sequence[Mutation], fields: Sequence[int] = ()) -> bytes:
    """`data` with `mutations` applied in order; `fields` are the offsets "field" mutations use."""
    out = bytearray(data)
    for m in mutations:
        if not out:
            break
        kind, pos = m[0], m[1] % len(out)
        if kind == "flip":
            out[pos] ^= 1 << (m[2] % 8)
        elif kind == "insert":
            out[pos:pos] = m[2]
        elif kind == "delete":
            del out[pos : pos + m[2]]
        elif kind == "truncate":
            del out[pos:]
        elif kind == "field":
            if fields:
                at = fields[m[1] % len(fields)]
                out[at : at + len(m[2])] = m[2]
        else:
            raise ValueError(f"unknown mutation {kind!r}")
    return bytes(out)


def random_mutations(rng: np.random.Generator, count: int) -> list[Mutation]:
    """`count` mutations drawn with `rng` (the corpus's deterministic counterpart of the strategy)."""
    out: list[Mutation] = []
    for _ in range(count):
        kind = ("flip", "insert", "delete", "truncate", "field")[int(rng.integers(5))]
        pos = int(rng.integers(2**31))
        if kind == "flip":
            out.append((kind, pos, int(rng.integers(8))))
        elif kind == "insert":
            out.append((kind, pos, rng.bytes(int(rng.integers(1, 17)))))
        elif kind == "delete":
            out.append((kind, pos, int(rng.integers(1, 65))))
        elif kind == "truncate":
            out.append((kind, pos))
        else:
            out.append((kind, pos, FIELD_VALUES[int(rng.integers(len(FIELD_VALUES)))]))
    return out


# ---------------------------------------------------------------------------------------------
# Header field offsets per format
# ---------------------------------------------------------------------------------------------


def field_offsets(data: bytes, kind: str) -> list[int]:
    """Byte offsets of header fields in `data` (of `kind`, see IMAGE_KINDS / VIDEO_KINDS)."""
    finder = {
        "png": _png_fields,
        "jpeg": _jpeg_fields,
        "gif": _gif_fields,
        "webp": _riff_fields,
        "mp4-faststart": _mp4_fields,
        "mp4-moov-last": _mp4_fields,
        "mkv": _ebml_fields,
        "webm": _ebml_fields,
    }[kind]
    return sorted({o for o in finder(data) if 0 <= o < len(data)})


def _png_fields(data: bytes) -> list[int]:
    out, pos = [], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        out += [pos, pos + 4] + list(range(pos + 8, min(pos + 8 + length, pos + 8 + 16)))
        out.append(pos + 8 + length)  # crc
        pos += 12 + length
    return out


def _jpeg_fields(data: bytes) -> list[int]:
    out, pos = [0], 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker = data[pos + 1]
        out += [pos + 1, pos + 2]
        if marker in (0xD8, 0xD9) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        out += list(range(pos + 4, min(pos + 2 + length, pos + 4 + 12)))  # SOF: bits, h, w, comps
        if marker == 0xDA:  # start of scan: entropy-coded data follows
            out += list(range(pos + 2 + length, len(data), max(1, (len(data) - pos) // 16)))
            break
        pos += 2 + length
    return out


def _gif_fields(data: bytes) -> list[int]:
    out = list(range(6, 13))  # logical screen: width, height, flags, background, aspect
    for i in range(13, len(data) - 10):
        if data[i] == 0x2C:  # image descriptor: left, top, width, height, flags (+ LZW size)
            out += list(range(i + 1, i + 11))
        elif data[i] == 0x21 and data[i + 1] in (0xF9, 0xFF, 0xFE):
            out += [i + 1, i + 2, i + 3]
    return out


def _riff_fields(data: bytes) -> list[int]:
    out, pos = [4, 8], 12
    while pos + 8 <= len(data):
        (size,) = struct.unpack("<I", data[pos + 4 : pos + 8])
        out += [pos, pos + 4] + list(range(pos + 8, min(pos + 8 + size, pos + 8 + 16)))
        pos += 8 + size + (size & 1)
    return out


_MP4_CONTAINERS = {
    b"moov",
    b"trak",
    b"mdia",
    b"minf",
    b"stbl",
    b"edts",
    b"dinf",
    b"udta",
    b"mvex",
    b"moof",
    b"traf",
}


def _mp4_fields(data: bytes, start: int = 0, end: int | None = None) -> list[int]:
    out, pos, end = [], start, len(data) if end is None else end
    while pos + 8 <= end:
        (size,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        if size < 8:
            break
        out += [pos, pos + 4]
        if kind in _MP4_CONTAINERS:
            out += _mp4_fields(data, pos + 8, min(end, pos + size))
        elif kind == b"stsd":  # sample entries: avc1 / vp09 (width, height at +32), avcC inside
            out += list(range(pos + 12, min(pos + size, pos + 12 + 48), 2)) + [pos + size - 8]
        elif kind != b"mdat":
            out += list(range(pos + 8, min(pos + size, pos + 8 + 40), 4))
            out += [pos + size - 8, pos + size - 4]  # tkhd: width, height
        pos += size
    return out


_EBML_MASTERS = {
    0x1A45DFA3,
    0x18538067,
    0x114D9B74,
    0x4DBB,
    0x1549A966,
    0x1654AE6B,
    0xAE,
    0xE0,
    0x1F43B675,
    0xA0,
    0x1C53BB6B,
    0xBB,
    0xB7,
    0x1254C367,
    0x7373,
}


def _vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int]:
    first = data[pos]
    length = 1
    while length <= 8 and not first & (0x80 >> (length - 1)):
        length += 1
    if length > 8 or pos + length > len(data):
        raise ValueError("bad vint")
    value = first if keep_marker else first & (0xFF >> length)
    for b in data[pos + 1 : pos + length]:
        value = (value << 8) | b
    return value, length


def _ebml_fields(data: bytes, start: int = 0, end: int | None = None, depth: int = 0) -> list[int]:
    out, pos, end = [], start, len(data) if end is None else end
    while pos + 2 <= end and depth < 6:
        try:
            ident, id_len = _vint(data, pos, keep_marker=True)
            size, size_len = _vint(data, pos + id_len, keep_marker=False)
        except ValueError:
            break
        body = pos + id_len + size_len
        out += [pos, pos + id_len]
        if size == (1 << (7 * size_len)) - 1:  # unknown size: runs to the end of the parent
            size = end - body
        if ident in _EBML_MASTERS:
            out += _ebml_fields(data, body, min(end, body + size), depth + 1)
        else:
            out += list(range(body, min(body + size, body + 8)))
        pos = body + size
    return out
