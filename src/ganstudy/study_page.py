"""The study page, report/index.html in the study's MLflow run: one self-contained HTML file (every picture
embedded, no script, no network) with the best trial, the confirm table, the top trials side by side, the
Optuna plots and the top trials' D(x) / D(G(z)) curves."""
from __future__ import annotations

import base64
import html
import json
import tempfile
from pathlib import Path

import numpy as np
import optuna
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from ganstudy.redact import mask
from ganstudy.stats import against_reference
from ganstudy.storage import RUN_ATTR
from ganstudy.study_results import (BUDGETS, comparisons, ended, fmt, interval, last_value, state_counts,
                                    trial_cost)
from ganstudy.run_history import metric_series

TOP = 5
STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.5em}
td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}
img{max-width:100%}td img{width:200px;image-rendering:pixelated}.num{text-align:right}figure{display:inline-block;margin:0 1em 1em 0}"""


def write(study: optuna.Study, objective: str, parent_run_id: str, plots: Path, out: Path) -> Path:
    """Write the page to `out`, with the PNG plots found in `plots` (report._plots draws them)."""
    client = MlflowClient()
    trials = study.get_trials(deepcopy=False)
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: t.value,
                      reverse=study.direction == optuna.study.StudyDirection.MAXIMIZE)
    with tempfile.TemporaryDirectory() as tmp:
        parts = [f"<h1>Study {_e(study.study_name)}</h1>", _counts(trials)]
        if complete:
            parts.append(_best(complete[0], objective))
        parts.append(_confirm(client, parent_run_id, Path(tmp)))
        parts.append(_detection(client, parent_run_id, Path(tmp)))
        parts.append(_cost(trials, objective))
        top = complete[:TOP]
        if top:
            parts.append(_side_by_side(client, top, objective, Path(tmp)))
        figures = [(plots / f"{name}.png", caption) for name, caption in
                   (("optimization_history", "Optimization history"), ("param_importances", "Parameter importances"),
                    ("intermediate_values", "Learning curves (what the pruner saw)"))]
        if top:
            figures.append((_d_curves(top, Path(tmp) / "d_curves.png"), "D(x) and D(G(z)) of the top trials"))
        values = trial_outcomes(trials)
        if len(values) >= 2:
            minimize = study.direction == optuna.study.StudyDirection.MINIMIZE
            figures.append((_expected_best(values, minimize, objective, Path(tmp) / "expected_best.png"),
                            "Expected best after k trials (Dodge et al. 2019), from this study's trials"))
        parts.append("<h2>Plots</h2>" + "".join(_figure(path, caption) for path, caption in figures if path.exists()))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(mask(f"<!doctype html><html><head><meta charset='utf-8'><title>Study {_e(study.study_name)}</title>"
                   f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"))
    return out


def _e(value) -> str:
    return html.escape(str(value))


def _img(path: Path, alt: str) -> str:
    kind = {"png": "image/png", "gif": "image/gif"}[path.suffix[1:]]
    return f"<img alt='{_e(alt)}' src='data:{kind};base64,{base64.b64encode(path.read_bytes()).decode()}'>"


def _figure(path: Path, caption: str) -> str:
    return f"<figure>{_img(path, caption)}<figcaption>{_e(caption)}</figcaption></figure>"


def _counts(trials: list) -> str:
    counts = state_counts(trials)
    ended = [t for t in trials if t.datetime_complete]
    wall = ""
    if ended:
        minutes = (max(t.datetime_complete for t in ended) - min(t.datetime_start for t in trials if t.datetime_start))
        wall = f"; first trial start to last trial end: {minutes.total_seconds() / 60:.0f} min"
    return f"<p>{len(trials)} trials ({counts}){wall}.</p>"


def _cost(trials: list, objective: str) -> str:
    """Each trial's state, value, epochs and minutes, and their sums: what the study spent on what."""
    costs = [trial_cost(t) for t in trials]
    rows = "".join(
        f"<tr><td class='num'>{t.number}</td><td>{t.state.name.lower()}</td>"
        f"<td class='num'>{'' if t.value is None else f'{t.value:.4g}'}</td><td class='num'>{epochs}</td>"
        f"<td class='num'>{'' if minutes is None else f'{minutes:.1f}'}</td></tr>"
        for t, (epochs, minutes) in zip(trials, costs))
    total_minutes = sum(m for _, m in costs if m is not None)
    return (f"<h2>What the study cost</h2><p>{sum(e for e, _ in costs)} trial-epochs, {total_minutes:.0f} trial-minutes "
            f"(trials side by side overlap in wall time).</p><details><summary>every trial</summary><table>"
            f"<tr><th>trial</th><th>state</th><th>{_e(objective)}</th><th>epochs</th><th>minutes</th></tr>{rows}"
            "</table></details>")


def _best(best, objective: str) -> str:
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(_fmt(v))}</td></tr>" for k, v in best.params.items())
    return (f"<h2>Best trial: {best.number}, {_e(objective)} = {best.value:.4g}</h2>"
            f"<table><tr><th>setting</th><th>value</th></tr>{rows}</table>")


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _confirm(client: MlflowClient, parent_run_id: str, tmp: Path) -> str:
    """The confirm tables (same epochs, same time) and plot, when `confirm=true` has run."""
    try:
        results = json.loads(Path(client.download_artifacts(parent_run_id, "confirm.json", str(tmp))).read_text())
        plot = Path(client.download_artifacts(parent_run_id, "confirm.png", str(tmp)))
    except (MlflowException, OSError):
        return "<h2>Confirmation</h2><p>Not run yet: <code>python -m ganstudy.sweep confirm=true</code>.</p>"
    if "best" in results:  # written before the equal-time comparison existed
        results = {"equal_epochs": results}
    for summary in comparisons(results).values():
        if "n" not in next(iter(summary.values())):  # written with a bootstrap interval: the t-interval instead
            against_reference(summary)
    titles = {"equal_epochs": "the same epochs",
              "equal_time": f"the same wall-clock time, {results.get('time_budget')} s a run"}
    head = ("<tr><th>settings</th><th>mean ± std</th><th>seeds</th><th>best / this</th><th>95% t-interval</th>"
            "<th>Welch p</th><th>epochs</th><th>updates</th><th>images</th><th>seconds</th><th>failed</th></tr>")
    tables = "".join(f"<h3>At {titles[name]}</h3><table>{head}"
                     + "".join(_confirm_row(arm, s, next(iter(results[name].values()))["n"])
                             for arm, s in results[name].items()) + "</table>"
                     for name in titles if name in results)
    return (f"<h2>Confirmation: the best settings against the others, over seeds</h2>{tables}"
            f"{_figure(plot, 'one dot per seed')}")


def _detection(client: MlflowClient, parent_run_id: str, tmp: Path) -> str:
    """The detection study's answer and heatmaps, when `python -m ganstudy.detection` has run."""
    try:
        folder = Path(client.download_artifacts(parent_run_id, "detection", str(tmp)))
        results = json.loads((folder / "detection.json").read_text())
    except (MlflowException, OSError):
        return "<h2>Detection</h2><p>Not run yet: <code>python -m ganstudy.detection</code>.</p>"
    det = results["detector"]
    rows = [("all unseen generators", det["pooled"])]
    if "pooled_matched" in det:  # not in a detection.json written before the histogram term
        rows.append(("the same fakes with real digits' histograms", det["pooled_matched"]))
    rows += [(f"trained without the {arm} arm, on it", s) for arm, s in results["held_out_arms"].items()]
    body = "".join(f"<tr><td>{_e(name)}</td>" + "".join(f"<td class='num'>{s[k]:.3f}</td>" for k in
                   ("auc", "ap", "acc_05", "acc", "reals_called_real", "fakes_caught")) + "</tr>" for name, s in rows)
    d = results["d_by_g"]
    cross = "" if d["cross_auc"] is None else f", on the other generators' fakes {d['cross_auc']:.3f}"
    return (f"<h2>Detection: the discriminator and a detector against generators they never saw</h2>"
            f"<p>Threshold {det['threshold']:.3g}, calibrated on held-out training generators; expected "
            f"calibration error {det['ece']:.3f}. Each run's discriminator: AUC {d['own_auc']:.3f} on its own "
            f"generator's fakes{cross} (means).</p><table><tr><th>test</th><th>AUC</th><th>AP</th>"
            f"<th>accuracy at 0.5</th><th>accuracy</th><th>reals called real</th><th>fakes caught</th></tr>{body}"
            "</table>" + "".join(_figure(folder / name, caption) for name, caption in (
                ("detector.png", "The detector per unseen generator"), ("d_by_g.png", "D x G"),
                ("reliability.png", "Reliability")) if (folder / name).exists()))


def _confirm_row(arm: str, s: dict, n_best: int) -> str:
    ci = interval(s, n_best)
    failed = ", ".join(f"seed {seed}: {why}" for seed, why in s.get("failed", {}).items())
    mean = "" if s["mean"] is None else f"{s['mean']:.4g} ± {s['std']:.2g}"
    spent = "".join(f"<td class='num'>{fmt(s.get('budget', {}).get(k), '.0f')}</td>" for k in BUDGETS)
    return (f"<tr><td>{_e(arm)}</td><td class='num'>{mean}</td><td class='num'>{len(s['values'])}</td>"
            f"<td class='num'>{fmt(s.get('ratio'), '.3f')}</td><td class='num'>{ci}</td>"
            f"<td class='num'>{fmt(s.get('p_value'), '.3g')}</td>{spent}<td>{_e(failed)}</td></tr>")


def _side_by_side(client: MlflowClient, top: list, objective: str, tmp: Path) -> str:
    """The top trials as columns: value, settings, last sample grid and the training GIF."""
    keys = sorted({k for t in top for k in t.params})
    head = "".join(f"<th>trial {t.number}</th>" for t in top)
    value = "".join(f"<td class='num'>{t.value:.4g}</td>" for t in top)
    settings = "".join(f"<tr><td>{_e(k)}</td>" + "".join(f"<td>{_e(_fmt(t.params.get(k, '')))}</td>" for t in top)
                       + "</tr>" for k in keys)
    pictures = [_trial_pictures(client, t, tmp) for t in top]
    grids = "".join(f"<td>{grid}</td>" for grid, _ in pictures)
    gifs = "".join(f"<td>{gif}</td>" for _, gif in pictures)
    return (f"<h2>Top {len(top)} complete trials</h2><table><tr><th></th>{head}</tr>"
            f"<tr><td>{_e(objective)}</td>{value}</tr>{settings}<tr><td>last grid</td>{grids}</tr>"
            f"<tr><td>training</td>{gifs}</tr></table>")


def _trial_pictures(client: MlflowClient, trial, tmp: Path) -> tuple[str, str]:
    """The trial's last sample grid and its training GIF as <img> tags ('' for one the run lacks)."""
    run_id = trial.user_attrs.get(RUN_ATTR)
    try:
        names = [a.path for a in client.list_artifacts(run_id, "samples")] if run_id else []
        wanted = (sorted(n for n in names if n.endswith(".png"))[-1:], [n for n in names if n.endswith(".gif")])
        return tuple(_img(Path(client.download_artifacts(run_id, found[0], str(tmp / run_id))), found[0])
                     if found else "" for found in wanted)
    except (MlflowException, OSError):
        return "", ""


def trial_outcomes(trials: list) -> list[float]:
    """Each ended trial's value (study_results.last_value), in trial order."""
    return [last_value(t) for t in trials if ended(t)]


def _expected_best(values: list[float], minimize: bool, objective: str, out: Path) -> Path:
    from matplotlib.figure import Figure

    from ganstudy.stats import best_of_k_range, expected_best

    ks = range(1, len(values) + 1)
    mean = [expected_best(values, k, minimize)[0] for k in ks]
    low, high = np.array([best_of_k_range(values, k, minimize) for k in ks]).T
    fig = Figure(figsize=(6, 3.4))
    ax = fig.subplots()
    ax.plot(ks, mean, marker="o", markersize=3, label="expected best")
    ax.fill_between(ks, low, high, alpha=0.25, label="10th-90th percentile of the best of k")
    ax.set(xlabel="trials k", ylabel=f"expected best {objective}", yscale="log")
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    return out


def _d_curves(top: list, out: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.8))
    ax = fig.subplots()
    for i, t in enumerate(top):
        run_id = t.user_attrs.get(RUN_ATTR)
        for metric, style in (("d_real", "-"), ("d_fake", "--")):
            points = metric_series(run_id, metric) if run_id else []
            if points:
                ax.plot(*zip(*points), style, color=f"C{i}", label=f"trial {t.number} {'D(x)' if metric == 'd_real' else 'D(G(z))'}")
    ax.axhline(0.5, color="grey", linestyle=":")
    ax.set(xlabel="epoch", ylabel="mean sigmoid(D)", ylim=(0, 1), title="D(x) solid, D(G(z)) dashed; 0.5: D cannot tell")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="x-small", ncol=2)
    else:  # a study read from its storage alone, without the tracking store that holds its runs
        ax.text(0.5, 0.5, "no trial's run is in this tracking store", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    return out
