"""The docs' pictures of a study, each cropped to what it shows and sized to be read where the docs show it:
in the MLflow UI, the best trial's run page (`Model metrics` tab, filtered to a few epoch metrics:
ui_run_page.png), its `samples` chart at its last step with the step slider (ui_samples_slider.png) and the two
best trials' grids at the same step in the runs view's chart mode (ui_compare_grids.png); and the study page's
top trials side by side (study_page.png).

    python docs/ui_screenshots.py --store sqlite:///mlruns/mlflow.db --study ganstudy-default [--out DIR]
                                  [--storage sqlite:///mlruns/optuna.db]

--out docs replaces the committed pictures (default: outputs/ui_screenshots). The study page is the study run's
report/index.html; with --storage it is drawn afresh from that Optuna storage (its trials' runs in --store).
The best trials are the study's finished trial runs in --store with the lowest fid_best.

Needs Debian's chromium and chromium-driver and `pip install selenium`: Chromium waits for the charts in real
time (its --virtual-time-budget leaves the lazily loaded images as spinners).
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

from mlflow.tracking import MlflowClient

from ganstudy.images import small_png

RUN_PAGE_METRICS = ("fid_best", "mnist_score", "recall", "d_auc", "d_real", "d_fake")  # on the run page's picture


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ui(store: str, port: int) -> subprocess.Popen:
    ui = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store, "--host", "127.0.0.1",
                           "--port", str(port), "--workers", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                          start_new_session=True)
    for _ in range(180):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
            return ui
        except OSError:
            time.sleep(1)
    raise SystemExit("mlflow ui did not start")


def browser(height: int):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size=1300,{height}"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def click(driver, xpath: str, wait: float = 5) -> None:
    from selenium.webdriver.common.by import By

    driver.execute_script("arguments[0].click();", driver.find_element(By.XPATH, xpath))
    time.sleep(wait)


def run_page(driver, out: Path, metrics: tuple[str, ...] = RUN_PAGE_METRICS) -> None:
    """The run page's `Model metrics` tab with its charts filtered by the search box to `metrics` (a regular
    expression), cut from the page's title to the last of their charts (the `samples` chart, which the search
    does not filter, below them left out)."""
    import io

    from PIL import Image
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    search = WebDriverWait(driver, 120).until(expected_conditions.presence_of_element_located(
        (By.XPATH, "//input[@placeholder='Search metric charts']")))
    click(driver, "//button[@aria-label='Close']", 2)  # the MLflow Assistant panel
    search.send_keys(f"^({'|'.join(metrics)})$")
    time.sleep(10)
    crumbs = driver.find_elements(By.XPATH, "//a[normalize-space()='ganstudy']")[-1]  # the page's, not the menu's
    cards = [h4.find_element(By.XPATH, "./ancestor::div[.//*[contains(@class, 'main-svg')]][1]")
             for h4 in driver.find_elements(By.XPATH, "//h4") if h4.text.strip() in metrics]
    left, top = rect(driver, crumbs)[:2]
    right = max(rect(driver, c)[2] for c in cards)
    bottom = max(rect(driver, c)[3] for c in cards)
    shot = Image.open(io.BytesIO(driver.get_screenshot_as_png()))
    shot.crop((left - 12, top - 12, right + 12, bottom + 12)).save(out)
    small_png(out)


def samples_at_last_step(driver):
    """Filter the charts to `samples`, open it full size and move its step slider to the last step; the dialog."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    search = WebDriverWait(driver, 120).until(expected_conditions.presence_of_element_located(
        (By.XPATH, "//input[@placeholder='Search metric charts']")))
    click(driver, "//button[@aria-label='Close']", 2)  # the MLflow Assistant panel
    search.send_keys("samples")
    time.sleep(8)
    card = driver.find_element(By.XPATH, "//h4[normalize-space(text())='samples']/ancestor::div[.//input][1]")
    card.find_elements(By.XPATH, ".//button")[0].click()  # full size
    time.sleep(5)
    dialog = driver.find_elements(By.XPATH, "//*[@role='dialog']")[-1]
    slider = dialog.find_element(By.XPATH, ".//*[@role='slider']")
    for _ in range(int(slider.get_attribute("aria-valuemax"))):
        slider.send_keys(Keys.ARROW_RIGHT)
        time.sleep(0.3)
    time.sleep(10)  # the images load
    images = dialog.find_elements(By.XPATH, ".//img")
    driver.execute_script("arguments[0].scrollIntoView({block: 'end'});", images[-1])
    time.sleep(2)
    return dialog


def rect(driver, element) -> tuple[int, int, int, int]:
    r = driver.execute_script("const r = arguments[0].getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom];",
                              element)
    return tuple(round(v) for v in r)


def grids_and_slider(driver, dialog, out: Path, margin: int = 12) -> None:
    """The dialog's pieces that matter, cut from a screenshot and laid out compactly: each run's name (the chart
    legend's) above its grid, the grids side by side, and below them the right end of the step slider with its
    step box, at the screen's scale (shrunk to the grids' width, the step could not be read)."""
    import io

    from PIL import Image
    from selenium.webdriver.common.by import By

    shot = Image.open(io.BytesIO(driver.get_screenshot_as_png()))

    def cut(box, pad=margin):
        return shot.crop((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad))

    panels = []
    for image in dialog.find_elements(By.XPATH, ".//img"):
        panel = image.find_element(By.XPATH, "./ancestor::div[.//*[starts-with(normalize-space(text()), 'trial_')]][1]")
        label = panel.find_element(By.XPATH, ".//*[starts-with(normalize-space(text()), 'trial_')]")
        name, grid = cut(rect(driver, label), 4), cut(rect(driver, image))
        both = Image.new("RGB", (max(name.width, grid.width), name.height + grid.height), "white")
        both.paste(name, (0, 0))
        both.paste(grid, ((both.width - grid.width) // 2, name.height))
        panels.append(both)
    slider = dialog.find_element(By.XPATH, ".//*[@role='slider']/ancestor::div[.//input][1]")
    bar = cut(rect(driver, slider))
    width = max(sum(p.width for p in panels), 300)
    bar = bar.crop((max(0, bar.width - width), 0, bar.width, bar.height))  # the thumb at the last step, the box
    out_image = Image.new("RGB", (width, max(p.height for p in panels) + bar.height), "white")
    x = 0
    for p in panels:
        out_image.paste(p, (x, 0))
        x += p.width
    out_image.paste(bar, (width - bar.width, out_image.height - bar.height))
    out_image.save(out)
    small_png(out)


def study_page_top_trials(client: MlflowClient, study: str, out: Path, storage: str | None = None) -> None:
    """The study page (the parent run's report/index.html, or with `storage` drawn afresh from that Optuna
    storage) from its top trials' heading to the end of their table, in a window that fits the table."""
    import tempfile

    from PIL import Image
    from selenium.webdriver.common.by import By

    with tempfile.TemporaryDirectory() as tmp:
        if storage:
            page = draw_study_page(storage, study, Path(tmp))
        else:
            experiment = client.get_experiment_by_name("ganstudy")
            (parent,) = client.search_runs([experiment.experiment_id], f"tags.`ganstudy.study` = '{study}' and "
                                           "tags.`ganstudy.role` = 'study'", order_by=["attributes.start_time DESC"],
                                           max_results=1)
            page = Path(client.download_artifacts(parent.info.run_id, "report/index.html", tmp))
        driver = browser(3000)
        driver.get(page.as_uri())
        time.sleep(3)
        heading = driver.find_element(By.XPATH, "//h2[starts-with(normalize-space(), 'Top ')]")
        trials = len(heading.find_elements(By.XPATH, "following-sibling::table[1]//tr[1]/th")) - 1
        # The table as narrow as its 200 px grids allow (900 px for 3 trials): read at the docs' width.
        driver.set_window_size(max(900, 270 + 210 * trials), 3000)
        time.sleep(2)
        left, top, _, _ = rect(driver, heading)
        _, _, right, bottom = rect(driver, heading.find_element(By.XPATH, "following-sibling::table[1]"))
        driver.save_screenshot(str(Path(tmp) / "page.png"))
        driver.quit()
        Image.open(Path(tmp) / "page.png").crop((left - 12, top - 12, right + 12, bottom + 12)).save(out)
    small_png(out)


def draw_study_page(storage: str, study_name: str, folder: Path) -> Path:
    """The study page of the study in this Optuna storage, its pictures read from the tracking store in use."""
    import optuna

    from ganstudy import report, study_page
    from ganstudy.study_plots import objective_name

    study = optuna.load_study(study_name=study_name, storage=storage)
    objective = objective_name(study, "fid_best")
    report._plots(study, folder / "report", objective)
    return study_page.write(study, objective, study.user_attrs.get(report.PARENT_ATTR, "none"), folder / "report",
                            folder / "report" / "index.html")


def top_trials(client: MlflowClient, study: str, n: int):
    experiment = client.get_experiment_by_name("ganstudy")
    runs = client.search_runs([experiment.experiment_id], f"tags.`ganstudy.study` = '{study}' and "
                              "tags.`ganstudy.role` = 'trial' and attributes.status = 'FINISHED'",
                              order_by=["metrics.fid_best ASC"], max_results=n)
    return experiment.experiment_id, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite:///mlruns/mlflow.db")
    parser.add_argument("--study", default="ganstudy-default")
    parser.add_argument("--out", type=Path, default=Path("outputs/ui_screenshots"),
                        help="the folder for the pictures (docs: the committed ones)")
    parser.add_argument("--storage", help="draw the study page from this Optuna storage, not the study run's")
    args = parser.parse_args()
    import mlflow

    mlflow.set_tracking_uri(args.store)
    args.out.mkdir(parents=True, exist_ok=True)
    experiment, runs = top_trials(MlflowClient(args.store), args.study, 2)
    port = free_port()
    ui = start_ui(args.store, port)
    base = f"http://127.0.0.1:{port}/#/experiments/{experiment}"
    try:
        driver = browser(1300)
        driver.set_window_size(1000, 1300)  # two rows of three charts, 770 px wide: read at the docs' width
        driver.get(f"{base}/runs/{runs[0].info.run_id}/model-metrics?workflowType=machine_learning")
        time.sleep(15)
        run_page(driver, args.out / "ui_run_page.png")
        driver.quit()
        driver = browser(1300)
        driver.get(f"{base}/runs/{runs[0].info.run_id}/model-metrics?workflowType=machine_learning")
        time.sleep(15)
        grids_and_slider(driver, samples_at_last_step(driver), args.out / "ui_samples_slider.png")
        driver.quit()
        # The runs view's charts, filtered to the two best trials (nested under the study's run: expanded).
        ids = ", ".join(f"'{r.info.run_id}'" for r in runs)
        query = urllib.parse.urlencode({"workflowType": "machine_learning", "compareRunsMode": "CHART",
                                        "searchFilter": f"attributes.run_id IN ({ids})"})
        driver = browser(2750)
        driver.get(f"{base}/runs?{query}")
        time.sleep(15)
        click(driver, "//button[contains(@data-component-id, 'runnamecellrenderer')]")
        grids_and_slider(driver, samples_at_last_step(driver), args.out / "ui_compare_grids.png")
        driver.quit()
    finally:
        os.killpg(ui.pid, 15)
    study_page_top_trials(MlflowClient(args.store), args.study, args.out / "study_page.png", args.storage)
    print("wrote " + ", ".join(str(args.out / name) for name in
                               ("ui_run_page.png", "ui_samples_slider.png", "ui_compare_grids.png", "study_page.png")))


if __name__ == "__main__":
    main()
