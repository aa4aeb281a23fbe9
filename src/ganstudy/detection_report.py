"""Where the detection study's results go: detection/ in the study's MLflow run (detection.json, the D x G
heatmap, the detector's results per generator, its reliability diagram), the detector as a model in a child run
registered with its threshold, the study page redrawn, and the tables on the console."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from ganstudy.config import ConfigError
from ganstudy.tags import Tag

CROSS_AUC_TAG = "cross_generator_auc"  # on the registered detector's version, beside its threshold


def open_study(spec):
    """(the study's MLflow run id, the composed base config), or ConfigError with the reason."""
    from ganstudy.config import compose
    from ganstudy.report import PARENT_ATTR
    from ganstudy.storage import existing_study
    from ganstudy.tracking import use_experiment

    study = existing_study(spec)
    if PARENT_ATTR not in study.user_attrs:
        raise ConfigError(f"study {spec.study_name}: it has no MLflow run yet (run python -m ganstudy.sweep first)")
    cfg = compose(list(spec.base) + ["run_dir=unused"])
    use_experiment(cfg.tracking)
    return study.user_attrs[PARENT_ATTR], cfg


def log(parent_run_id: str, spec, results: dict, detector) -> None:
    """The results in the study's run; the detector (unless None) logged and registered as the champion."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    pooled = results["detector"]["pooled"]
    metrics = {"detection_unseen_auc": pooled["auc"], "detection_unseen_ap": pooled["ap"],
               "detection_unseen_matched_auc": results["detector"]["pooled_matched"]["auc"],
               "detection_reals_called_real": pooled["reals_called_real"],
               "detection_fakes_caught": pooled["fakes_caught"], "detection_threshold": results["detector"]["threshold"],
               "detection_ece": results["detector"]["ece"], "detection_d_cross_auc": results["d_by_g"]["cross_auc"],
               "detection_d_own_auc": results["d_by_g"]["own_auc"],
               **{f"detection_without_{arm}_auc": r["auc"] for arm, r in results["held_out_arms"].items()}}
    for key, value in metrics.items():
        if value is not None:
            client.log_metric(parent_run_id, key, value)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "detection"
        folder.mkdir()
        (folder / "detection.json").write_text(json.dumps(results, indent=2))
        d_by_g_plot(results, folder / "d_by_g.png")
        detector_plot(results, folder / "detector.png")
        reliability_plot(results["detector"]["reliability"], folder / "reliability.png")
        client.log_artifacts(parent_run_id, str(folder), "detection")
    if detector is not None:
        _register(client, parent_run_id, spec, results, detector)
    from ganstudy.report import redraw

    redraw(spec, parent_run_id)


def _register(client, parent_run_id: str, spec, results: dict, detector) -> None:
    import mlflow

    from ganstudy import mlflow_models as mm

    parent = client.get_run(parent_run_id)
    child = client.create_run(parent.info.experiment_id, run_name="detection", tags={
        "mlflow.parentRunId": parent_run_id, Tag.STUDY: spec.study_name, Tag.ROLE: "detection",
        **({Tag.INSTANCE: parent.data.tags[Tag.INSTANCE]} if Tag.INSTANCE in parent.data.tags else {})})
    pooled, threshold = results["detector"]["pooled"], results["detector"]["threshold"]
    with mlflow.start_run(run_id=child.info.run_id):
        mlflow.log_metrics({"unseen_auc": pooled["auc"], "unseen_ap": pooled["ap"], "threshold": threshold})
        info = mm.log(detector, mm.DETECTOR, step=0)
    name = mm.registered_name(spec.study_name, mm.DETECTOR)
    version = mlflow.register_model(info.model_uri, name, tags={
        mm.DETECTION_TAG: repr(threshold), CROSS_AUC_TAG: f"{pooled['auc']:.4f}",
        mm.HISTOGRAM_TAG: str(results["recipe"]["histogram"]).lower()}).version
    client.set_registered_model_alias(name, mm.CHAMPION, version)
    print(f"registered the detector as {name} version {version} (@{mm.CHAMPION}), threshold {threshold:.3g}: "
          f"python -m ganstudy.detect --model models:/{name}@{mm.CHAMPION} FILES", flush=True)


def print_tables(results: dict) -> None:
    det, d = results["detector"], results["d_by_g"]
    print(f"\nthe detector on generators it never saw (threshold {det['threshold']:.3g}, calibrated on held-out "
          "training generators):")
    print(f"{'generator':<28} {'AUC':>6} {'AP':>6} {'acc@0.5':>8} {'acc':>6} {'reals ok':>9} {'caught':>7} "
          f"{'D mean AUC':>11} {'matched AUC':>12}")
    for name, s in det["unseen"].items():
        print(f"{name:<28} {s['auc']:>6.3f} {s['ap']:>6.3f} {s['acc_05']:>8.3f} {s['acc']:>6.3f} "
              f"{s['reals_called_real']:>9.3f} {s['fakes_caught']:>7.3f} {s['d_mean_auc']:>11.3f} {s['matched_auc']:>12.3f}")
    p, pm = det["pooled"], det["pooled_matched"]
    print(f"{'all unseen':<28} {p['auc']:>6.3f} {p['ap']:>6.3f} {p['acc_05']:>8.3f} {p['acc']:>6.3f} "
          f"{p['reals_called_real']:>9.3f} {p['fakes_caught']:>7.3f} {'':>11} {pm['auc']:>12.3f}")
    print("(matched AUC: the same fakes given real training digits' pixel-value histograms)")
    print(f"\nby group of unseen generators:\n{'group':<28} {'AUC':>6} {'AP':>6} {'acc':>6} {'reals ok':>9} {'caught':>7} "
          f"{'matched AUC':>12}")
    for group, s in det["by_group"].items():
        print(f"{group:<28} {s['auc']:>6.3f} {s['ap']:>6.3f} {s['acc']:>6.3f} {s['reals_called_real']:>9.3f} "
              f"{s['fakes_caught']:>7.3f} {s['matched_auc']:>12.3f}")
    print(f"expected calibration error {det['ece']:.3f}")
    for arm, s in results["held_out_arms"].items():
        print(f"trained without the {arm} arm, tested on it: AUC {s['auc']:.3f}, AP {s['ap']:.3f}, "
              f"reals ok {s['reals_called_real']:.3f}, caught {s['fakes_caught']:.3f}")
    cross = "" if d["cross_auc"] is None else f", on the other generators' fakes {d['cross_auc']:.3f}"
    print(f"each run's discriminator: AUC on its own generator's fakes {d['own_auc']:.3f}{cross} (mean)")
    took = results["seconds"]
    print(f"took {sum(took.values()) / 60:.1f} minutes: " + ", ".join(f"{k} {v:.0f} s" for k, v in took.items()))


def d_by_g_plot(results: dict, out: Path) -> Path:
    """The D x G matrix of ROC-AUC as a heatmap, rows the discriminators, columns the generators."""
    names = [g["name"] for g in results["generators"]]
    return _heatmap(np.array(results["d_by_g"]["auc"]), names, names, "discriminator of", "fakes of",
                    "Each run's discriminator against every generator (ROC-AUC)", out)


def detector_plot(results: dict, out: Path) -> Path:
    """The detector's AUC on each unseen generator (as made, and with real digits' histograms), and each held-out
    arm's, as one row each."""
    names = [g["name"] for g in results["generators"]]
    unseen = results["detector"]["unseen"]
    rows = {"detector": {n: s["auc"] for n, s in unseen.items()},
            "histogram-matched": {n: s["matched_auc"] for n, s in unseen.items()}}
    groups = {g["name"]: g["group"] for g in results["generators"]}
    for arm, s in results["held_out_arms"].items():
        rows[f"without {arm}"] = {n: s["auc"] for n in names if groups[n] == arm}
    matrix = np.array([[row.get(n, np.nan) for n in names] for row in rows.values()])
    return _heatmap(matrix, list(rows), names, "", "fakes of", "The detector on generators it never saw (ROC-AUC)",
                    out)


def _heatmap(matrix: np.ndarray, rows: list[str], cols: list[str], ylabel: str, xlabel: str, title: str,
             out: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5.0, 0.22 * len(cols) + 3), max(2.5, 0.22 * len(rows) + 2.5)))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(matrix), vmin=0.5, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=6)
    ax.set_yticks(range(len(rows)), rows, fontsize=6)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    fig.colorbar(image, ax=ax, label="ROC-AUC (0.5: chance)")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out


def reliability_plot(points: list[dict], out: Path) -> Path:
    """The reliability diagram: the share of real images against the mean p_real, per bin."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="grey", lw=1, label="calibrated")
    ax.plot([p["confidence"] for p in points], [p["share_real"] for p in points], "o-", label="detector")
    ax.set(xlabel="p_real (bin mean)", ylabel="share of real images", xlim=(0, 1), ylim=(0, 1),
           title="Reliability on unseen generators")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    return out
