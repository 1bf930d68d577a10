"""server.media.image: not an image, truncated, modes -> 8-bit RGB, EXIF, pixel limit from the header."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from media_support import LIMITS, close_to, load, rgb
from PIL import Image, ImageFile

from harness.media import data_url, image_bytes, png_bytes, png_with_declared_size
from server.media import MediaError, MediaLimits, decode_image


def test_data_url_png_of_ascii_sentence_is_not_an_image():
    url = "data:image/png;base64," + base64.b64encode(b"This is not a picture at all.").decode()
    with pytest.raises(MediaError, match="not a readable image"):
        load(url)


def test_png_data_url_cut_after_ihdr_is_rejected(small_png):
    assert small_png[12:16] == b"IHDR"
    cut = small_png[: 8 + 25]  # signature + IHDR chunk (length, type, 13 bytes, crc)
    with pytest.raises(MediaError, match="truncated or corrupt"):
        load(data_url(cut))


def test_truncated_jpeg_is_rejected():
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    jpeg = image_bytes(Image.fromarray(noise), "JPEG")
    with pytest.raises(MediaError, match="truncated or corrupt"):
        decode_image(jpeg[: len(jpeg) // 2], LIMITS)


def test_empty_and_random_bytes_are_not_images():
    with pytest.raises(MediaError, match="empty"):
        decode_image(b"", LIMITS)
    with pytest.raises(MediaError, match="not a readable image"):
        decode_image(np.random.default_rng(1).bytes(2000), LIMITS)


def test_postscript_is_not_decoded_through_ghostscript():
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n"
    with pytest.raises(MediaError, match="not a readable image"):
        decode_image(eps, LIMITS)


def test_1x1_grayscale_png_is_accepted():
    img = decode_image(png_bytes(Image.new("L", (1, 1), 77)), LIMITS)
    assert img.size == (1, 1) and rgb(img) == (77, 77, 77)


def test_20x300_strip_is_accepted():
    img = decode_image(png_bytes(Image.new("RGB", (20, 300), (1, 2, 3))), LIMITS)
    assert img.size == (20, 300) and img.mode == "RGB"


# ---------------------------------------------------------------------------------------------
# Images: modes -> 8-bit RGB, transparency on white
# ---------------------------------------------------------------------------------------------


def test_rgba_is_composited_on_white():
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    img.putpixel((1, 1), (255, 0, 0, 255))
    img.putpixel((2, 2), (0, 0, 0, 128))
    out = decode_image(png_bytes(img), LIMITS)
    assert rgb(out, (0, 0)) == (255, 255, 255)
    assert rgb(out, (1, 1)) == (255, 0, 0)
    assert close_to(rgb(out, (2, 2)), (127, 127, 127), tol=1)


def test_la_is_composited_on_white():
    img = Image.new("LA", (2, 1), (0, 0))
    img.putpixel((1, 0), (40, 255))
    out = decode_image(png_bytes(img), LIMITS)
    assert rgb(out, (0, 0)) == (255, 255, 255)
    assert rgb(out, (1, 0)) == (40, 40, 40)


def test_palette_with_and_without_transparency():
    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 255, 255, 0, 0] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    plain = decode_image(png_bytes(pal), LIMITS)
    assert rgb(plain, (0, 0)) == (0, 0, 255) and rgb(plain, (1, 0)) == (255, 0, 0)
    transparent = decode_image(png_bytes(pal, transparency=0), LIMITS)
    assert rgb(transparent, (0, 0)) == (255, 255, 255) and rgb(transparent, (1, 0)) == (255, 0, 0)
    gif = decode_image(image_bytes(pal, "GIF", transparency=0), LIMITS)
    assert rgb(gif, (0, 0)) == (255, 255, 255) and rgb(gif, (1, 0)) == (255, 0, 0)


def test_rgb_png_with_transparent_colour_key():
    img = Image.new("RGB", (2, 1), (9, 9, 9))
    img.putpixel((1, 0), (0, 128, 0))
    out = decode_image(png_bytes(img, transparency=(9, 9, 9)), LIMITS)
    assert rgb(out, (0, 0)) == (255, 255, 255) and rgb(out, (1, 0)) == (0, 128, 0)


def test_cmyk_jpeg_is_converted_to_rgb():
    img = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    data = image_bytes(img, "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    out = decode_image(data, LIMITS)
    assert out.mode == "RGB" and close_to(rgb(out, (8, 8)), (255, 0, 0), tol=6)


def test_16_bit_grayscale_png_is_scaled_to_8_bit():
    values = np.array([[0, 257 * 128, 65535, 1000]], dtype=np.uint16)
    data = png_bytes(Image.fromarray(values))
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    out = decode_image(data, LIMITS)
    assert [rgb(out, (x, 0))[0] for x in range(4)] == [0, 128, 255, 4]
    assert rgb(out, (2, 0)) == (255, 255, 255)


def test_32_bit_integer_grayscale_tiff_is_scaled_like_16_bit():
    values = np.array([[0, 65535, 32896]], dtype=np.int32)
    data = image_bytes(Image.fromarray(values, mode="I"), "TIFF")
    assert Image.open(io.BytesIO(data)).mode == "I"
    out = decode_image(data, LIMITS)
    assert [rgb(out, (x, 0))[0] for x in range(3)] == [0, 255, 128]


def test_1_bit_png_is_black_and_white_rgb():
    img = Image.new("1", (2, 1), 0)
    img.putpixel((1, 0), 1)
    out = decode_image(png_bytes(img), LIMITS)
    assert rgb(out, (0, 0)) == (0, 0, 0) and rgb(out, (1, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    img = Image.new("RGB", (20, 10), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 4, 4))  # stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    out = decode_image(image_bytes(img, "JPEG", exif=exif, quality=95), LIMITS)
    assert out.size == (10, 20)
    assert close_to(rgb(out, (8, 1)), (255, 0, 0), tol=40)  # now top-right
    assert close_to(rgb(out, (1, 1)), (0, 0, 255), tol=40)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    data = image_bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert rgb(decode_image(data, LIMITS)) == (255, 0, 0)


def test_animated_png_gives_its_first_frame():
    frames = [Image.new("RGBA", (8, 8), c) for c in ((0, 255, 0, 255), (255, 0, 0, 255))]
    data = png_bytes(frames[0], save_all=True, append_images=frames[1:], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert rgb(decode_image(data, LIMITS)) == (0, 255, 0)


# ---------------------------------------------------------------------------------------------
# Images: pixel limit from the header, before decoding
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def no_pixel_decoding(monkeypatch):
    def refuse(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


def test_png_header_declaring_50000x50000_is_rejected_before_decoding(no_pixel_decoding):
    data = png_with_declared_size(50000, 50000)
    assert len(data) < 10_000
    with pytest.raises(MediaError, match="more pixels than the limit of 50000000"):
        load(data_url(data))


@pytest.mark.parametrize("side", [7100, 8000])  # 50.4 and 64 megapixels: above our default limit
def test_png_header_above_configured_pixel_limit_is_rejected_before_decoding(no_pixel_decoding, side):
    with pytest.raises(MediaError, match="more than the limit of 50000000 pixels"):
        decode_image(png_with_declared_size(side, side), LIMITS)


def test_pixel_limit_above_pillows_own_bomb_limit_is_the_one_that_counts(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # restored afterwards
    header_only = png_with_declared_size(15000, 12000)  # 180 Mpx: past Pillow's error threshold
    with pytest.raises(MediaError, match="truncated or corrupt"):  # allowed, but no pixel data
        decode_image(header_only, MediaLimits(max_image_pixels=200_000_000))
    with pytest.raises(MediaError, match="limit of 100000000"):
        decode_image(header_only, MediaLimits(max_image_pixels=100_000_000))


def test_pixel_limit_is_configurable():
    data = png_bytes(Image.new("RGB", (20, 20)))
    with pytest.raises(MediaError, match="20x20 = 400 pixels"):
        decode_image(data, MediaLimits(max_image_pixels=399))
    assert decode_image(data, MediaLimits(max_image_pixels=400)).size == (20, 20)


def test_image_larger_than_byte_limit_is_rejected(small_png):
    with pytest.raises(MediaError, match="limit"):
        load(data_url(small_png), MediaLimits(max_media_bytes=len(small_png) - 1))
