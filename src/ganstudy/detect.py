"""Score image files with a run's discriminator (and its post-hoc detector), or with one registered model:
`python -m ganstudy.detect --run RUN FILES... [--json]`, or `--model models:/ganstudy-detector@champion`."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator

import numpy as np

from ganstudy.cli import add_run_options, load_model
from ganstudy.config import exit_on_config_error
from ganstudy.data import to_pixels
from ganstudy.mlflow_models import DETECTION_TAG, DETECTOR, DISCRIMINATOR, HISTOGRAM_TAG, version_tags


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m ganstudy.detect", description=__doc__.split(":")[0])
    add_run_options(p, "models:/ganstudy-detector@champion")
    p.add_argument("files", nargs="+", type=Path,
                   help="PNG/JPEG images (grey, or turned grey and resized to 28x28) or .npz arrays of images")
    p.add_argument("--json", action="store_true", help="one JSON object per image, per line")
    p.add_argument("--threshold", type=float, default=None,
                   help="p_real at or above it: 'real' (default: the threshold the detection study calibrated for a "
                        "detector it registered, else 0.5)")
    args = p.parse_args(argv)
    for path in args.files:
        if path.is_dir():
            p.error(f"{path}: is a folder; give image files (for example {path}/*.png)")
    return args


def read_images(path: Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, uint8 28x28 image) for each image in the file; raises ValueError/OSError when it holds none."""
    if path.suffix.lower() == ".npz":
        with np.load(path) as arrays:
            for key in arrays.files:
                a = arrays[key]
                if a.shape[-2:] != (28, 28) and a.shape[-3:] != (28, 28, 1):
                    raise ValueError(f"array '{key}' has shape {a.shape}, not 28x28 images")
                try:
                    pixels = to_pixels(a.reshape(-1, 28, 28))
                except ValueError as err:
                    raise ValueError(f"array '{key}' {err}") from None
                for i, image in enumerate(pixels):
                    yield f"{path}[{key}][{i}]", image
        return
    from PIL import Image

    with Image.open(path) as img:
        grey = img.convert("L")
        if grey.size != (28, 28):
            grey = grey.resize((28, 28), Image.Resampling.LANCZOS)
        yield str(path), np.asarray(grey, np.uint8)


def _altered(path: Path) -> bool:
    """A JPEG file or an image that is not 28x28 (resized when read): its pixel values are not the image's own."""
    if path.suffix.lower() == ".npz":
        return False
    from PIL import Image

    try:
        with Image.open(path) as img:
            return img.format == "JPEG" or img.size != (28, 28)
    except OSError:
        return False  # unreadable: reported when it is read


def main(argv=None) -> int:
    args = parse_args(argv)
    with exit_on_config_error():
        if args.model:
            scorers = {"model": load_model(args, "", "scorer")}
        else:
            scorers = {DISCRIMINATOR: load_model(args, DISCRIMINATOR, "scorer"),
                       DETECTOR: load_model(args, DETECTOR, "scorer", required=False)}
        tags = version_tags(args.model) if args.model else {}
        calibrated = float(tags[DETECTION_TAG]) if DETECTION_TAG in tags else None
        threshold = args.threshold if args.threshold is not None else calibrated if calibrated is not None else 0.5
    if tags.get(HISTOGRAM_TAG) == "true" and (altered := [p for p in args.files if _altered(p)]):
        print(f"warning: {len(altered)} file(s) JPEG or not 28x28 (first: {altered[0]}): compression or resizing "
              "changed their pixel values; this detector reads pixel values exactly and calls such images generated, "
              "real ones too (docs/detection.md#what-it-cannot-tell)",
              file=sys.stderr, flush=True)
    verdict_by = DETECTOR if scorers.get(DETECTOR) is not None else next(iter(scorers))
    failed = 0
    for path in args.files:
        try:
            names, images = zip(*read_images(path))
        except Exception as err:  # unreadable or not an image: report it, score the rest
            failed += 1
            message = f"cannot read as an image ({type(err).__name__}: {err})"
            print(json.dumps({"file": str(path), "error": message}) if args.json else f"{path}: error: {message}",
                  file=sys.stdout if args.json else sys.stderr, flush=True)
            continue
        pixels = np.stack(images).astype(np.float32)
        p_real = {name: None if model is None else model.predict(pixels, batch_size=500, verbose=0).ravel()
                  for name, model in scorers.items()}
        for i, name in enumerate(names):
            row = {"file": name, **{f"p_real_{k}": None if p is None else round(float(p[i]), 4) for k, p in p_real.items()},
                   "verdict": "real" if p_real[verdict_by][i] >= threshold else "generated"}
            if args.json:
                print(json.dumps(row))
            else:
                scores = "  ".join(f"{k} {p[i]:.3f}" for k, p in p_real.items() if p is not None)
                print(f"{name}  p_real: {scores}  -> {row['verdict']}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
