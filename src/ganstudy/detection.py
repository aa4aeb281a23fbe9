"""Is the discriminator a weapon against deepfakes? Detection across a study's generators, measured as the
detection literature measures it (Wang et al. 2020): each run's own discriminator against every generator's
fakes (D x G), and a detector trained on some generators' fakes (optionally with blur, noise and JPEG augmentation),
tested on the generators it never saw, with a threshold calibrated on held-out training generators.

    python -m ganstudy.detection [sweep=default] [storage=URL] [study_name=NAME] [key=value ...]

The study is named as for `python -m ganstudy.sweep`. Keys: n (fakes per generator and real images per test
set, default 500), noise_seed (0), detector (deep: four 3x3 convolutions and global pooling; or small: the
post-hoc detector's two), fit_fakes (the fakes a detector trains on, shared equally by its generators: 24000),
augment (false; true: blur, noise and JPEG each epoch, which hurt on MNIST), histogram (true: the detector's
logit has a term for how far the image's pixel-value histogram lies from real digits'), histogram_match (0.5:
the share of training fakes given real digits' histograms), epochs (the detector's, 10), fit_arms (the arms
whose seeds train the detector, with the even-numbered trials; default [quick] if the study has it; every third
of those calibrates its threshold instead), register (true: the detector becomes <study name>-detector@champion,
its threshold on the model version).
Real test images are the data's held-out images, which no generator trained on."""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import yaml

from scipy.special import expit

from ganstudy.config import ConfigError, exit_on_config_error
from ganstudy.detector import KINDS, matched
from ganstudy.detection_metrics import (balanced_threshold, expected_calibration_error, reliability, roc_auc,
                                        scores)
from ganstudy.zoo import TRIALS, Member

OPTIONS = {"n": 500, "noise_seed": 0, "detector": "deep", "fit_fakes": 24000, "augment": False, "histogram": True,
           "histogram_match": 0.5, "epochs": 10, "fit_arms": None, "register": True}
DEFAULT_FIT_ARMS = ["quick"]  # fit_arms unless given: the arms of these names the study has


def _integer(low: int):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


def _boolean(v) -> bool:
    return isinstance(v, bool)


WANTED = {"n": (_integer(20), "an integer >= 20"), "noise_seed": (_integer(0), "an integer >= 0"),
          "detector": (lambda v: v in KINDS, " or ".join(KINDS)), "fit_fakes": (_integer(1), "an integer >= 1"),
          "augment": (_boolean, "true or false"), "histogram": (_boolean, "true or false"),
          "histogram_match": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1,
                              "a share from 0 to 1"),
          "epochs": (_integer(1), "an integer >= 1"),
          "fit_arms": (lambda v: isinstance(v, list), "a list of arm names, e.g. [quick]"),
          "register": (_boolean, "true or false")}


@dataclass
class HoldOut:
    """A detector trained on every generator but one set of settings', tested on that set's seeds."""
    test: list[Member]
    fit: list[Member]
    calibrate: list[Member]


@dataclass
class Split:
    """Which generators train the detector, which calibrate its threshold, and which it never sees; and, per
    confirm arm, the leave-one-arm-out split."""
    fit: list[Member]
    calibrate: list[Member]
    unseen: list[Member]
    held_out_arms: dict[str, HoldOut] = field(default_factory=dict)


def parse_options(argv: list[str]) -> tuple[dict, list[str]]:
    """(the detection's options, the rest: the study's sweep arguments)."""
    options, rest = dict(OPTIONS), []
    for arg in argv:
        key, _, value = arg.partition("=")
        if key not in OPTIONS:
            rest.append(arg)
            continue
        ok, wanted = WANTED[key]
        parsed = yaml.safe_load(value)
        if key == "fit_arms" and isinstance(parsed, str):
            parsed = [parsed]
        if not ok(parsed):
            raise ConfigError(f"{arg}: {key} is {wanted}")
        options[key] = [str(a) for a in parsed] if key == "fit_arms" else parsed
    return options, rest


def split_zoo(zoo: list[Member], fit_arms: list[str] | None) -> Split:
    """The even-numbered trials and the seeds of `fit_arms` (at both budgets; default: quick's, if the study
    has that arm) train the detector, but every third of them (at least one) calibrates its threshold; every
    other generator is unseen. Each confirm arm's settings are also held out alone: a detector trained on every
    other generator, calibrated on the calibration generators of other settings, tested on the arm's seeds at
    equal epochs."""
    arms = {m.arm for m in zoo if m.arm != TRIALS}
    if fit_arms is None:
        fit_arms = [a for a in DEFAULT_FIT_ARMS if a in arms]
    elif unknown := [a for a in fit_arms if a not in arms]:
        raise ConfigError(f"fit_arms={unknown[0]}: no such arm in the study (its arms: {', '.join(sorted(arms)) or 'none'})")
    pool = [m for m in zoo if (m.arm == TRIALS and m.number % 2 == 0) or m.arm in fit_arms]
    calibrate = pool[2::3] or pool[-1:]
    fit = [m for m in pool if m not in calibrate]
    unseen = [m for m in zoo if m not in pool]
    if not fit or not unseen:
        raise ConfigError(f"the study has {len(zoo)} generators with models ({len(pool)} of them even-numbered "
                          f"trials or seeds of {', '.join(fit_arms) or 'no'} arm): too few to train a detector on "
                          "some, calibrate it on another and test it on the rest (3 at least, with fit_arms=)")
    held_out = {}
    for settings in dict.fromkeys(m.settings for m in zoo if m.role == "confirm"):
        others = [m for m in zoo if m.settings != settings]
        calibrating = [m for m in calibrate if m.settings != settings] or others[-1:]
        held_out[settings] = HoldOut([m for m in zoo if m.group == settings],
                                     [m for m in others if m not in calibrating], calibrating)
    if any(not h.fit for h in held_out.values()):
        raise ConfigError(f"the study's {len(zoo)} generators are too few to hold each arm out")
    return Split(fit, calibrate, unseen, held_out)


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


def measure(zoo: list[Member], split: Split, reals: dict[str, np.ndarray], options: dict) -> tuple[dict, object]:
    """Every number of the detection study (see docs/detection.md), and the detector it registers. Scores are
    logits (they do not saturate); thresholds are reported as p_real."""
    from ganstudy import zoo as zoo_
    from ganstudy.mlflow_models import logit_scorer

    n, seed = options["n"], options["noise_seed"]
    clock = {"start": time.monotonic()}
    smallest_fit = min(len(h.fit) for h in [split, *split.held_out_arms.values()])
    per_fit = math.ceil(options["fit_fakes"] / smallest_fit)
    fakes = {}
    for i, m in enumerate(zoo, 1):
        print(f"fakes [{i}/{len(zoo)}] {m.name}", flush=True)
        fakes[m] = zoo_.fakes(m, {"test": (n, seed), "calibrate": (n, seed + 1), "fit": (per_fit, seed + 2)})
    clock["fakes"] = time.monotonic()
    d_auc = np.zeros((len(zoo), len(zoo)))
    everyone = np.concatenate([fakes[g]["test"] for g in zoo])
    for i, m in enumerate(zoo):
        print(f"D x G [{i + 1}/{len(zoo)}] the discriminator of {m.name}", flush=True)
        d = logit_scorer(zoo_.discriminator(m))
        real, fake = _scores(d, reals["test"]), _scores(d, everyone).reshape(len(zoo), n)
        d_auc[i] = [roc_auc(real, fake[j]) for j in range(len(zoo))]
    clock["d_by_g"] = time.monotonic()

    def trained(fit: list[Member], calibrate: list[Member]):
        """(the detector, its logit scorer, its threshold as a logit) trained on `fit`, calibrated on `calibrate`."""
        k = math.ceil(options["fit_fakes"] / len(fit))
        detector = _detector(reals["fit"], np.concatenate([fakes[m]["fit"][:k] for m in fit]), options, seed)
        logits = logit_scorer(detector)
        threshold = balanced_threshold(_scores(logits, reals["calibrate"]),
                                       _scores(logits, np.concatenate([fakes[m]["calibrate"] for m in calibrate])))
        return detector, logits, threshold

    print(f"detector ({options['detector']}, {options['fit_fakes']} fakes, augment={options['augment']}, "
          f"histogram={options['histogram']}, histogram_match={options['histogram_match']}): trained "
          f"on {len(split.fit)} generators, calibrated on {len(split.calibrate)}", flush=True)
    detector, logits, threshold = trained(split.fit, split.calibrate)
    real = _scores(logits, reals["test"])
    unseen = {m: _scores(logits, fakes[m]["test"]) for m in split.unseen}
    rng = np.random.default_rng(seed)  # the same fakes with real training digits' histograms: what else it sees
    disguised = {m: _scores(logits, matched(fakes[m]["test"], reals["fit"], rng)) for m in split.unseen}
    index = {m: j for j, m in enumerate(zoo)}
    share = math.ceil(n / len(unseen))

    def pooled(by_member: dict) -> np.ndarray:
        """As many fakes as reals, an equal share of every unseen generator's."""
        return np.concatenate([s[:share] for s in by_member.values()])[:n]

    balanced = pooled(unseen)
    p, y = expit(np.r_[real, balanced].astype(np.float64)), np.r_[np.ones(n), np.zeros(len(balanced))]
    held_out = {}
    for settings, h in split.held_out_arms.items():
        print(f"detector without the {settings} settings: tested on their {len(h.test)} seeds", flush=True)
        _, arm_logits, arm_threshold = trained(h.fit, h.calibrate)
        held_out[settings] = {
            "threshold": float(expit(arm_threshold)), "trained_on": len(h.fit),
            "calibrated_on": [m.name for m in h.calibrate], "tested_on": [m.name for m in h.test],
            **scores(_scores(arm_logits, reals["test"]),
                     np.concatenate([_scores(arm_logits, fakes[m]["test"]) for m in h.test]), arm_threshold)}
    clock["detectors"] = time.monotonic()
    return {
        "seconds": {phase: round(clock[phase] - before, 1) for before, phase in
                    zip(clock.values(), ("fakes", "d_by_g", "detectors"))},
        "generators": [{"name": m.name, "group": m.group, "run_id": m.run_id,
                        "split": "fit" if m in split.fit else "calibrate" if m in split.calibrate else "unseen"}
                       for m in zoo],
        "n": n, "noise_seed": seed, "real_images": {k: len(v) for k, v in reals.items()},
        "recipe": {key: options[key] for key in ("detector", "fit_fakes", "augment", "histogram", "histogram_match",
                                                  "epochs")},
        "d_by_g": {"auc": d_auc.round(4).tolist(),
                   "own_auc": float(np.mean(np.diag(d_auc))),
                   "cross_auc": float(np.mean(d_auc[~np.eye(len(zoo), dtype=bool)])) if len(zoo) > 1 else None},
        "detector": {
            "threshold": float(expit(threshold)),
            "unseen": {m.name: {**scores(real, unseen[m], threshold), "matched_auc": roc_auc(real, disguised[m]),
                                "d_mean_auc": float(np.mean(np.delete(d_auc[:, index[m]], index[m])))}
                       for m in split.unseen},
            "pooled": scores(real, balanced, threshold),
            "pooled_matched": scores(real, pooled(disguised), threshold),
            "by_group": {group: {**scores(real, np.concatenate([unseen[m] for m in members]), threshold),
                                 "matched_auc": roc_auc(real, np.concatenate([disguised[m] for m in members]))}
                         for group, members in _by_group(split.unseen).items()},
            "ece": expected_calibration_error(p, y), "reliability": reliability(p, y)},
        "held_out_arms": held_out,
    }, detector


def _by_group(members: list[Member]) -> dict[str, list[Member]]:
    groups: dict[str, list[Member]] = {}
    for m in members:
        groups.setdefault(m.group, []).append(m)
    return groups


def _detector(real_pixels: np.ndarray, fake_pixels: np.ndarray, options: dict, seed: int):
    """The detector of the options' kind, fit as they say, as a pixel scorer (pixels -> p_real, as logged models
    are)."""
    from ganstudy.data import to_model_range
    from ganstudy.detector import fit_detector
    from ganstudy.mlflow_models import pixel_scorer

    model = fit_detector(to_model_range(real_pixels), to_model_range(fake_pixels), options["epochs"], seed,
                         augment=options["augment"], kind=options["detector"], histogram=options["histogram"],
                         match=options["histogram_match"])
    return pixel_scorer(model)


def _scores(model, pixels: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """The model's output for each image (called in batches: Keras's predict retraces for every new model)."""
    pixels = np.asarray(pixels, np.float32)
    return np.concatenate([np.asarray(model(pixels[s:s + batch_size], training=False)).ravel()
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
