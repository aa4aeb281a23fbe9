"""The ablation: each lever changed alone from the confirmed winner, beside it (its run end to end: test_sweep's
confirm test)."""
from omegaconf import OmegaConf

from ganstudy.ablation import lever_arms, winner

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
