"""Images with captions, for the captioner: read from an ``.npz`` file or from a folder of images
with a captions file, and written back in either form.

``.npz``: two arrays, ``images`` — (N, H, W) grey, (N, H, W, C) channels-last as image files store
them, or (N, C, H, W) channels-first as PyTorch does, with C in 1 (grey), 3 (RGB) or 4 (RGBA, alpha
dropped); uint8 0–255 or floats 0–1 — and ``captions``, N strings (a NumPy string array, so the file
loads without pickle). The layout rule: channels-last when the last dimension is 1, 3 or 4;
otherwise channels-first when the second is. A shape that fits both, such as (N, 3, 8, 3), is read
channels-last (images 3 high, 8 wide, RGB); transpose such arrays to (N, H, W, C) before saving.

Folder: the images (PNG; JPEG too where Pillow is installed, as it is with matplotlib) and a file
``captions.tsv`` with one ``FILENAME<TAB>CAPTION`` line per image. All images must have one shape;
an alpha channel is dropped. PNGs are read with ``matplotlib.image.imread`` (no extra dependency)
and written by a small grey-scale PNG encoder below.

Either way :func:`read_captions` returns ``Captions(images (N, C, H, W) float32 in [0, 1], captions)``.
"""
from __future__ import annotations

import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .errors import DataError, check_file, check_readable, named_if_unreadable, read_text_file

CAPTIONS_FILE = "captions.tsv"


class Captions(NamedTuple):
    """``images`` (N, C, H, W) float32 in [0, 1]; ``captions`` N strings."""

    images: torch.Tensor
    captions: list[str]


CHANNELS = (1, 3, 4)  # grey, RGB, RGBA


def _channels_last(images: np.ndarray, where: Path, channels_first: bool) -> np.ndarray:
    """``images`` as (N, H, W, C): grey (N, H, W) gains C = 1; with ``channels_first``, (N, C, H, W) is
    transposed when its last dimension cannot be a channel count (the layout rule in the module doc)."""
    if images.ndim == 3:
        return images[..., None]
    if images.ndim == 4 and images.shape[-1] in CHANNELS:
        return images
    if images.ndim == 4 and channels_first and images.shape[1] in CHANNELS:
        return images.transpose(0, 2, 3, 1)
    layouts = "(N, H, W), (N, H, W, C) or (N, C, H, W)" if channels_first else "(N, H, W) or (N, H, W, C)"
    raise DataError(f"images: expected shape {layouts} with C in 1, 3, 4, got {images.shape}", where)


def images_to_nchw(images: np.ndarray, where: Path, *, channels_first: bool = False) -> torch.Tensor:
    """(N, H, W) or (N, H, W, C) uint8/float → (N, C, H, W) float32 in [0, 1], alpha dropped.
    ``channels_first`` also accepts (N, C, H, W) where the shape is unambiguous (see the module doc)."""
    images = _channels_last(images, where, channels_first)
    images = images[..., :3] if images.shape[-1] == 4 else images
    if images.dtype == np.uint8:
        x = images.astype(np.float32) / 255.0
    elif np.issubdtype(images.dtype, np.floating):
        x = images.astype(np.float32)
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise DataError(f"images: float pixels must lie in [0, 1], got [{x.min()}, {x.max()}]", where)
    else:
        raise DataError(f"images: expected uint8 or float pixels, got dtype {images.dtype}", where)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def _load_npz_arrays(p: Path) -> tuple[np.ndarray, np.ndarray]:
    """The ``images`` and ``captions`` arrays of an ``.npz`` file, loaded without pickle; a file that is
    not a zip archive (truncated, damaged, another format) or lacks either array is a :class:`DataError`."""
    check_readable(p)  # (a file that cannot be opened is named as such, not as "not a zip file")
    if not zipfile.is_zipfile(p):
        raise DataError("not a readable .npz archive: not a zip file (expected the zip archive np.savez writes; "
                        "the file may be truncated or damaged)", p)
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in ("images", "captions") if k not in z.files]
            if missing:
                raise DataError(f"expected arrays 'images' and 'captions', got {sorted(z.files)}", p)
            return z["images"], z["captions"]
    except DataError:
        raise
    except ValueError as e:  # object arrays need pickle, which is refused
        raise DataError(f"cannot load without pickle ({e}); save captions as np.array(list_of_str)", p) from None
    except (OSError, zlib.error, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"not a readable .npz archive: {e} (the file may be truncated or damaged)", p) from None


def _read_npz(p: Path) -> Captions:
    images, captions = _load_npz_arrays(p)
    if captions.dtype.kind not in "US" or captions.ndim != 1:
        raise DataError(f"captions: expected a 1-D string array, got dtype {captions.dtype} shape {captions.shape}", p)
    if len(captions) != len(images):
        raise DataError(f"expected one caption per image ({len(images)} images), got {len(captions)} captions", p)
    if len(images) == 0:
        raise DataError("no images (the arrays 'images' and 'captions' are empty)", p)
    caps = []
    for i, c in enumerate(captions):
        if isinstance(c, bytes):  # (a bytes array, dtype 'S')
            try:
                c = c.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"captions[{i}] is not UTF-8 (bytes {c[e.start:e.end].hex(' ')} at byte {e.start}); "
                                f"save the captions as str", p) from None
        c = str(c).strip()
        if not c:
            raise DataError(f"captions[{i}] is empty", p)
        caps.append(c)
    return Captions(images_to_nchw(images, p, channels_first=True), caps)


def _read_folder(captions_file: Path) -> Captions:
    import matplotlib.image as mpimg  # only folders need it; keeps `import rnnkit.data` light

    root = captions_file.parent
    images, caps, first = [], [], None
    for n, line in enumerate(read_text_file(captions_file).split("\n"), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip() or not fields[1].strip():
            raise DataError(f"expected 'FILENAME<TAB>CAPTION', got {line[:60]!r}", captions_file, n)
        name, caption = fields[0].strip(), fields[1].strip()
        image_path = root / name
        if not image_path.is_file():
            raise DataError(f"image {name!r} not found in {root}", captions_file, n)
        try:
            img = np.asarray(mpimg.imread(image_path))
        except Exception as e:  # noqa: BLE001 - any decoder failure is a bad image file
            raise DataError(f"cannot read image {name!r} ({type(e).__name__}: {e})", captions_file, n) from None
        if img.ndim == 3 and img.shape[-1] == 4:
            img = img[..., :3]
        if first is None:
            first = (img.shape, img.dtype, n)
        elif (img.shape, img.dtype) != first[:2]:
            raise DataError(
                f"image {name!r}: expected shape {first[0]} {first[1]} like the image on line {first[2]}, got {img.shape} {img.dtype}",
                captions_file, n,
            )
        images.append(img)
        caps.append(caption)
    if not images:
        raise DataError("no images listed", captions_file)
    return Captions(images_to_nchw(np.stack(images), captions_file), caps)


def read_captions(path: str | os.PathLike) -> Captions:
    """Images and captions from an ``.npz`` file, a folder holding ``captions.tsv``, or that file itself."""
    p = Path(path)
    with named_if_unreadable(p):  # (a name too long)
        folder = p.is_dir()
    if folder:
        if not (p / CAPTIONS_FILE).is_file():
            raise DataError(f"no {CAPTIONS_FILE} in the folder (expected one 'FILENAME<TAB>CAPTION' line per image)", p)
        return _read_folder(p / CAPTIONS_FILE)
    check_file(p)
    if p.suffix.lower() == ".npz":
        return _read_npz(p)
    return _read_folder(p)


def png_bytes(image: np.ndarray) -> bytes:
    """A grey-scale 8-bit PNG of ``image`` (H, W) uint8: signature, IHDR, one IDAT, IEND."""
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"png_bytes: expected a (H, W) uint8 array, got {image.shape} {image.dtype}")
    h, w = image.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # Each scanline starts with filter byte 0 (none); bit depth 8, colour type 0 (grey).
    raw = b"".join(b"\x00" + image[r].tobytes() for r in range(h))
    header = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def _as_uint8_grey(images: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, 1, H, W) or (N, H, W) floats in [0, 1] → (N, H, W) uint8."""
    x = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if x.ndim == 4:
        if x.shape[1] != 1:
            raise ValueError(f"write_captions: expected grey images (N, 1, H, W), got {x.shape}")
        x = x[:, 0]
    if x.ndim != 3:
        raise ValueError(f"write_captions: expected images (N, 1, H, W) or (N, H, W), got {x.shape}")
    if len(x) == 0:
        raise ValueError("write_captions: no images, which read_captions refuses")
    outside = ~((x >= 0) & (x <= 1))  # (NaN included)
    if outside.any():
        where = tuple(int(i) for i in np.argwhere(outside)[0])
        raise ValueError(f"write_captions: pixels must be in [0, 1] (read_captions refuses others), got {x[where]} "
                         f"at {where}")
    return np.rint(x * 255.0).astype(np.uint8)


def write_captions(path: str | os.PathLike, data: Captions) -> Path:
    """Write ``Captions`` with grey images (N, 1, H, W) in [0, 1]: to ``path`` if it ends in ``.npz``,
    else into the folder ``path`` as ``000000.png``, … plus ``captions.tsv``. Returns ``path``.
    Pixels are stored as uint8, so they read back within 1/510 of the originals."""
    p = Path(path)
    pixels, captions = _as_uint8_grey(data.images), data.captions
    if len(pixels) != len(captions):
        raise ValueError(f"write_captions: expected one caption per image ({len(pixels)}), got {len(captions)}")
    for cap in captions:  # what read_captions would refuse or read differently, in either form
        if any(c in cap for c in "\t\n\r\x00") or cap != cap.strip() or not cap.strip():
            raise ValueError(f"write_captions: caption {cap[:40]!r} is empty, holds a tab, line break or NUL, or "
                             f"begins or ends with whitespace, which read_captions would not read back")
    if p.suffix.lower() == ".npz":
        p.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(p, images=pixels, captions=np.array(list(captions), dtype=str))
        return p
    p.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (img, cap) in enumerate(zip(pixels, captions)):
        name = f"{i:06d}.png"
        (p / name).write_bytes(png_bytes(img))
        lines.append(f"{name}\t{cap}\n")
    (p / CAPTIONS_FILE).write_text("".join(lines), encoding="utf-8")
    return p
