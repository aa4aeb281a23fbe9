"""The study's pictures (ganstudy.study_plots, comparison_view.plot) show what the docs say they show, at a size a
page can show them: pruned trials included and labelled, shared and plain log axes, ranges the trials reached."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import optuna
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "docs" / "study"
PAGE_WIDTH = 830  # px: about what GitHub's page column shows of a picture at its own size


@pytest.fixture(scope="module")
def shipped():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name="ganstudy-default", storage=f"sqlite:///{STUDY / 'ganstudy-default.optuna.db'}")


def test_the_committed_studys_pictures_fit_a_page_and_are_small(shipped, tmp_path):
    from ganstudy.study_plots import PICTURES, draw_all

    drawn = draw_all(shipped, tmp_path, "fid_best")
    assert [p.stem for p in drawn] == list(PICTURES)
    for path in drawn:
        with Image.open(path) as image:
            assert image.width <= PAGE_WIDTH and image.mode == "P", (path.name, image.size, image.mode)


def test_pruned_trials_are_shown_with_their_last_value_and_labelled(shipped, tmp_path):
    """The history and the settings show every ended trial, not only the 3 complete ones; the learning curves
    label each curve with its trial (close ends merged into one label)."""
    import matplotlib

    matplotlib.use("Agg")
    from ganstudy import study_plots

    complete, pruned = study_plots.ended(shipped)
    assert (len(complete), len(pruned)) == (3, 9)
    assert study_plots.last_value(shipped.trials[0]) == pytest.approx(180.52, abs=0.01)  # pruned at epoch 6
    texts = []
    original = study_plots._merged_labels

    def spy(ends, ax, **kwargs):
        merged = original(ends, ax, **kwargs)
        texts.extend(text for _, _, text in merged)
        assert ax.get_yscale() == "log"
        return merged

    study_plots._merged_labels = spy
    try:
        study_plots.learning_curves(shipped, tmp_path / "curves.png")
    finally:
        study_plots._merged_labels = original
    labelled = sorted(int(n) for text in texts for n in text.split(", "))
    assert labelled == list(range(12))  # every trial, once
    assert "1, 3, 6, 10" in texts  # four curves that end within a few pixels at epoch 2: one label


def test_log_value_axis_uses_plain_numbers():
    from matplotlib.figure import Figure

    from ganstudy.study_plots import log_value_axis

    ax = Figure().subplots()
    log_value_axis(ax, [41.3, 466.3])
    ticks = [t for t in ax.get_yticks() if ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    assert ticks == [40, 60, 100, 150, 200, 300, 400]
    assert ax.yaxis.get_major_formatter()(100, 0) == "100"


def test_the_confirm_plot_shares_one_value_axis_between_its_panels():
    from ganstudy.comparison_view import figure

    results = json.loads((STUDY / "confirm.json").read_text())
    fig = figure(results, "fid_best")
    axes = fig.get_axes()
    assert len(axes) == 2 and axes[0].get_ylim() == axes[1].get_ylim()
    assert fig.get_figwidth() * 100 <= PAGE_WIDTH
    low, high = axes[0].get_ylim()
    every = [v for name in ("equal_epochs", "equal_time") for arm in results[name].values() for v in arm["values"]]
    assert low <= min(every) and max(every) <= high


def test_the_range_of_the_best_of_k_stays_within_what_the_trials_reached():
    """The band drawn around the expected best of k: the 10th-90th percentile of the best of k trials, each a
    value the trials reached (a mean ± std band went below the real-image floor); checked by simulation."""
    from ganstudy.stats import best_of_k_range, expected_best

    values = [41.3, 48.2, 58.3, 100.4, 116.4, 124.3, 180.5, 399.8, 447.9, 449.0, 449.7, 466.3]  # the shipped study
    rng = np.random.default_rng(0)
    for k in (1, 2, 5, 12):
        low, high = best_of_k_range(values, k)
        assert low in values and high in values and low <= expected_best(values, k)[0] <= high
        draws = rng.choice(values, size=(20000, k)).min(axis=1)
        assert (draws < low).mean() <= 0.1 + 0.01 and (draws > high).mean() <= 0.1 + 0.01
        assert (draws <= low).mean() >= 0.1 - 0.01 and (draws >= high).mean() >= 0.1 - 0.01
    mean, std = expected_best(values, 2)
    assert mean - std < 10 < min(values) <= best_of_k_range(values, 2)[0]  # the old band's floor, and the new one's
    assert best_of_k_range([1.0, 2.0, 3.0], 1, minimize=False) == (1.0, 3.0)
