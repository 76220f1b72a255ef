"""Safe photo loading: one RGB ``PIL.Image`` or an :class:`ImageRejected` with a clear reason
(:func:`load_image` for a file, :func:`load_photo` for a path, bytes, a PIL image or an array).

Policy:

* missing, unreadable, zero-byte or non-image files are rejected; only common photo formats
  (:data:`ALLOWED_FORMATS`) are opened, so no exotic decoder (e.g. EPS via Ghostscript) runs;
* truncated files are rejected (``ImageFile.LOAD_TRUNCATED_IMAGES`` is left off: half a photo
  with grey padding would make a misleading vector);
* images that would decode to more than ``max_pixels`` pixels are rejected before decoding (as is
  anything PIL itself refuses as a decompression bomb); a big JPEG decoded at reduced size (below) counts
  the pixels it decodes, so a 48-50 MP phone photo is used where the caller needs a small picture;
* CMYK -> RGB; 16-bit greyscale is scaled to 8 bits (``v * 255 / 65535``); transparency
  (RGBA, LA, PA, palette with a transparent colour) is composited on white; animated images
  give their first frame; the EXIF orientation is applied;
* big JPEGs are decoded at reduced size via ``draft`` when ``draft_size`` (the shortest side the
  caller needs) allows it; the result is never smaller than ``draft_size`` on either side.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from toolkit.errors import ConfigError, ToolkitError
from toolkit.quiet import silenced

#: Default pixel limit (width x height decoded) above which an image is refused as a decompression bomb.
DEFAULT_MAX_PIXELS = 40_000_000
#: A JPEG decoded at reduced size (``draft_size``) is decoded at 1/8 scale at most: one whose header claims
#: more than this many times ``max_pixels`` is refused before any decoding
DRAFT_SCALE_LIMIT = 64

#: PIL formats accepted for photos (JPEG includes multi-picture MPO files from phones).
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF")

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


class ImageRejected(ToolkitError):
    """A photo that cannot be used; ``reason`` says why (without the path)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _check_file(path: Path) -> None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageRejected("image file not found") from None
    except PermissionError:
        raise ImageRejected("image file cannot be read: permission denied") from None
    except OSError as e:
        raise ImageRejected(f"image file cannot be read: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImageRejected("not a regular file")
    if st.st_size == 0:
        raise ImageRejected("empty file (0 bytes)")


def _sixteen_bit_to_rgb(img: Image.Image) -> Image.Image:
    arr = np.asarray(img).astype(np.int64)
    arr = (np.clip(arr, 0, 65535) * 255 + 32767) // 65535
    return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")


def _float_to_rgb(img: Image.Image) -> Image.Image:
    arr = np.nan_to_num(np.asarray(img, dtype=np.float64))
    scale = 255.0 if arr.size and arr.max() <= 1.0 else 1.0
    return Image.fromarray(np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8), "L").convert("RGB")


def _on_white(img: Image.Image) -> Image.Image:
    if img.mode == "La":  # premultiplied: PIL converts it to LA only
        img = img.convert("LA")
    rgba = img.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert a loaded image of any PIL mode to 8-bit RGB (see the module policy)."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    if mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in img.info):
        return _on_white(img)
    if mode in _SIXTEEN_BIT:
        return _sixteen_bit_to_rgb(img)
    if mode == "F":
        return _float_to_rgb(img)
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageRejected(f"unsupported colour mode {mode}: {e}") from e


def _decode(img: Image.Image, max_pixels: int, draft_size: int | None) -> Image.Image:
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageRejected(f"invalid image size {w}x{h}")
    if (
        draft_size
        and img.format in ("JPEG", "MPO")
        and min(w, h) >= 2 * draft_size
        and w * h <= DRAFT_SCALE_LIMIT * max_pixels
    ):
        img.draft("RGB", (draft_size, draft_size))
    # the limit is on the pixels decoded: a 48-50 MP phone JPEG decodes at 1/8 scale where a draft applies
    dw, dh = img.size
    if dw * dh > max_pixels:
        raise _bomb(w, h, max_pixels, "" if (dw, dh) == (w, h) else f" (decoded at {dw}x{dh})")
    try:
        img.load()  # a freshly opened file is at its first frame
    except Image.DecompressionBombError as e:
        raise ImageRejected(f"decompression bomb: {e}") from e
    except Exception as e:  # PIL raises many types for bad data: OSError, SyntaxError, EOFError, ...
        text = str(e) or type(e).__name__
        if "truncated" in text.lower() or isinstance(e, EOFError):
            raise ImageRejected(f"truncated image file ({text})") from e
        raise ImageRejected(f"corrupt image data ({type(e).__name__}: {text})") from e
    src = img
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not lose a good photo: keep it unrotated
        img = src
    out = to_rgb(img)
    return out.copy() if out is src else out


def load_image(
    path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """Open ``path`` as an 8-bit RGB image, or raise :class:`ImageRejected` naming the reason.

    ``draft_size`` lets big JPEGs decode at 1/2, 1/4 or 1/8 scale while keeping both sides
    ``>= draft_size``; ``max_pixels`` bounds the ``width * height`` decoded (the header's, or the reduced
    size's).
    """
    p = Path(path)
    _check_file(p)
    try:
        with p.open("rb") as fh:
            return _open_decode(fh, max_pixels, draft_size)
    except OSError as e:  # the file vanished or became unreadable between stat and open
        raise ImageRejected(f"image file cannot be read: {e.strerror or e}") from e


#: A photo as :func:`load_photo` takes it (a query photo of the Python API).
PhotoSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray
#: What :func:`load_photo` accepts, in words (its error messages).
PHOTO_SOURCES = "a path, the bytes of an image file, a PIL.Image or an HxWx3 (RGB) or HxW (grey) uint8 array"


def load_photo(
    photo: PhotoSource, *, max_pixels: int = DEFAULT_MAX_PIXELS, draft_size: int | None = None
) -> Image.Image:
    """``photo`` as an 8-bit RGB image under the module policy, or :class:`ImageRejected` naming the reason.

    A path is :func:`load_image`; the bytes of an image file are decoded the same way (same formats and
    checks); a ``PIL.Image`` (its current frame) and an ``H x W x 3`` (RGB) or ``H x W`` (grey) ``uint8``
    array get the pixel limit, the EXIF orientation and the colour conversion (transparency on white).
    The caller's image or array is never changed. Anything else is a :class:`~toolkit.errors.ConfigError`
    naming what was given and what is accepted.
    """
    if isinstance(photo, (str, os.PathLike)):
        return load_image(photo, max_pixels=max_pixels, draft_size=draft_size)
    if isinstance(photo, (bytes, bytearray, memoryview)):
        data = bytes(photo)
        if not data:
            raise ImageRejected("empty image data (0 bytes)")
        return _open_decode(io.BytesIO(data), max_pixels, draft_size)
    if isinstance(photo, Image.Image):
        return _decode(photo, max_pixels, None)  # no draft: it would change the caller's image
    if isinstance(photo, np.ndarray):
        if photo.dtype != np.uint8 or not (photo.ndim == 2 or (photo.ndim == 3 and photo.shape[2] == 3)):
            raise ConfigError(
                f"a photo array must be HxWx3 (RGB) or HxW (grey) uint8; got a {photo.dtype} array "
                f"of shape {photo.shape}"
            )
        return _decode(Image.fromarray(np.ascontiguousarray(photo)), max_pixels, None)
    given = repr(photo)
    given = given if len(given) <= 60 else given[:57] + "..."
    raise ConfigError(f"a photo must be {PHOTO_SOURCES}; got {type(photo).__name__} {given}")


def _bomb(w: int, h: int, max_pixels: int, decoded_at: str = "") -> ImageRejected:
    """The rejection of a ``w`` x ``h`` image over the pixel limit (``decoded_at``: the reduced size, if any)."""
    return ImageRejected(
        f"decompression bomb: {w}x{h} = {w * h} pixels{decoded_at} is over the limit of {max_pixels} (max_pixels)"
    )


def check_photo_data(data: bytes | bytearray | memoryview, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Raise :class:`ImageRejected` for the bytes of an image file that cannot be a usable photo by its header
    alone (empty, not an image, an unsupported format, a corrupt header, too many pixels even at the smallest
    reduced decode), without decoding it: a query fails before the image encoder is built."""
    if not len(data):
        raise ImageRejected("empty image data (0 bytes)")
    with silenced(Image.DecompressionBombWarning), _open(io.BytesIO(bytes(data))) as img:
        w, h = img.size
        limit = max_pixels * (DRAFT_SCALE_LIMIT if img.format in ("JPEG", "MPO") else 1)
        if w * h > limit:
            raise _bomb(w, h, max_pixels)


def _open(fh: BinaryIO) -> Image.Image:
    """``Image.open`` of ``fh`` under the module policy (formats, header errors as rejections); call it with
    PIL's decompression-bomb warning silenced."""
    Image.init()  # register every plugin: Image.open(formats=...) does not do it itself
    try:
        return Image.open(fh, formats=list(ALLOWED_FORMATS))
    except Image.DecompressionBombError as e:
        raise ImageRejected(f"decompression bomb: {e}") from e
    except UnidentifiedImageError:
        raise ImageRejected(
            f"not an image or unsupported format (accepted: {', '.join(ALLOWED_FORMATS)})"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageRejected(f"corrupt image header ({type(e).__name__}: {e})") from e


def _open_decode(fh: BinaryIO, max_pixels: int, draft_size: int | None) -> Image.Image:
    """The image in the open binary file ``fh``, decoded under the module policy."""
    with silenced(Image.DecompressionBombWarning):  # our own max_pixels check is the limit that counts
        img = _open(fh)
        with img:
            return _decode(img, max_pixels, draft_size)
