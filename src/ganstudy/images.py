"""Pictures of a run: the sample grid, the progression GIF and the D(x) / D(G(z)) plot."""
from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np


def grid(images: np.ndarray, cols: int = 4, pad: int = 2, scale: int = 4) -> np.ndarray:
    """Tile uint8 (N, 28, 28) images into one uint8 picture, `scale` screen pixels per image pixel."""
    n, h, w = images.shape
    rows = -(-n // cols)
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad), 128, np.uint8)  # grey frame
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = img
    return np.kron(out, np.ones((scale, scale), np.uint8))


def save_png(path: Path, picture: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, picture)
    return path


def make_gif(frames: list[Path], out: Path, seconds_per_frame: float = 0.25) -> Path:
    """The training progression: one frame per sample grid, the last one held for a second."""
    pictures = [iio.imread(f) for f in frames]
    durations = [int(seconds_per_frame * 1000)] * (len(pictures) - 1) + [1000]
    # Pillow wants a plain number for a one-frame GIF.
    iio.imwrite(out, np.stack(pictures), extension=".gif", duration=durations if len(durations) > 1 else 1000, loop=0)
    return out


def plot_d_outputs(d_real: list[tuple[int, float]], d_fake: list[tuple[int, float]], out: Path) -> Path:
    """Mean D(x) and D(G(z)) per epoch with the 0.5 the article expects both to approach."""
    import matplotlib.ticker
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5))
    ax = fig.subplots()
    for series, label in ((d_real, "D(x), real"), (d_fake, "D(G(z)), generated")):
        ax.plot([s for s, _ in series], [v for _, v in series], marker="o", markersize=3, label=label)
    ax.axhline(0.5, color="grey", linestyle="--", label="0.5: D cannot tell")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set(xlabel="epoch", ylabel="mean sigmoid(D)", ylim=(0, 1), title="Discriminator outputs")
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out


def small_png(path: Path, colors: int = 256) -> Path:
    """Rewrite a PNG as an 8-bit palette image without dithering: a plot's or a screenshot's few colours
    survive, in a third to a half of the bytes (pictures that are committed, or logged on every redraw)."""
    from PIL import Image

    with Image.open(path) as image:
        small = image.convert("RGB").quantize(colors, dither=Image.Dither.NONE)
    small.save(path, optimize=True)
    return path
