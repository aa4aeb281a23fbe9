"""Export images from a run's generator (or a registered one): `python -m ganstudy.sample --run RUN -n 1000 -o samples.npz
[--png DIR]`, or `--model models:/ganstudy-generator@champion` instead of `--run RUN`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ganstudy.cli import add_run_options, load_model
from ganstudy.config import exit_on_config_error
from ganstudy.mlflow_models import GENERATOR, GENERATOR_BEST


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ganstudy.sample", description=__doc__.split(":")[0])
    add_run_options(p, "models:/ganstudy-generator@champion")
    p.add_argument("-n", type=int, default=1000, help="how many images (default %(default)s)")
    p.add_argument("-o", "--out", type=Path, default=Path("samples.npz"),
                   help="the .npz to write: 'images', uint8 (n, 28, 28) (default %(default)s)")
    p.add_argument("--png", type=Path, help="also write one PNG per image into this folder")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default %(default)s)")
    p.add_argument("--best", action="store_true", help="with --run: the generator with the best FID, not the final one")
    args = p.parse_args(argv)
    if args.n < 1:
        p.error(f"-n {args.n}: must be an integer >= 1")
    if args.best and args.model:
        p.error("--best picks a run's best generator: use it with --run, not --model")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    with exit_on_config_error():
        generator = load_model(args, GENERATOR_BEST if args.best else GENERATOR, "generator")
    import imageio.v3 as iio

    from ganstudy.evaluate import generate

    images = np.clip(np.rint(generate(generator, args.n, args.seed)), 0, 255).astype(np.uint8)  # pixels 0..255
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, images=images)
    print(f"wrote {len(images)} images, uint8 {images.shape[1:]} in 'images', to {args.out}")
    if args.png:
        args.png.mkdir(parents=True, exist_ok=True)
        for i, image in enumerate(images):
            iio.imwrite(args.png / f"sample_{i:05d}.png", image)
        print(f"wrote {len(images)} PNG files to {args.png}")


if __name__ == "__main__":
    sys.exit(main())
