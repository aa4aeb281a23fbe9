"""Where users look: the MLflow UI's links and views in a real browser, the offline study page, optuna-dashboard."""
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from conftest import free_port, load, serve
from ganstudy.tracking import ui_hint

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def test_ui_hint_opens_the_model_training_view_locally_or_on_the_server():
    assert ui_hint("sqlite:///mlruns/mlflow.db", "3", "abc") == (
        "  see it: mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db\n"
        "          then open http://127.0.0.1:5000/#/experiments/3/runs/abc?workflowType=machine_learning")
    assert ui_hint("http://tracking.lan:5000/", "7") == (
        "  see it: http://tracking.lan:5000/#/experiments/7?workflowType=machine_learning")


def test_a_study_without_its_runs_gets_a_d_curve_picture_that_says_so(tmp_path):
    """A study read from its storage alone (docs/study_figures.py on a committed storage): its trials name no run
    in this tracking store; the D(x)/D(G(z)) picture says so instead of warning about an empty legend."""
    import warnings
    from types import SimpleNamespace

    from ganstudy.study_page import _d_curves

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = _d_curves([SimpleNamespace(number=0, user_attrs={})], tmp_path / "d.png")
    assert out.read_bytes().startswith(b"\x89PNG")


def test_the_study_page_gives_a_t_interval_with_its_n_even_for_a_bootstrap_era_confirm(tmp_path):
    """docs/study/confirm.json was written with percentile-bootstrap intervals and no n: the page restates each
    opponent's interval as the t-interval of its values, with n."""
    from scipy.stats import t as student_t

    from ganstudy.study_page import _confirm

    study = Path(__file__).parent.parent / "docs" / "study"

    class Artifacts:  # the study run's artifacts: the committed confirm.json and confirm.png
        def download_artifacts(self, run_id, path, dst):
            return shutil.copy(study / path, dst)

    html = _confirm(Artifacts(), "run", tmp_path)
    saved = json.loads((study / "confirm.json").read_text())
    for name in ("equal_epochs", "equal_time"):
        a, b = (np.array(saved[name][arm]["values"]) for arm in ("best", "quick"))
        va, vb = a.var(ddof=1) / (3 * a.mean() ** 2), b.var(ddof=1) / (3 * b.mean() ** 2)
        half = student_t.ppf(0.975, (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)) * np.sqrt(va + vb)
        ratio = a.mean() / b.mean()
        assert f"{ratio * np.exp(-half):.3f}–{ratio * np.exp(half):.3f}, n = 3" in html
        old = saved[name]["quick"]["ratio_ci"]
        assert f"{old[0]:.3f}–{old[1]:.3f}" not in html  # the bootstrap's, narrower
    assert "<th>95% t-interval</th>" in html
    # a record of today's confirm carries n: shown as it is, an arm of 2 seeds beside the reference's 3
    from ganstudy.stats import summarize

    saved["equal_epochs"] = summarize({arm: {seed: ({"objective": v}, None) for seed, v in enumerate(values, 1)}
                                       for arm, values in (("best", [30.0, 33.0, 35.0]), ("quick", [60.0, 66.0]))})
    saved["equal_epochs"]["quick"]["ratio_ci"] = [0.25, 0.75]
    study = tmp_path / "today"
    study.mkdir()
    (study / "confirm.json").write_text(json.dumps(saved))
    shutil.copy(Path(__file__).parent.parent / "docs" / "study" / "confirm.png", study)
    assert "0.250–0.750, n = 3 and 2" in _confirm(Artifacts(), "run", tmp_path)


def chromium(*args: str, budget_ms: int = 30000) -> str:
    """Headless Chromium's output (--dump-dom: the DOM after the page's scripts ran). Everything but loopback
    goes to a proxy that is not there: no network."""
    out = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--proxy-server=127.0.0.1:9",
                          f"--virtual-time-budget={budget_ms}", *args],
                         capture_output=True, text=True, timeout=180)
    return out.stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")
def test_printed_links_open_the_runs_and_the_study_page_works_offline(tiny_study, tmp_path):
    store = f"sqlite:///{tiny_study}/mlflow.db"
    port = free_port()
    ui = serve([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store, "--host", "127.0.0.1",
                "--port", str(port), "--workers", "1"], f"http://127.0.0.1:{port}/health")
    try:
        printed = re.findall(r"then open (\S+)", (tiny_study / "sweep.log").read_text())
        assert printed, "the sweep printed no link"
        link = printed[-1].replace("127.0.0.1:5000", f"127.0.0.1:{port}")  # the study's parent run
        dom = chromium("--dump-dom", link)
        assert "study tiny" in dom and "Model metrics" in dom
        assert "Evaluations" not in dom  # the GenAI view's run page
        runs_view = chromium("--dump-dom", link.split("/runs/")[0] + "?workflowType=machine_learning")
        # The runs table (trials nest, collapsed, under the study's run), not the GenAI overview.
        assert "Run Name" in runs_view and "study tiny" in runs_view and "Latency" not in runs_view
    finally:
        os.killpg(ui.pid, 15)
        ui.wait(30)
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("ganstudy").experiment_id
    parent = next(r for r in client.search_runs([experiment]) if r.info.run_name == "study tiny")
    page = Path(client.download_artifacts(parent.info.run_id, "report/index.html", str(tmp_path)))
    dom = chromium("--dump-dom", page.as_uri(), budget_ms=5000)
    assert "<table" in dom and "Best trial" in dom and dom.count("src=\"data:image/png;base64,") >= 4
    shot = tmp_path / "page.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,1600", page.as_uri(), budget_ms=5000)
    assert shot.stat().st_size > 20_000  # tables and pictures, not a blank page


@pytest.mark.slow
def test_optuna_dashboard_reads_the_study_storage(tiny_study):
    """The README's command, `optuna-dashboard STORAGE`, serves the study: its trials and best trial."""
    command = shutil.which("optuna-dashboard", path=str(Path(sys.executable).parent))
    assert command, "optuna-dashboard is not installed (pip install -e '.[dashboard]')"
    port = free_port()
    api = f"http://127.0.0.1:{port}/api/studies"
    dashboard = serve([command, f"sqlite:///{tiny_study}/optuna.db", "--host", "127.0.0.1", "--port", str(port)], api)
    try:
        studies = json.load(urllib.request.urlopen(api, timeout=30))["study_summaries"]
        (tiny,) = [s for s in studies if s["study_name"] == "tiny"]
        detail = json.load(urllib.request.urlopen(f"{api}/{tiny['study_id']}?after=0", timeout=60))
        study = load(tiny_study)
        assert len(detail["trials"]) == len(study.get_trials()) == 4
        assert [t["number"] for t in detail["best_trials"]] == [study.best_trial.number]
    finally:
        os.killpg(dashboard.pid, 15)
        dashboard.wait(30)
