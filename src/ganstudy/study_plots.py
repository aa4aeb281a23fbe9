"""The study's pictures as PNG, read from its Optuna storage alone: the optimization history, the learning
curves (what the pruner saw) and each setting against the objective. Unlike Optuna's matplotlib plots, a
pruned trial is shown too (with the last value it reported, marked apart from the complete trials), the value
axis is logarithmic (FID spans 40 to 470 in the default study; the pruner decides in the 40-120 band) and every
curve is labelled with its trial. The study page (report._plots) and docs/study_figures.py draw them."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from ganstudy.images import small_png
from ganstudy import study_results
from ganstudy.study_results import last_value

DPI = 100
COMPLETE = {"marker": "o", "color": "C0", "s": 36, "zorder": 3}
PRUNED = {"marker": "o", "facecolors": "none", "edgecolors": "0.45", "s": 30, "linewidths": 1.1, "zorder": 2}


def ended(study) -> tuple[list, list]:
    """(the complete trials, the pruned trials that reported a value), each in trial order."""
    trials = [t for t in study.get_trials(deepcopy=False) if study_results.ended(t)]
    return [t for t in trials if t.state == TrialState.COMPLETE], [t for t in trials if t.state == TrialState.PRUNED]


def objective_name(study, default: str = "objective") -> str:
    """The objective's name, as the study recorded it when it was made (a study made before it did: default)."""
    from ganstudy.storage import IDENTITY_ATTR

    return study.user_attrs.get(IDENTITY_ATTR, {}).get("objective", default)


def plain_style(draw):
    """Draw in matplotlib's default style, whatever style an earlier plot set (Optuna's set ggplot globally)."""
    import functools

    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        import matplotlib.style

        with matplotlib.style.context("default"):
            return draw(*args, **kwargs)

    return drawn


def log_value_axis(ax, values, axis: str = "y", most: int = 8) -> None:
    """A log axis over these values with plain numbers (40, 60, 100, 200, 400), not powers of ten: the finest
    of a few 1-2-3-5-like series that puts at most `most` labels on it."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    lo, hi = min(values) / 1.12, max(values) * 1.12
    getattr(ax, f"set_{axis}scale")("log")
    getattr(ax, f"set_{axis}lim")(lo, hi)
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    for series in ((1, 1.5, 2, 3, 4, 5, 6, 8), (1, 1.5, 2, 3, 4, 6), (1, 2, 3, 4, 6), (1, 2, 3, 5), (1, 2, 5), (1, 3), (1,)):
        ticks = [m * 10.0 ** e for e in decades for m in series if lo <= m * 10.0 ** e <= hi]
        if len(ticks) <= most:
            break
    target = getattr(ax, f"{axis}axis")
    target.set_major_locator(FixedLocator(ticks))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


@plain_style
def history(study, out: Path, objective: str | None = None) -> Path:
    """Each trial's value against its number (a pruned trial's last reported value, hollow) and the best
    complete value so far."""
    from matplotlib.figure import Figure

    complete, pruned = ended(study)
    objective = objective or objective_name(study)
    fig = Figure(figsize=(7.2, 4.2))
    ax = fig.subplots()
    if complete:
        ax.scatter([t.number for t in complete], [t.value for t in complete], label="complete trial: its value", **COMPLETE)
    if pruned:
        stops = sorted({max(t.intermediate_values) for t in pruned})
        ax.scatter([t.number for t in pruned], [last_value(t) for t in pruned], **PRUNED,
                   label=f"pruned trial: its value when stopped (epoch {', '.join(map(str, stops))})")
    if complete:
        numbers = [t.number for t in study.get_trials(deepcopy=False)]
        better = min if study.direction.name == "MINIMIZE" else max
        best, xs, ys = None, [], []
        for t in sorted(complete, key=lambda t: t.number):
            best = t.value if best is None else better(best, t.value)
            xs.append(t.number)
            ys.append(best)
        xs.append(max(numbers))
        ys.append(ys[-1])
        ax.step(xs, ys, where="post", color="C3", alpha=0.8, label="best complete value so far")
        top = study.best_trial
        ax.annotate(f"trial {top.number}: {top.value:.1f}", (top.number, top.value), textcoords="offset points",
                    xytext=(8, 5), fontsize=9, color="C3")
    values = [last_value(t) for t in complete + pruned]
    if values:
        log_value_axis(ax, values)
    ax.set_xticks(range(0, max((t.number for t in study.get_trials(deepcopy=False)), default=0) + 1))
    ax.set(xlabel="trial", ylabel=f"{objective} (log scale)", title="Optimization history")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8.5, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    return small_png(out)


def _merged_labels(ends: list[tuple[float, float, str]], ax, min_gap_px: float = 11) -> list[tuple[float, float, str]]:
    """End labels (x, y, text) of curves ending at the same x with values too close to read apart: merged into
    one label at their middle ("1, 3, 6")."""
    out = []
    for x in sorted({e[0] for e in ends}):
        here = sorted((e for e in ends if e[0] == x), key=lambda e: e[1])
        groups: list[list] = []
        for e in here:
            y_px = ax.transData.transform((x, e[1]))[1]
            if groups and y_px - groups[-1][-1][3] < min_gap_px:
                groups[-1].append((*e, y_px))
            else:
                groups.append([(*e, y_px)])
        for g in groups:
            ys = [e[1] for e in g]
            out.append((x, float(np.exp(np.mean(np.log(ys)))), ", ".join(sorted((e[2] for e in g), key=int))))
    return out


@plain_style
def learning_curves(study, out: Path, objective: str | None = None) -> Path:
    """What the pruner saw: every trial's reported values by epoch on a log axis, each curve labelled with its
    trial at its end; a complete trial's end a dot, a pruned trial's a cross; the epochs where trials were
    stopped (the pruner's rungs) dotted."""
    from matplotlib.figure import Figure

    complete, pruned = ended(study)
    objective = objective or objective_name(study)
    fig = Figure(figsize=(7.2, 4.6))
    ax = fig.subplots()
    values = [v for t in complete + pruned for v in t.intermediate_values.values()]
    steps = sorted({s for t in complete + pruned for s in t.intermediate_values})
    if values:
        log_value_axis(ax, values)
    ax.set_xlim(min(steps, default=0) - 0.4, max(steps, default=1) + 1.6)  # room for the end labels
    for stop in sorted({max(t.intermediate_values) for t in pruned}):
        ax.axvline(stop, color="0.6", linestyle=":", linewidth=1)
    ends = []
    for i, t in enumerate(complete):
        x, y = zip(*sorted(t.intermediate_values.items()))
        ax.plot(x, y, "-o", color=f"C{i % 10}", markersize=3, linewidth=1.8,
                label=f"trial {t.number}: {t.value:.1f} (complete)")
        ends.append((x[-1], y[-1], str(t.number)))
    for j, t in enumerate(pruned):
        x, y = zip(*sorted(t.intermediate_values.items()))
        ax.plot(x, y, "--", color="0.55", linewidth=1, label="pruned trials (× where stopped)" if j == 0 else None)
        ax.plot(x[-1], y[-1], "x", color="0.35", markersize=6)
        ends.append((x[-1], y[-1], str(t.number)))
    fig.tight_layout()  # the axes' final size: the labels are merged in pixels
    for x, y, text in _merged_labels(ends, ax):
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(5, 0), va="center", fontsize=8.5,
                    bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})
    ax.set_xticks(steps)
    ax.set(xlabel="epoch (dotted: where pruned trials were stopped)", ylabel=f"{objective} so far (log scale)",
           title="Learning curves: what the pruner saw (labels: trial numbers)")
    ax.grid(alpha=0.3, which="major")
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(out, dpi=DPI)
    return small_png(out)


def _short(v: float) -> str:
    """1e-4, 3e-4, 0.001 -> 1e-3: short tick labels for a log axis of small numbers."""
    if v >= 0.01 or v == 0:
        return f"{v:g}"
    mantissa, exponent = f"{v:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"


@plain_style
def settings(study, out: Path, objective: str | None = None, columns: int = 3) -> Path:
    """Each setting against the objective, one panel a setting (a log axis for a log-scaled range, the choices
    for a categorical one): complete trials filled, pruned ones hollow at the last value they reported."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

    complete, pruned = ended(study)
    objective = objective or objective_name(study)
    trials = complete + pruned
    names = sorted({k for t in trials for k in t.params})
    rows = max(1, math.ceil(len(names) / columns))
    fig = Figure(figsize=(8.2, 2.25 * rows + 0.5))
    axes = fig.subplots(rows, columns, sharey=True, squeeze=False)
    values = [last_value(t) for t in trials]
    for ax, name in zip(axes.flat, names):
        dist = next(t.distributions[name] for t in trials if name in t.distributions)
        for group, style in ((complete, COMPLETE), (pruned, PRUNED)):
            shown = [t for t in group if name in t.params]
            if isinstance(dist, CategoricalDistribution):
                index = {c: i for i, c in enumerate(dist.choices)}
                xs = [index[t.params[name]] + 0.22 * ((t.number * 0.618) % 1 - 0.5) for t in shown]  # spread
            else:
                xs = [t.params[name] for t in shown]
            ax.scatter(xs, [last_value(t) for t in shown], **style)
        if isinstance(dist, CategoricalDistribution):
            ax.set_xticks(range(len(dist.choices)), [c if isinstance(c, str) else f"{c:g}" for c in dist.choices])
            ax.set_xlim(-0.5, len(dist.choices) - 0.5)
        elif isinstance(dist, (FloatDistribution, IntDistribution)) and dist.log:
            ax.set_xscale("log")
            ax.set_xlim(dist.low / 1.3, dist.high * 1.3)
            ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(dist.low)), math.ceil(math.log10(dist.high)) + 1)
                     for m in (1, 3) if dist.low <= m * 10.0 ** e <= dist.high]
            ax.xaxis.set_major_locator(FixedLocator(ticks))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            span = dist.high - dist.low
            ax.set_xlim(dist.low - 0.05 * span, dist.high + 0.05 * span)
            ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.set_title(name, fontsize=9.5)
        ax.tick_params(labelsize=8.5)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(names):]:
        ax.set_visible(False)
    if values:
        log_value_axis(axes[0, 0], values)
    for row in axes:
        row[0].set_ylabel(f"{objective} (log)", fontsize=9)
    handles = [axes.flat[0].scatter([], [], **COMPLETE), axes.flat[0].scatter([], [], **PRUNED)]
    fig.legend(handles, ["complete trial", "pruned trial (its value when stopped)"], loc="upper center", ncol=2,
               fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))
    fig.savefig(out, dpi=DPI)
    return small_png(out)


def importances(study, out: Path, objective: str | None = None) -> Path:
    """Optuna's fANOVA parameter importances (complete trials only), as Optuna draws them."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as vis_mpl

    with matplotlib.rc_context():  # Optuna sets the ggplot style for good: only for this picture
        ax = vis_mpl.plot_param_importances(study)
        ax.figure.savefig(out, dpi=90, bbox_inches="tight")
        plt.close("all")
    return small_png(out)


PICTURES = {"optimization_history": history, "param_importances": importances,
            "intermediate_values": learning_curves, "slice": settings}


def draw_all(study, folder: Path, objective: str | None = None) -> list[Path]:
    """PICTURES as folder/NAME.png (the value axes named `objective`, or as the study records it); one the
    study cannot draw yet (too few trials) is skipped."""
    import warnings

    folder.mkdir(parents=True, exist_ok=True)
    complete, pruned = ended(study)
    drawn = []
    for name, draw in PICTURES.items():
        if not complete and not pruned or name == "param_importances" and len(complete) < 2:
            continue  # fANOVA needs two complete trials
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                drawn.append(draw(study, folder / f"{name}.png", objective))
        except (ValueError, RuntimeError, ZeroDivisionError):
            pass
    return drawn
