"""Safe image decoding: every kind of file a dataset holds becomes (H, W, 3) uint8 RGB, or an error naming it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from PIL import Image

from tasks.common.errors import DatasetError, ImageLoadError
from tasks.common.images import load_rgb, try_load_rgb

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
