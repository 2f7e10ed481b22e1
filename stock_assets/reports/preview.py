"""A tiny PNG line chart drawn with NumPy and zlib: the dashboard's preview in the Dagster UI,
where a markdown image with a data: URI shows without a browser or a plotting backend."""

import base64
import struct
import zlib

import numpy as np

COLOR_NAMES = ("blue", "orange", "green", "red", "purple", "brown")
COLORS = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75]], np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB uint8 array (height, width, 3) as PNG (filter 0 on every row)."""
    height, width, _ = image.shape
    raw = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, width * 3)], axis=1).tobytes()

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def line_chart(series: list[np.ndarray], width: int = 320, height: int = 90) -> np.ndarray:
    """Each series rebased to its first value, drawn as a 2-pixel line on white, on one scale."""
    image = np.full((height, width, 3), 255, np.uint8)
    rebased = [s[np.isfinite(s)] / s[np.isfinite(s)][0] for s in series if np.isfinite(s).sum() >= 2]
    if not rebased:
        return image
    low, high = min(s.min() for s in rebased), max(s.max() for s in rebased)
    span = (high - low) or 1.0
    for k, values in enumerate(rebased):  # one pass per symbol; the points are vectorized
        t = np.linspace(0, len(values) - 1, width * 4)
        y = np.interp(t, np.arange(len(values)), values)
        px = np.round(t / (len(values) - 1) * (width - 1)).astype(int)
        py = np.round((1 - (y - low) / span) * (height - 3)).astype(int) + 1
        image[py, px] = image[py - 1, px] = COLORS[k % len(COLORS)]
    return image


def markdown_image(series: dict[str, np.ndarray], alt: str) -> str:
    """The chart as a markdown image (data: URI), then which color is which series."""
    encoded = base64.b64encode(png_bytes(line_chart(list(series.values())))).decode()
    legend = ", ".join(f"{name} {COLOR_NAMES[k % len(COLOR_NAMES)]}" for k, name in enumerate(series))
    return f"![{alt}](data:image/png;base64,{encoded})\n\n{alt}: {legend}"
