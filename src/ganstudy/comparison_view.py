"""How a comparison is shown: its table and verdicts on the console, and its plot (each arm's seeds and
mean ± std)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from ganstudy.study_results import comparisons, fmt, interval


def plot(results: dict, objective: str, out: Path) -> Path:
    """Each arm's seeds and mean ± std, one panel per comparison, on one log axis that the panels share (30
    against 60 stays visible beside 450, and a value reads the same in every panel); plain tick labels."""
    from ganstudy.images import small_png

    figure(results, objective).savefig(out, dpi=100)
    return small_png(out)


def figure(results: dict, objective: str):
    """plot's matplotlib Figure."""
    from matplotlib.figure import Figure

    from ganstudy.study_plots import log_value_axis

    shown = comparisons(results)
    arms = max(len(summary) for summary in shown.values())
    many = arms > 4  # long arm names (an ablation's levers) are slanted, and the panel widens with them
    fig = Figure(figsize=(max(4.1, 1.1 * arms + 0.6) * len(shown), 4.2 if many else 3.5))
    axes = fig.subplots(1, len(shown), squeeze=False, sharey=True)[0]
    values = []
    for ax, (name, summary) in zip(axes, shown.items()):
        for i, (arm, s) in enumerate(summary.items()):
            if s["values"]:
                ax.errorbar(i, s["mean"], yerr=s["std"], fmt="o", capsize=8, markersize=8)
                ax.scatter(np.full(len(s["values"]), i + 0.12), s["values"], color="grey", s=14,
                           label="one seed" if i == 0 else None)
                values += [*s["values"], s["mean"] - s["std"], s["mean"] + s["std"]]
        ax.set_xticks(range(len(summary)), [arm if many else f"{arm} settings" for arm in summary],
                      rotation=25 if many else 0, ha="right" if many else "center")
        ax.set(title=title(name, results.get("time_budget")))
        ax.set_xlim(-0.6, len(summary) - 0.4)
        ax.grid(alpha=0.3, axis="y")
    positive = [v for v in values if v > 0]
    if positive:
        log_value_axis(axes[0], positive)
    else:
        axes[0].set_yscale("log")
    axes[0].set_ylabel(f"{objective} (log scale)")
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize="small")
    fig.tight_layout()
    return fig


def title(name: str, seconds) -> str:
    return "same epochs" if name == "equal_epochs" else f"same wall-clock time ({seconds} s)"


def print_table(summary: dict, spec: DictConfig, name: str = "equal_epochs", seconds=None) -> None:
    """The comparison's table and a verdict per arm against the first (the reference); each interval with the
    seeds it rests on (n)."""
    reference = next(iter(summary))
    width = max(10, *map(len, summary))
    print(f"\n{title(name, seconds)}:\n{'settings':<{width}} {spec.objective + ' mean':>16} {'std':>10} {'seeds':>6} "
          f"{reference + '/this':>12} {'95% t-interval':>24} {'Welch p':>9} {'epochs':>7} {'updates':>8} {'images':>9} "
          f"{'seconds':>8}  failed")
    for arm, s in summary.items():
        ci = interval(s, summary[reference]["n"], "-")
        b = s.get("budget", {})
        failed = ", ".join(f"seed {seed}" for seed in s["failed"])
        print(f"{arm:<{width}} {fmt(s['mean'], '>16.4g'):>16} {fmt(s['std'], '>10.3g'):>10} {len(s['values']):>6} "
              f"{fmt(s.get('ratio'), '.3f'):>12} {ci:>24} {fmt(s.get('p_value'), '.3g'):>9} "
              f"{fmt(b.get('epochs'), '.0f'):>7} {fmt(b.get('updates'), '.0f'):>8} {fmt(b.get('images'), '.0f'):>9} "
              f"{fmt(b.get('train_seconds'), '.0f'):>8}  {failed}")
    for arm, s in list(summary.items())[1:]:
        if s["ratio"] is None:
            print(f"{reference} vs {arm}: no ratio (an arm has no seed that counted)")
            continue
        difference = summary[reference]["mean"] - s["mean"]  # a ratio flips its meaning for values <= 0
        better = difference < 0 if spec.direction == "minimize" else difference > 0
        evidence = "" if s.get("p_value") is None else f", Welch t-test p = {s['p_value']:.3g}"
        ci = ("95% t-interval " if s.get("ratio_ci") else "") + interval(s, summary[reference]["n"], "-")
        print(f"{reference} vs {arm}: ratio {s['ratio']:.3f} ({'better' if better else 'not better'} for a "
              f"{spec.direction}d objective, {ci}{evidence})")
    for arm, s in summary.items():
        for seed, why in s["failed"].items():
            print(f"failed: {arm} seed {seed}: {why}")
