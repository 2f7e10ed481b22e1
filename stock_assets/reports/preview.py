"""A small PNG line chart for the dashboard's preview in the Dagster UI, where a markdown image
with a data: URI shows without a browser. matplotlib draws it with its Agg renderer (no display,
no pyplot state), imported on first use so that loading the code location does not pay for it."""

import base64
import io

import numpy as np

COLOR_NAMES = ("blue", "orange", "green", "red", "purple", "brown")  # matplotlib's tab10, in its order
DPI = 100


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB uint8 array (height, width, 3) as PNG (Pillow, which matplotlib brings)."""
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image, "RGB").save(out, "png", optimize=True)
    return out.getvalue()


def line_chart(series: list[np.ndarray], width: int = 320, height: int = 90) -> np.ndarray:
    """Each series rebased to its first value, a 2.5-pixel line on white, all on one scale: RGB pixels."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, facecolor="white")
    axes = figure.add_axes((0.01, 0.03, 0.98, 0.94))
    axes.set_axis_off()
    rebased = [s[np.isfinite(s)] / s[np.isfinite(s)][0] for s in series if np.isfinite(s).sum() >= 2]
    for k, values in enumerate(rebased):  # each series spans the width, whatever its length
        color = f"tab:{COLOR_NAMES[k % len(COLOR_NAMES)]}"
        # Not antialiased: each line in its exact color, and a data: URI a fifth the size.
        axes.plot(np.linspace(0, 1, len(values)), values, color=color, linewidth=2.5 * 72 / DPI, antialiased=False)
    axes.set_xlim(0, 1)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()  # opaque: drop alpha


def markdown_image(series: dict[str, np.ndarray], alt: str) -> str:
    """The chart as a markdown image (data: URI), then which color is which series."""
    encoded = base64.b64encode(png_bytes(line_chart(list(series.values())))).decode()
    legend = ", ".join(f"{name} {COLOR_NAMES[k % len(COLOR_NAMES)]}" for k, name in enumerate(series))
    return f"![{alt}](data:image/png;base64,{encoded})\n\n{alt}: {legend}"
