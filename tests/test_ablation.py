"""The ablation: each lever changed alone from the confirmed winner, beside it."""
import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from ganstudy.ablation import lever_arms, winner
from test_sweep import decided_study

TINY = ["experiment=tiny", "train.epochs=2"]


def test_a_lever_in_use_goes_back_to_the_articles_choice_and_one_at_it_is_turned_on():
    levers = OmegaConf.create({"loss": ["ns", "hinge"], "train.d_steps": [1, 2], "train.r1_gamma": [0.0, 0.01]})
    arms = lever_arms(TINY + ["train.d_steps=2", "train.r1_gamma=0"], levers)
    assert arms == {"loss_hinge": TINY + ["train.d_steps=2", "train.r1_gamma=0", "loss=hinge"],
                    "d_steps_1": TINY + ["train.d_steps=2", "train.r1_gamma=0", "train.d_steps=1"],
                    "r1_gamma_0.01": TINY + ["train.d_steps=2", "train.r1_gamma=0", "train.r1_gamma=0.01"]}


def test_the_winner_is_the_best_mean_in_the_objectives_direction():
    summary = {"best": {"mean": 40.0}, "base": {"mean": 30.0}, "article": {"mean": None}, "quick": {"mean": 50.0}}
    assert winner(summary, "minimize") == "base" and winner(summary, "maximize") == "quick"


@pytest.mark.slow
def test_the_ablation_reuses_the_winners_confirm_runs_and_trains_each_lever_beside_them(tmp_path, capsys):
    from ganstudy.ablation import ablation
    from ganstudy.confirm import confirm

    study, spec, parent_id = decided_study(tmp_path, "seeds=1", "jobs=2", "levers={train.d_steps: [1, 2]}",
                                           "ablation=true")
    confirmed = confirm(study, spec, parent_id)
    results = ablation(study, spec, parent_id, confirmed)
    reference = results["reference"]
    assert reference == winner(confirmed["equal_epochs"], "minimize")
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_run(parent_id).info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    roles = sorted((r.data.tags["ganstudy.role"], r.data.tags["ganstudy.which"]) for r in runs)
    assert roles == sorted([("confirm", "best"), ("confirm", "tiny"), ("confirm", "article"),
                            ("ablation", "d_steps_2")])  # the winner's confirm run is its ablation run too
    lever = next(r for r in runs if r.data.tags["ganstudy.role"] == "ablation")
    winner_run = next(r for r in runs if r.data.tags["ganstudy.which"] == reference)
    assert lever.data.params["train.d_steps"] == "2" and winner_run.data.params["train.d_steps"] == "1"
    assert {k: v for k, v in lever.data.params.items() if k not in ("train.d_steps", "run_dir", "tracking.run_name")} == {
        k: v for k, v in winner_run.data.params.items() if k not in ("train.d_steps", "run_dir", "tracking.run_name")}
    metrics = client.get_run(parent_id).data.metrics
    ratio = winner_run.data.metrics["objective"] / lever.data.metrics["objective"]
    assert metrics["ablation_ratio_d_steps_2"] == pytest.approx(ratio)
    saved = json.loads(Path(client.download_artifacts(parent_id, "ablation.json", str(tmp_path))).read_text())
    assert saved["reference"] == reference and saved["equal_epochs"]["d_steps_2"]["ratio"] == pytest.approx(ratio)
    assert f"{reference} vs d_steps_2: ratio {ratio:.3f}" in capsys.readouterr().out
    ablation(study, spec, parent_id, confirmed)  # a rerun trains nothing
    assert len(client.search_runs([client.get_run(parent_id).info.experiment_id],
                                  f"tags.mlflow.parentRunId = '{parent_id}'")) == 4
