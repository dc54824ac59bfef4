"""Safe image decoding: every kind of file a dataset holds becomes (H, W, 3) uint8 RGB, or an error naming it."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from PIL import Image, ImageFile

from tasks.common.errors import DatasetError, ImageLoadError
from tasks.common.images import DEFAULT_MAX_IMAGE_PIXELS, load_rgb, try_load_rgb

# Width 5, height 3, so a transposed array cannot pass; the known pixel sits at x=4, y=2.
WIDTH, HEIGHT = 5, 3
X, Y = 4, 2
EXIF_ORIENTATION = 0x0112
ROTATE_90_CW_TO_DISPLAY = 6  # the EXIF orientation of a phone photo taken upright


def save(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def image_with_pixel(mode: str, background: object, pixel: object) -> Image.Image:
    image = Image.new(mode, (WIDTH, HEIGHT), background)
    image.putpixel((X, Y), pixel)
    return image


def noise_png(path: Path, size: int = 64) -> Path:
    pixels = np.random.default_rng(0).integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    return save(Image.fromarray(pixels), path)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def greyscale_png(path: Path, width: int, height: int, rows: int | None = None) -> Path:
    """A black 8-bit greyscale PNG written by hand, so that no image of its size is ever held in memory; ``rows``
    (default all) is how many rows its data holds: fewer make a file whose header claims more than it has."""
    compressor = zlib.compressobj(9)
    row = bytes(width + 1)  # the row's filter byte and its pixels
    data = b"".join(compressor.compress(row) for _ in range(height if rows is None else rows)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    signature = b"\x89PNG\r\n\x1a\n"
    path.write_bytes(signature + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b""))
    return path


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if any image data is decoded (headers may be read)."""

    def load(self: ImageFile.ImageFile) -> None:
        pytest.fail(f"decoded the pixels of a {self.size[0]}x{self.size[1]} image")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)


def test_rgb_png_keeps_its_pixels(tmp_path: Path) -> None:
    path = save(image_with_pixel("RGB", (0, 0, 0), (250, 120, 7)), tmp_path / "rgb.png")
    array = load_rgb(path)
    assert (array.shape, array.dtype) == ((HEIGHT, WIDTH, 3), np.uint8)
    assert array[Y, X].tolist() == [250, 120, 7]
    assert array[0, 0].tolist() == [0, 0, 0]


def test_greyscale_png_becomes_three_equal_channels(tmp_path: Path) -> None:
    path = save(image_with_pixel("L", 0, 77), tmp_path / "grey.png")
    array = load_rgb(path)
    assert (array.shape, array.dtype) == ((HEIGHT, WIDTH, 3), np.uint8)
    assert array[Y, X].tolist() == [77, 77, 77]


def test_palette_png_becomes_the_palette_colours(tmp_path: Path) -> None:
    image = Image.new("P", (WIDTH, HEIGHT), 0)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0, 0, 0] * 254)
    image.putpixel((X, Y), 1)
    array = load_rgb(save(image, tmp_path / "palette.png"))
    assert (array.shape, array.dtype) == ((HEIGHT, WIDTH, 3), np.uint8)
    assert array[Y, X].tolist() == [10, 200, 30]


@pytest.mark.parametrize("transparency", [None, 1], ids=["opaque", "index-1-transparent"])
def test_palette_png_with_or_without_transparency_keeps_the_palette_colours(
    tmp_path: Path, transparency: int | None
) -> None:
    image = Image.new("P", (WIDTH, HEIGHT), 0)
    image.putpalette([40, 50, 60, 10, 200, 30] + [0, 0, 0] * 254)
    image.putpixel((X, Y), 1)
    path = tmp_path / "palette.png"
    image.save(path, **({} if transparency is None else {"transparency": transparency}))
    assert ("transparency" in Image.open(path).info) == (transparency is not None)
    array = load_rgb(path)
    assert array[Y, X].tolist() == [10, 200, 30]
    assert array[0, 0].tolist() == [40, 50, 60]


def test_one_bit_png_becomes_black_and_white(tmp_path: Path) -> None:
    path = save(image_with_pixel("1", 0, 1), tmp_path / "bits.png")
    assert Image.open(path).mode == "1"
    array = load_rgb(path)
    assert array[Y, X].tolist() == [255, 255, 255]
    assert array[0, 0].tolist() == [0, 0, 0]


def test_greyscale_with_alpha_png_drops_alpha_and_keeps_the_grey(tmp_path: Path) -> None:
    path = save(image_with_pixel("LA", (0, 255), (77, 10)), tmp_path / "grey_alpha.png")
    assert Image.open(path).mode == "LA"
    assert load_rgb(path)[Y, X].tolist() == [77, 77, 77]


def test_rgba_png_drops_alpha_and_keeps_the_colour(tmp_path: Path) -> None:
    path = save(image_with_pixel("RGBA", (0, 0, 0, 255), (200, 100, 50, 0)), tmp_path / "rgba.png")
    array = load_rgb(path)
    assert (array.shape, array.dtype) == ((HEIGHT, WIDTH, 3), np.uint8)
    assert array[Y, X].tolist() == [200, 100, 50]


def test_cmyk_file_becomes_rgb(tmp_path: Path) -> None:
    # PNG cannot hold CMYK; TIFF stores it losslessly. Magenta plus yellow ink, no black, is red.
    path = save(image_with_pixel("CMYK", (0, 0, 0, 255), (0, 255, 255, 0)), tmp_path / "cmyk.tif")
    assert Image.open(path).mode == "CMYK"
    array = load_rgb(path)
    assert (array.shape, array.dtype) == ((HEIGHT, WIDTH, 3), np.uint8)
    assert array[Y, X].tolist() == [255, 0, 0]
    assert array[0, 0].tolist() == [0, 0, 0]


def test_16_bit_png_maps_65535_to_255_and_midgrey_to_128(tmp_path: Path) -> None:
    pixels = np.zeros((HEIGHT, WIDTH), dtype=np.uint16)
    pixels[Y, X] = 65535
    pixels[0, 0] = 128 * 257
    path = save(Image.fromarray(pixels), tmp_path / "deep.png")
    assert Image.open(path).mode == "I;16"
    array = load_rgb(path)
    assert (array.shape, array.dtype) == ((HEIGHT, WIDTH, 3), np.uint8)
    assert array[Y, X].tolist() == [255, 255, 255]
    assert array[0, 0].tolist() == [128, 128, 128]


def test_cmyk_jpeg_becomes_rgb(tmp_path: Path) -> None:
    # Solid cyan (no red) beside solid magenta plus yellow (red); JPEG is lossy, so within 3 levels.
    image = Image.new("CMYK", (32, 16), (255, 0, 0, 0))
    image.paste((0, 255, 255, 0), (16, 0, 32, 16))
    path = tmp_path / "cmyk.jpg"
    image.save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    array = load_rgb(path).astype(int)
    assert np.abs(array[8, 4] - [0, 255, 255]).max() <= 3
    assert np.abs(array[8, 28] - [255, 0, 0]).max() <= 3


def test_16_bit_png_is_scaled_by_its_bit_depth_not_by_its_brightest_pixel(tmp_path: Path) -> None:
    # The brightest pixel is 4096 of 65535: it stays dark (16), it does not become white.
    pixels = np.array([[4096, 2048, 1000, 0, 0]] * HEIGHT, dtype=np.uint16)
    path = save(Image.fromarray(pixels), tmp_path / "dim.png")
    assert Image.open(path).mode == "I;16"
    assert load_rgb(path)[0, :, 0].tolist() == [16, 8, 4, 0, 0]  # round(v / 257)


def test_big_endian_16_bit_tiff_is_scaled_by_its_bit_depth(tmp_path: Path) -> None:
    pixels = np.array([[65535, 4096, 257, 0, 0]] * HEIGHT, dtype=">u2")
    path = save(Image.fromarray(pixels), tmp_path / "big_endian.tif")
    assert Image.open(path).mode == "I;16B"
    assert load_rgb(path)[0].tolist() == [[255] * 3, [16] * 3, [1] * 3, [0] * 3, [0] * 3]


def test_32_bit_integer_tiff_is_read_as_16_bit_values_and_clipped(tmp_path: Path) -> None:
    pixels = np.array([[25700, 65535, 70000, -5, 0]] * HEIGHT, dtype=np.int32)
    path = save(Image.fromarray(pixels), tmp_path / "int32.tif")
    assert Image.open(path).mode == "I"
    assert load_rgb(path)[0, :, 0].tolist() == [100, 255, 255, 0, 0]


def test_float_tiff_maps_zero_to_one_onto_0_to_255_and_clips_the_rest(tmp_path: Path) -> None:
    pixels = np.array([[0.25, 1.0, 2.0, -1.0, np.nan]] * HEIGHT, dtype=np.float32)
    path = save(Image.fromarray(pixels), tmp_path / "float.tif")
    assert Image.open(path).mode == "F"
    array = load_rgb(path)
    assert array[0].tolist() == [[64] * 3, [255] * 3, [255] * 3, [0] * 3, [0] * 3]  # 0.25 * 255 = 63.75 -> 64


def test_png_named_jpg_is_decoded_by_its_content(tmp_path: Path) -> None:
    path = tmp_path / "really_a_png.jpg"
    image_with_pixel("RGB", (0, 0, 0), (250, 120, 7)).save(path, format="PNG")
    assert load_rgb(path)[Y, X].tolist() == [250, 120, 7]


def test_16_bit_png_pixel_does_not_depend_on_the_brightest_pixel(tmp_path: Path) -> None:
    # A dark 16-bit image stays dark: 100 * 257 is 8-bit 100 whatever else the image holds.
    pixels = np.zeros((HEIGHT, WIDTH), dtype=np.uint16)
    pixels[Y, X] = 100 * 257
    array = load_rgb(save(Image.fromarray(pixels), tmp_path / "dark.png"))
    assert array[Y, X].tolist() == [100, 100, 100]


@pytest.fixture
def rotated_jpeg(tmp_path: Path) -> Path:
    """A 40x20 JPEG, red left half and blue right half, tagged to be rotated 90 degrees clockwise for display."""
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:] = (0, 0, 255)
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = ROTATE_90_CW_TO_DISPLAY
    path = tmp_path / "phone.jpg"
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    return path


def is_red(pixel: np.ndarray) -> bool:
    return pixel[0] > 200 and pixel[1] < 60 and pixel[2] < 60


def test_exif_orientation_is_ignored_by_default(rotated_jpeg: Path) -> None:
    array = load_rgb(rotated_jpeg)
    assert array.shape == (20, 40, 3)
    assert is_red(array[10, 5])


def test_exif_orientation_is_applied_when_asked(rotated_jpeg: Path) -> None:
    # Turned 90 degrees clockwise, the red left half becomes the top half.
    array = load_rgb(rotated_jpeg, exif_transpose=True)
    assert array.shape == (40, 20, 3)
    assert is_red(array[5, 10])
    assert not is_red(array[35, 10])


def test_jpeg_cut_mid_scan_is_an_error_naming_it_not_a_padded_image(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    path = tmp_path / "cut.jpg"
    Image.fromarray(pixels).save(path, quality=90)
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    assert Image.open(path).size == (256, 256)  # the header survives: only the scan is cut
    with pytest.raises(ImageLoadError, match=re.escape(str(path)) + ".*truncated"):
        load_rgb(path)


def test_nothing_is_decoded_while_pil_is_told_to_pad_truncated_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With this flag PIL fills the missing part of a cut file with grey, silently; a library may set it on import.
    path = noise_png(tmp_path / "good.png")
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(RuntimeError, match="LOAD_TRUNCATED_IMAGES.*good\\.png"):
        load_rgb(path)


def test_zero_byte_file_raises_image_load_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(ImageLoadError, match=re.escape(str(path))):
        load_rgb(path)


def test_truncated_file_raises_image_load_error_naming_it(tmp_path: Path) -> None:
    path = noise_png(tmp_path / "cut.png")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageLoadError, match=re.escape(str(path))):
        load_rgb(path)


def test_text_file_named_jpg_raises_image_load_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("not an image\n")
    with pytest.raises(ImageLoadError, match=re.escape(str(path))):
        load_rgb(path)


def test_missing_file_raises_image_load_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "absent.png"
    with pytest.raises(ImageLoadError, match=re.escape(str(path))):
        load_rgb(path)


def test_directory_raises_image_load_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "folder.png"
    path.mkdir()
    with pytest.raises(ImageLoadError, match=re.escape(str(path))):
        load_rgb(path)


def test_image_load_error_is_a_dataset_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError):
        load_rgb(tmp_path / "absent.png")


def test_image_load_error_keeps_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.png"
    with pytest.raises(ImageLoadError) as caught:
        load_rgb(path)
    assert caught.value.path == str(path)


def test_image_over_the_decompression_bomb_limit_raises_image_load_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = noise_png(tmp_path / "bomb.png", size=64)
    # PIL refuses outright (DecompressionBombError) above twice the limit: 4096 pixels against 2 * 1000.
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageLoadError, match=re.escape(str(path))):
        load_rgb(path)


def test_image_over_max_pixels_is_refused_naming_the_file_its_size_and_the_key(tmp_path: Path) -> None:
    path = noise_png(tmp_path / "big.png", size=64)
    with pytest.raises(ImageLoadError, match=re.escape(str(path)) + r".*64x64.*data\.max_image_pixels=4095"):
        load_rgb(path, max_pixels=4095)


def test_image_of_exactly_max_pixels_or_without_a_limit_is_decoded(tmp_path: Path) -> None:
    path = noise_png(tmp_path / "big.png", size=64)
    assert load_rgb(path, max_pixels=4096).shape == (64, 64, 3)
    assert load_rgb(path, max_pixels=None).shape == (64, 64, 3)


def test_decompression_bomb_is_refused_from_its_header_by_the_default_limit(tmp_path: Path, no_decoding: None) -> None:
    # 90 M pixels in under 100 kB: over the default limit (PIL's own default), under twice it (where PIL would only
    # warn and decode 270 MB of RGB).
    path = greyscale_png(tmp_path / "bomb.png", 9500, 9500)
    assert path.stat().st_size < 200_000 and 9500 * 9500 > DEFAULT_MAX_IMAGE_PIXELS
    with pytest.warns(Image.DecompressionBombWarning):  # PIL's, from the header
        with pytest.raises(ImageLoadError, match=r"9500x9500"):
            load_rgb(path)
        with pytest.warns(UserWarning, match=re.escape(str(path)) + r".*data\.max_image_pixels"):
            assert try_load_rgb(path) is None


def test_huge_image_is_refused_before_decoding_even_without_a_limit_of_ours(tmp_path: Path, no_decoding: None) -> None:
    # A header claiming 10^10 pixels: PIL's own check (twice its MAX_IMAGE_PIXELS) refuses it at open.
    path = greyscale_png(tmp_path / "huge.png", 100_000, 100_000, rows=1)
    with pytest.raises(ImageLoadError, match=re.escape(str(path)) + ".*DecompressionBombError"):
        load_rgb(path, max_pixels=None)


def test_try_load_rgb_returns_the_image_of_a_good_file(tmp_path: Path) -> None:
    path = save(image_with_pixel("RGB", (0, 0, 0), (1, 2, 3)), tmp_path / "good.png")
    array = try_load_rgb(path)
    assert array is not None
    assert array[Y, X].tolist() == [1, 2, 3]


def test_try_load_rgb_returns_none_and_warns_naming_a_bad_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("not an image\n")
    with pytest.warns(UserWarning, match=re.escape(str(path))):
        assert try_load_rgb(path) is None
