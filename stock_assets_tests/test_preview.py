"""The dashboard's metadata preview: a PNG any decoder reads (Pillow here), one color per series,
drawn by matplotlib without a display, and cheap enough to build on every materialization."""

import base64
import io
import re
import time

import numpy as np
from PIL import Image

from stock_assets.reports.preview import line_chart, markdown_image, png_bytes

TAB10 = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def decoded(markdown: str) -> Image.Image:
    encoded = re.search(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)", markdown).group(1)
    image = Image.open(io.BytesIO(base64.b64decode(encoded)))
    image.load()
    return image


def colors(image: Image.Image) -> set[tuple[int, int, int]]:
    return set(map(tuple, np.asarray(image).reshape(-1, 3).tolist()))


def test_one_line_per_series_in_its_legend_color():
    rng = np.random.default_rng(7)
    series = {f"S{i}": 100 * np.exp(np.cumsum(rng.normal(0, 0.03, 250))) for i in range(6)}
    markdown = markdown_image(series, "price rebased")
    image = decoded(markdown)
    assert (image.format, image.mode, image.size) == ("PNG", "RGB", (320, 90))
    assert set(TAB10) <= colors(image)
    assert markdown.endswith("price rebased: S0 blue, S1 orange, S2 green, S3 red, S4 purple, S5 brown")


def test_gaps_and_short_series_are_skipped_and_nothing_drawn_is_white():
    with_gaps = np.array([10.0, np.nan, 11.0, 12.0, np.nan, 9.0])
    image = line_chart([with_gaps, np.array([5.0]), np.array([np.nan, np.nan])])
    assert image.shape == (90, 320, 3) and image.dtype == np.uint8
    assert {tuple(p) for p in image.reshape(-1, 3).tolist()} == {(255, 255, 255), TAB10[0]}
    assert (line_chart([]) == 255).all()


def test_png_bytes_round_trip_exactly():
    pixels = np.random.default_rng(1).integers(0, 256, (7, 5, 3), dtype=np.uint8)
    assert (np.asarray(Image.open(io.BytesIO(png_bytes(pixels)))) == pixels).all()


def test_a_preview_takes_milliseconds():
    series = {f"S{i}": np.linspace(100, 120 + i, 250) for i in range(6)}
    markdown_image(series, "warm-up")  # the first call imports matplotlib
    started = time.perf_counter()
    for _ in range(5):
        markdown_image(series, "price")
    assert (time.perf_counter() - started) / 5 < 0.5
