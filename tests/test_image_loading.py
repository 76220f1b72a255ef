"""Safe photo loading: every awkward file gets the right RGB image or a clear rejection reason."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from toolkit.image.loading import ImageRejected, load_image, load_photo


def _reason(path: Path, **kw) -> str:
    with pytest.raises(ImageRejected) as info:
        load_image(path, **kw)
    return info.value.reason


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header claims ``width`` x ``height`` RGB pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


@pytest.fixture
def noise_jpeg(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "noise.jpg"
    Image.fromarray(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).save(path, quality=90)
    return path


def test_plain_jpeg_loads_as_rgb(noise_jpeg: Path) -> None:
    img = load_image(noise_jpeg)
    assert img.mode == "RGB" and img.size == (160, 120)
    img.load()  # usable after the file was closed


def test_missing_empty_directory_and_garbage_are_rejected(tmp_path: Path) -> None:
    assert "not found" in _reason(tmp_path / "nope.jpg")
    (tmp_path / "zero.jpg").write_bytes(b"")
    assert "empty file (0 bytes)" in _reason(tmp_path / "zero.jpg")
    (tmp_path / "dir.jpg").mkdir()
    assert "not a regular file" in _reason(tmp_path / "dir.jpg")
    (tmp_path / "garbage.jpg").write_bytes(np.random.default_rng(1).bytes(2000))
    assert "not an image" in _reason(tmp_path / "garbage.jpg")
    (tmp_path / "text.png").write_text("hello, not a picture", encoding="utf-8")
    assert "not an image" in _reason(tmp_path / "text.png")


@pytest.mark.parametrize("keep", [0.3, 0.9, None])
def test_truncated_jpeg_is_rejected(noise_jpeg: Path, tmp_path: Path, keep: float | None) -> None:
    data = noise_jpeg.read_bytes()
    cut = data[:-2] if keep is None else data[: int(len(data) * keep)]  # None: only the end marker lost
    path = tmp_path / "cut.jpg"
    path.write_bytes(cut)
    assert "truncated" in _reason(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_png_is_rejected(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    full = tmp_path / "full.png"
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(full)
    cut = tmp_path / "cut.png"
    cut.write_bytes(full.read_bytes()[:3000])
    reason = _reason(cut)
    assert "truncated" in reason or "corrupt" in reason


def test_pixel_limit_is_checked_before_decoding(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("L", (2000, 1500)).save(big)
    reason = _reason(big, max_pixels=1_000_000)
    assert "decompression bomb" in reason and "2000x1500" in reason and "max_pixels" in reason
    assert load_image(big, max_pixels=3_000_000).size == (2000, 1500)
    # A 10000x10000 header on a few bytes of data: refused on the header, never decoded.
    bomb = _png_header_only(tmp_path / "bomb.png", 10_000, 10_000)
    assert "decompression bomb" in _reason(bomb)
    # Far beyond PIL's own limit: PIL's DecompressionBombError is turned into a rejection too.
    huge = _png_header_only(tmp_path / "huge.png", 100_000, 100_000)
    assert "decompression bomb" in _reason(huge, max_pixels=10**12)


def test_a_phone_sized_jpeg_counts_the_pixels_it_decodes(tmp_path: Path) -> None:
    """A 48 MP phone photo (8000 x 6000) was refused as a decompression bomb everywhere; where a reduced decode
    applies (the build, the index, query photos, validate) it decodes at 1/8 scale and is used. Decoded in
    full, or as a PNG, it is still over the limit."""
    photo = tmp_path / "phone.jpg"
    Image.new("RGB", (8000, 6000), (200, 120, 40)).save(photo, quality=70)
    assert load_image(photo, draft_size=224).size == (1000, 750)
    assert load_photo(photo.read_bytes(), draft_size=224).size == (1000, 750)
    assert "8000x6000 = 48000000 pixels is over the limit" in _reason(photo)
    png = tmp_path / "phone.png"
    Image.new("L", (8000, 6000)).convert("RGB").save(png, compress_level=1)
    assert "decompression bomb" in _reason(png, draft_size=224)
    # decoded at reduced size (1/2 here: both sides must stay >= 2000), the limit still holds: it says at what size
    reason = _reason(photo, max_pixels=10_000_000, draft_size=2000)
    assert "(decoded at 4000x3000) is over the limit of 10000000" in reason


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (40, 30), (0, 255, 0, 0)).save(path, quality=95)  # full magenta ink
    img = load_image(path)
    assert img.mode == "RGB"
    r, g, b = img.getpixel((20, 15))
    assert r > 240 and g < 15 and b > 240


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    img = load_image(path)
    assert img.mode == "RGB"
    assert [img.getpixel((x, 0)) for x in range(4)] == [
        (0, 0, 0),
        (1, 1, 1),
        (128, 128, 128),
        (255, 255, 255),
    ]


def test_transparency_is_composited_on_white(tmp_path: Path) -> None:
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    pal.putpixel((1, 1), 1)
    pal.save(tmp_path / "pal.png", transparency=0)
    img = load_image(tmp_path / "pal.png")
    assert img.getpixel((0, 0)) == (255, 255, 255) and img.getpixel((1, 1)) == (0, 0, 255)

    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    rgba.putpixel((2, 2), (255, 0, 0, 255))
    rgba.putpixel((3, 3), (0, 0, 0, 128))
    rgba.save(tmp_path / "rgba.png")
    img = load_image(tmp_path / "rgba.png")
    assert img.getpixel((0, 0)) == (255, 255, 255)  # fully transparent red -> white, not red or black
    assert img.getpixel((2, 2)) == (255, 0, 0)
    assert img.getpixel((3, 3)) == (127, 127, 127)

    Image.new("LA", (4, 4), (0, 0)).save(tmp_path / "la.png")
    assert load_image(tmp_path / "la.png").getpixel((0, 0)) == (255, 255, 255)

    # an RGB PNG whose transparent colour is red (tRNS): red is background, drawn white (it stayed red)
    rgb = np.zeros((4, 4, 3), dtype=np.uint8)
    rgb[0, 0] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "rgb-trns.png", transparency=(255, 0, 0))
    img = load_image(tmp_path / "rgb-trns.png")
    assert img.getpixel((0, 0)) == (255, 255, 255) and img.getpixel((1, 1)) == (0, 0, 0)


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(path).n_frames == 3
    img = load_image(path)
    assert img.mode == "RGB" and img.getpixel((8, 8)) == (255, 0, 0)


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = np.zeros((20, 40, 3), dtype=np.uint8)
    arr[:, :20] = (255, 0, 0)  # left half red, right half blue
    arr[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    path = tmp_path / "rotated.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=95)
    img = load_image(path)
    assert img.size == (20, 40)
    top, bottom = img.getpixel((10, 5)), img.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60  # the red left half is now on top
    assert bottom[2] > 200 and bottom[0] < 60


def test_big_jpeg_decodes_at_reduced_size_with_draft(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.new("RGB", (2000, 1600), (10, 120, 200)).save(path)
    small = load_image(path, draft_size=256)
    assert min(small.size) >= 256 and small.size[0] < 2000
    assert small.size[0] * 1600 == small.size[1] * 2000  # aspect ratio kept
    assert load_image(path).size == (2000, 1600)
    # never below what the caller needs
    assert min(load_image(path, draft_size=900).size) >= 900


def test_loading_photos_from_many_threads_leaves_the_warning_filters_as_they_were(noise_jpeg: Path) -> None:
    """A search service decodes query photos in several threads at once: PIL's decompression-bomb warning is
    silenced while a photo decodes, and no filter is left behind (``warnings.catch_warnings`` restores the
    process-wide list each thread saved on entry, so overlapping threads left the filter installed for good)."""
    import sys
    import threading
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    data = noise_jpeg.read_bytes()
    before = list(warnings.filters)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads often: the overlap is what is tested
    start = threading.Barrier(8)

    def load(i: int) -> None:
        if i < 8:
            start.wait()
        for _ in range(20):
            load_photo(data)
            load_image(noise_jpeg)

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(load, range(40)))
    finally:
        sys.setswitchinterval(interval)
    assert warnings.filters == before
