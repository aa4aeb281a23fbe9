"""docs/reference.md says what the code records: its tables name every tag and Optuna attribute the code sets, and
every tag, param and metric a study's runs carry; its Python examples run on this project's stores."""
import hashlib
import os
import re
import shutil
import subprocess
import sys

import pytest

from test_docs import ROOT, split_page

PAGE = ROOT / "docs" / "reference.md"
BLOCKS = [block for block in split_page(PAGE)[1] if block.lang == "python"]


def example(marker: str) -> str:
    """The page's one Python example that contains `marker`."""
    (found,) = [b for b in BLOCKS if marker in "\n".join(b.lines)]
    return "\n".join(found.lines) + "\n"


def table(heading: str) -> list[list[str]]:
    """The cells of each row of the table under `## heading`."""
    section = PAGE.read_text(encoding="utf-8").split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip().strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return rows[1:]  # the header


def names(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def patterns(kind: str) -> list[re.Pattern]:
    """The first table's names of one kind (tag, param, metric) as patterns: ARM, <objective> and * stand for
    any arm, objective or rest of a name."""
    def pattern(name: str) -> re.Pattern:
        rx = re.escape(name).replace(r"\*", ".+").replace("ARM", r"[\w.-]+").replace("<objective>", r"\w+")
        return re.compile(rx + "$")

    return [pattern(n) for row in table("Every tag, param and metric") if row[1] == kind for n in names(row[0])]


def test_the_examples_are_found():
    assert len(BLOCKS) == 3 and all(example(m) for m in ("mlflow.search_runs", "trials_dataframe", "delete_study"))


def test_the_tables_name_every_tag_and_attribute_the_code_sets():
    from ganstudy import claims, report, storage, sweep
    from ganstudy.tags import Tag

    tags = {value for key, value in vars(Tag).items() if key.isupper()}
    listed = {n for row in table("Every tag, param and metric") if row[1] == "tag" for n in names(row[0])}
    assert tags - listed == set()
    attributes = {storage.INSTANCE_ATTR, storage.IDENTITY_ATTR, storage.RUN_ATTR, storage.FAIL_ATTR,
                  storage.CREATE_TOKEN, report.PARENT_ATTR, sweep.DIVERGED_ATTR, "overrides", "peak_rss_mb"}
    assert attributes - {n for row in table("What the Optuna study stores") for n in names(row[0])} == set()
    text = PAGE.read_text(encoding="utf-8")
    assert all(f"`{a}`" in text for a in (claims.KEY_ATTR, claims.HOST_ATTR, claims.PID_ATTR))


def test_the_optuna_example_runs_on_the_committed_study(tmp_path, monkeypatch, capsys):
    """As written, on a copy of the shipped study's storage in mlruns/ (which it leaves as it was)."""
    import optuna

    (tmp_path / "mlruns").mkdir()
    db = shutil.copy(ROOT / "docs" / "study" / "ganstudy-default.optuna.db", tmp_path / "mlruns" / "optuna.db")
    before = hashlib.sha1(db.read_bytes()).hexdigest()
    monkeypatch.chdir(tmp_path)
    exec(compile(example("trials_dataframe"), str(PAGE), "exec"), {})
    printed = capsys.readouterr().out
    study = optuna.load_study(study_name="ganstudy-default", storage=f"sqlite:///{db}")
    best = study.best_trial
    assert f"trial {best.number}: fid_best {best.value:.1f}; at each evaluation {best.intermediate_values}" in printed
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(printed.splitlines()) == 1 + len(complete) + 2  # the table's header and rows, then two lines
    assert best.user_attrs["mlflow_run_id"] in printed and hashlib.sha1(db.read_bytes()).hexdigest() == before


def run_on_a_copy(study_folder, tmp_path, code: str) -> subprocess.CompletedProcess:
    """An example, its study renamed to the tiny study's, as a script in a folder whose mlruns/ holds a copy of
    that study's stores."""
    (tmp_path / "mlruns").mkdir()
    for name in ("mlflow.db", "optuna.db"):
        shutil.copy(study_folder / name, tmp_path / "mlruns" / name)
    (tmp_path / "example.py").write_text(code.replace('"ganstudy-default"', '"tiny"'))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)


def check_names_in_store(store: str) -> None:
    """Every tag, param and metric name on the store's runs matches a row of the first table."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(store)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert {r.data.tags.get("ganstudy.role") for r in runs} >= {"study", "trial"}
    for kind, field in (("tag", "tags"), ("param", "params"), ("metric", "metrics")):
        known = patterns(kind)
        seen = {name for r in runs for name in getattr(r.data, field)}
        assert not [n for n in seen if not any(p.match(n) for p in known)], kind


@pytest.mark.slow
def test_every_name_a_studys_runs_carry_is_in_the_table(tiny_study):
    check_names_in_store(f"sqlite:///{tiny_study}/mlflow.db")


def check_mlflow_example(study_folder, tmp_path) -> None:
    import optuna

    done = run_on_a_copy(study_folder, tmp_path, example("mlflow.search_runs"))
    assert done.returncode == 0, done.stderr[-3000:]
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{study_folder}/optuna.db")
    lines = done.stdout.splitlines()
    best_value, best_trial = map(float, lines[1].split()[:2])  # the study's run
    assert best_value == pytest.approx(study.best_value) and best_trial == study.best_trial.number
    trials = [int(line.split()[0]) for line in lines[3:-1]]  # its trials, lowest fid_best first
    assert sorted(trials) == [t.number for t in study.trials]
    assert trials[0] == min(study.trials, key=lambda t: t.value).number  # a pruned trial's value: its fid_best
    assert lines[-1].startswith("fid by epoch: [(1, ")


@pytest.mark.slow
def test_the_mlflow_example_runs_on_a_studys_store(tiny_study, tmp_path):
    check_mlflow_example(tiny_study, tmp_path)


def check_delete_example(study_folder, tmp_path) -> None:
    import optuna
    from mlflow.tracking import MlflowClient

    done = run_on_a_copy(study_folder, tmp_path, example("delete_study"))
    assert done.returncode == 0, done.stderr[-3000:]
    storage = f"sqlite:///{tmp_path}/mlruns/optuna.db"
    assert "tiny" not in optuna.get_all_study_names(storage)
    instance = optuna.load_study(study_name="tiny", storage=f"sqlite:///{study_folder}/optuna.db").user_attrs[
        "ganstudy_instance"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns/mlflow.db")
    experiments = [e.experiment_id for e in client.search_experiments()]
    assert client.search_runs(experiments, f"tags.`ganstudy.study_instance` = '{instance}'") == []
    deleted = MlflowClient(f"sqlite:///{study_folder}/mlflow.db").search_runs(
        experiments, f"tags.`ganstudy.study_instance` = '{instance}'")
    assert done.stdout == f"deleted study tiny ({instance}) and its {len(deleted)} MLflow runs\n" and deleted


@pytest.mark.slow
def test_the_delete_example_deletes_the_study_and_its_runs(tiny_study, tmp_path):
    check_delete_example(tiny_study, tmp_path)
