"""Pictures: the grid puts each image in its cell; the GIF holds one frame per grid."""
import imageio.v3 as iio
import numpy as np

from ganstudy.images import grid, make_gif, plot_d_outputs, save_png


def test_grid_places_images_row_by_row():
    images = np.stack([np.full((28, 28), v, np.uint8) for v in (10, 20, 30, 40, 50)])
    g = grid(images, cols=2, pad=2, scale=1)
    assert g.shape == (3 * 30 + 2, 2 * 30 + 2)
    assert g[2, 2] == 10 and g[2, 32] == 20 and g[32, 2] == 30 and g[62, 32 + 27] == 128  # empty 6th cell
    assert g[0, 0] == 128
    assert np.array_equal(grid(images[:1], cols=1, pad=0, scale=3), np.full((84, 84), 10, np.uint8))


def test_gif_holds_the_grids_in_order_and_the_plot_draws_both_series(tmp_path):
    pictures = [np.full((40, 40), 60 * i, np.uint8) for i in range(1, 4)]
    frames = [save_png(tmp_path / f"epoch_{i:04d}.png", p) for i, p in enumerate(pictures, 1)]
    gif = iio.imread(make_gif(frames, tmp_path / "progress.gif"), index=None)
    assert gif.shape[:3] == (3, 40, 40)
    for frame, picture in zip(gif, pictures):  # grey levels survive the GIF palette exactly
        assert np.array_equal(frame[..., 0] if frame.ndim == 3 else frame, picture)
    single = iio.imread(make_gif(frames[:1], tmp_path / "one.gif"), index=None)
    assert single.shape[0] == 1
    plot = iio.imread(plot_d_outputs([(1, 0.9), (2, 0.7)], [(1, 0.1), (2, 0.4)], tmp_path / "d.png"))
    assert plot.shape[:2] == (350, 600)  # 6 x 3.5 inches at 100 dpi
    rgb = plot[..., :3].reshape(-1, 3).astype(int)
    for colour in ((31, 119, 180), (255, 127, 14)):  # matplotlib's first two line colours: D(x), D(G(z))
        assert (np.abs(rgb - colour).sum(1) < 30).sum() > 50, colour
