"""Is the discriminator a weapon against deepfakes? Detection across a study's generators, measured as the
detection literature measures it (Wang et al. 2020): each run's own discriminator against every generator's
fakes (D x G), and a detector trained on some generators' fakes, with blur, noise and JPEG augmentation,
tested on the generators it never saw, with a threshold calibrated on held-out training generators.

    python -m ganstudy.detection [sweep=default] [storage=URL] [study_name=NAME] [key=value ...]

The study is named as for `python -m ganstudy.sweep`. Keys: n (fakes per generator and real images per test
set, default 500), noise_seed (0), epochs (the detector's, 3), fit_arms ([quick]: the arms whose seeds train
the detector, with the even-numbered trials; every third of those calibrates its threshold instead),
register (true: the detector becomes <study name>-detector@champion, its threshold on the model version).
Real test images are the data's held-out images, which no generator trained on."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import yaml

from ganstudy.config import ConfigError, exit_on_config_error
from ganstudy.zoo import TRIALS, Member

OPTIONS = {"n": 500, "noise_seed": 0, "epochs": 3, "fit_arms": ["quick"], "register": True}
ROLE = "detection"  # the study run's child that holds the detector


@dataclass
class Split:
    """Which generators train the detector, which calibrate its threshold, and which it never sees."""
    fit: list[Member]
    calibrate: list[Member]
    unseen: list[Member]
    held_out_arms: dict[str, list[Member]] = field(default_factory=dict)  # leave-one-arm-out: arm -> its seeds


def parse_options(argv: list[str]) -> tuple[dict, list[str]]:
    """(the detection's options, the rest: the study's sweep arguments)."""
    options, rest = dict(OPTIONS), []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in OPTIONS:
            rest.append(arg)
            continue
        parsed = yaml.safe_load(value)
        wanted = type(OPTIONS[key])
        if wanted is list and isinstance(parsed, str):
            parsed = [parsed]
        if not isinstance(parsed, wanted) or (wanted is int and isinstance(parsed, bool)) \
                or (wanted is int and parsed < (20 if key == "n" else 1 if key == "epochs" else 0)):
            raise ConfigError(f"{arg}: {key} is {_wanted(key)}")
        options[key] = [str(a) for a in parsed] if wanted is list else parsed
    return options, rest


def _wanted(key: str) -> str:
    return {"n": "an integer >= 20", "epochs": "an integer >= 1", "noise_seed": "an integer >= 0",
            "fit_arms": "a list of arm names, e.g. [quick]", "register": "true or false"}[key]


def split_zoo(zoo: list[Member], fit_arms: list[str]) -> Split:
    """The even-numbered trials and the seeds of `fit_arms` train the detector, but every third of them (at
    least one) calibrates its threshold; every other generator is unseen. Each confirm arm at equal epochs is
    also held out on its own: a detector trained on all the other generators is tested on its seeds."""
    pool = [m for m in zoo if (m.group == TRIALS and m.number % 2 == 0) or m.group in fit_arms]
    calibrate = pool[2::3] or pool[-1:]
    fit = [m for m in pool if m not in calibrate]
    unseen = [m for m in zoo if m not in pool]
    if not fit or not unseen:
        raise ConfigError(f"the study has {len(zoo)} generators with models ({len(pool)} of them even-numbered "
                          f"trials or {', '.join(fit_arms) or 'no'} arm seeds): too few to train a detector on "
                          "some, calibrate it on another and test it on the rest (3 at least, with fit_arms=)")
    arms = sorted({m.group for m in zoo if m.role == "confirm" and "(" not in m.group})
    return Split(fit, calibrate, unseen, {arm: [m for m in zoo if m.group == arm] for arm in arms})


def real_sets(data_cfg, n: int) -> dict[str, np.ndarray]:
    """Pixels (float32, 0..255) of real images: `fit` the generators' training images, `calibrate` and `test`
    n each of the held-out images no generator trained on."""
    from ganstudy.data import load_mnist, training_images

    splits = load_mnist(data_cfg)
    if len(splits.test_x) < 2 * n:
        raise ConfigError(f"n={n}: the data hold out {len(splits.test_x)} images, and calibration and test take n "
                          f"each: n is at most {len(splits.test_x) // 2}")
    return {"fit": training_images(splits, data_cfg).astype(np.float32),
            "calibrate": splits.test_x[:n].astype(np.float32), "test": splits.test_x[n:2 * n].astype(np.float32)}


def measure(zoo: list[Member], split: Split, reals: dict[str, np.ndarray], options: dict) -> dict:
    """Every number of the detection study (see docs/detection.md), and the detector it registers."""
    from ganstudy import zoo as zoo_
    from ganstudy.detection_metrics import (balanced_threshold, expected_calibration_error, reliability,
                                            scores)

    n, seed = options["n"], options["noise_seed"]
    clock = {"start": time.monotonic()}
    per_fit = math.ceil(len(reals["fit"]) / len(split.fit))
    fakes = {}
    for i, m in enumerate(zoo, 1):
        print(f"fakes [{i}/{len(zoo)}] {m.name}", flush=True)
        fakes[m] = zoo_.fakes(m, {"test": (n, seed), "calibrate": (n, seed + 1), "fit": (per_fit, seed + 2)})
    clock["fakes"] = time.monotonic()
    d_auc = np.zeros((len(zoo), len(zoo)))
    everyone = np.concatenate([fakes[g]["test"] for g in zoo])
    for i, m in enumerate(zoo):
        print(f"D x G [{i + 1}/{len(zoo)}] the discriminator of {m.name}", flush=True)
        d = zoo_.discriminator(m)
        p_reals, p_fakes = _p_real(d, reals["test"]), _p_real(d, everyone).reshape(len(zoo), n)
        d_auc[i] = [scores(p_reals, p_fakes[j], 0.5)["auc"] for j in range(len(zoo))]

    clock["d_by_g"] = time.monotonic()

    def detector_on(fit: list[Member]):
        k = math.ceil(len(reals["fit"]) / len(fit))
        return _detector(reals["fit"], np.concatenate([fakes[m]["fit"][:k] for m in fit]), options["epochs"], seed)

    print(f"detector: trained on {len(split.fit)} generators, calibrated on {len(split.calibrate)}", flush=True)
    detector = detector_on(split.fit)
    p_test_reals = _p_real(detector, reals["test"])
    threshold = balanced_threshold(_p_real(detector, reals["calibrate"]),
                                   _p_real(detector, np.concatenate([fakes[m]["calibrate"] for m in split.calibrate])))
    p_unseen = {m: _p_real(detector, fakes[m]["test"]) for m in split.unseen}
    others = {m: [j for j, d in enumerate(zoo) if d != m] for m in zoo}
    index = {m: j for j, m in enumerate(zoo)}
    pooled = np.concatenate(list(p_unseen.values()))
    p_all, y_all = np.r_[p_test_reals, pooled], np.r_[np.ones(len(p_test_reals)), np.zeros(len(pooled))]
    held_out = {}
    for arm, members in split.held_out_arms.items():
        print(f"detector without the {arm} arm: tested on its {len(members)} seeds", flush=True)
        rest = [m for m in zoo if m.group.split(" (")[0] != arm and m not in split.calibrate]
        det = detector_on(rest)
        thr = balanced_threshold(_p_real(det, reals["calibrate"]),
                                 _p_real(det, np.concatenate([fakes[m]["calibrate"] for m in split.calibrate])))
        held_out[arm] = {"threshold": thr, "trained_on": len(rest), **scores(
            _p_real(det, reals["test"]), np.concatenate([_p_real(det, fakes[m]["test"]) for m in members]), thr)}
    clock["detectors"] = time.monotonic()
    return {
        "seconds": {phase: round(clock[phase] - before, 1) for before, phase in
                    zip(clock.values(), ("fakes", "d_by_g", "detectors"))},
        "generators": [{"name": m.name, "group": m.group, "run_id": m.run_id,
                        "split": "fit" if m in split.fit else "calibrate" if m in split.calibrate else "unseen"}
                       for m in zoo],
        "n": n, "noise_seed": seed, "real_images": {k: len(v) for k, v in reals.items()},
        "d_by_g": {"auc": d_auc.round(4).tolist(),
                   "own_auc": float(np.mean(np.diag(d_auc))),
                   "cross_auc": float(np.mean(d_auc[~np.eye(len(zoo), dtype=bool)])) if len(zoo) > 1 else None},
        "detector": {
            "threshold": threshold,
            "unseen": {m.name: {**scores(p_test_reals, p_unseen[m], threshold),
                                "d_mean_auc": float(np.mean(d_auc[others[m], index[m]]))} for m in split.unseen},
            "pooled": scores(p_test_reals, pooled, threshold),
            "by_group": {group: scores(p_test_reals, np.concatenate([p_unseen[m] for m in split.unseen
                                                                     if m.group == group]), threshold)
                         for group in dict.fromkeys(m.group for m in split.unseen)},
            "ece": expected_calibration_error(p_all, y_all), "reliability": reliability(p_all, y_all)},
        "held_out_arms": held_out,
    }, detector


def _detector(real_pixels: np.ndarray, fake_pixels: np.ndarray, epochs: int, seed: int):
    """The detector fit with augmentation, as a pixel scorer (pixels -> p_real, as logged models are)."""
    from ganstudy.data import to_model_range
    from ganstudy.detector import fit_detector
    from ganstudy.mlflow_models import pixel_scorer

    model = fit_detector(to_model_range(real_pixels), to_model_range(fake_pixels), epochs, seed, augment=True)
    return pixel_scorer(model)


def _p_real(scorer, pixels: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """p_real of each image (called in batches: Keras's predict retraces for every new model)."""
    pixels = np.asarray(pixels, np.float32)
    return np.concatenate([np.asarray(scorer(pixels[s:s + batch_size], training=False)).ravel()
                           for s in range(0, len(pixels), batch_size)])


def main(argv: list[str] | None = None) -> None:
    from ganstudy import detection_report, sweep_spec
    from ganstudy.sweep import parse_argv

    argv = sys.argv[1:] if argv is None else argv
    if {"-h", "--help"} & set(argv):
        print(__doc__.strip())
        return
    with exit_on_config_error():
        options, rest = parse_options(argv)
        spec = sweep_spec.load(*parse_argv(rest))
        parent_run_id, cfg = detection_report.open_study(spec)
        reals = real_sets(cfg.data, options["n"])
        from mlflow.tracking import MlflowClient

        from ganstudy.zoo import members

        zoo = members(MlflowClient(), parent_run_id)
        split = split_zoo(zoo, options["fit_arms"])
    print(f"detection across the {len(zoo)} generators of study {spec.study_name}: {len(split.fit)} train the "
          f"detector, {len(split.calibrate)} calibrate it, {len(split.unseen)} unseen", flush=True)
    with exit_on_config_error():  # a model that cannot be loaded stops it before the detector trains
        results, detector = measure(zoo, split, reals, options)
    detection_report.log(parent_run_id, spec, results, detector if options["register"] else None)
    detection_report.print_tables(results)


if __name__ == "__main__":
    main()
