"""`python -m ganstudy.detection` on a study: the discriminators against every generator, a detector trained on
some generators and tested on the others, its results in the study's run and page, its registration with a
calibrated threshold that `detect` then uses; bad input stopped in one line."""
import json
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pytest
from mlflow.tracking import MlflowClient
from sklearn.metrics import roc_auc_score

from conftest import call_main, sweep_args
from ganstudy import detect, detection
from ganstudy.config import ConfigError
from ganstudy.detection import split_zoo
from ganstudy.zoo import TRIALS, Member


def member(group, number, role="confirm"):
    settings = group.split(" (")[0]
    return Member(f"run-{group}-{number}", "trial" if group == TRIALS else role, f"{group} {number}", group, number,
                  settings, settings)


ZOO = [member(TRIALS, n) for n in range(6)] + [member(arm, s) for arm in ("best", "quick") for s in (1, 2, 3)] + \
      [member("best (time)", 1), member("quick (time)", 1), member("loss_hinge", 1, role="ablation")]


def test_even_trials_and_the_fit_arms_train_every_third_calibrates_and_each_confirm_arm_is_held_out_alone():
    split = split_zoo(ZOO, None)  # fit_arms: quick's, at both budgets
    pool = [member(TRIALS, n) for n in (0, 2, 4)] + [member("quick", s) for s in (1, 2, 3)] + [member("quick (time)", 1)]
    assert split.calibrate == [pool[2], pool[5]] and split.fit == [m for m in pool if m not in split.calibrate]
    assert split.unseen == [m for m in ZOO if m not in pool]
    assert list(split.held_out_arms) == ["best", "quick"]
    best, quick = split.held_out_arms["best"], split.held_out_arms["quick"]
    assert best.test == [member("best", s) for s in (1, 2, 3)] and best.calibrate == split.calibrate
    assert best.fit == [m for m in ZOO if m.settings != "best" and m not in split.calibrate]
    # quick 2 calibrates the main detector: held out with its arm, it calibrates nothing that is tested on it
    assert quick.calibrate == [member(TRIALS, 4)] and not {m.settings for m in quick.fit + quick.calibrate} & {"quick"}
    assert split_zoo(ZOO, []).fit == [member(TRIALS, 0), member(TRIALS, 2)]
    with pytest.raises(ConfigError, match=r"^fit_arms=nope: no such arm in the study \(its arms: best, loss_hinge, quick\)$"):
        split_zoo(ZOO, ["nope"])
    with pytest.raises(ConfigError, match="too few to train a detector"):
        split_zoo([member(TRIALS, 0), member(TRIALS, 2)], None)  # nothing unseen


def test_a_trial_with_an_arms_settings_is_held_out_with_that_arm():
    """The best trial's generator has the best arm's settings at a shorter budget (and the warm start quick's):
    a detector trained without the best arm does not train or calibrate on it either."""
    from ganstudy.zoo import _same_settings

    trial = {"optimizer.lr_g": "0.002", "train.epochs": "12", "train.seed": "42", "run_dir": "trial_0004",
             "tracking.run_name": "trial_4", "eval.detector": "False"}
    arm = {**trial, "train.epochs": "20", "train.seed": "1", "run_dir": "confirm_best_seed1",
           "tracking.run_name": "confirm_best_seed1", "eval.detector": "True"}
    assert _same_settings(trial, arm) and not _same_settings({**trial, "optimizer.lr_g": "0.003"}, arm)
    assert not _same_settings(trial, {**arm, "model.d_norm": "spectral"})  # a param only one of them logs
    twin = Member("run-trials-4", "trial", "trials 4", TRIALS, 4, TRIALS, "best")
    zoo = [m if m.number != 4 or m.group != TRIALS else twin for m in ZOO]
    best = split_zoo(zoo, None).held_out_arms["best"]
    assert twin not in best.fit + best.calibrate and best.test == [member("best", s) for s in (1, 2, 3)]
    assert twin in split_zoo(zoo, None).held_out_arms["quick"].fit + split_zoo(zoo, None).held_out_arms["quick"].calibrate


def test_the_measures_on_a_zoo_of_stand_ins(monkeypatch):
    """measure() end to end on stand-in generators (each a brightness) and discriminators (brightness as the
    score), so that every path runs: D x G, the detector, the held-out arms."""
    import keras

    from ganstudy import zoo as zoo_

    zoo = [member(TRIALS, n) for n in range(4)] + [member(arm, s) for arm in ("best", "quick") for s in (1, 2)]
    level = {m: 40 + 25 * i for i, m in enumerate(zoo)}

    def fakes(m, sets):
        rng = np.random.default_rng(level[m])
        return {name: np.clip(rng.normal(level[m], 30, (count, 28, 28)).round(), 0, 255) for name, (count, _) in sets.items()}

    def discriminator(m):  # p_real grows with the mean pixel: a D that thinks bright images are real
        images = keras.Input((28, 28))
        mean = keras.layers.Lambda(lambda x: keras.ops.mean(x, axis=(1, 2), keepdims=False)[:, None] / 50 - 1)(images)
        return keras.Model(images, keras.layers.Activation("sigmoid", name="p_real")(mean))

    monkeypatch.setattr(zoo_, "fakes", fakes)
    monkeypatch.setattr(zoo_, "discriminator", discriminator)
    rng = np.random.default_rng(0)
    reals = {k: np.clip(rng.normal(100, 60, (count, 28, 28)).round(), 0, 255).astype(np.float32)
             for k, count in (("fit", 200), ("calibrate", 40), ("test", 40))}
    split = split_zoo(zoo, None)
    options = {**detection.OPTIONS, "n": 40, "epochs": 1, "fit_fakes": 100, "augment": True}  # the deep detector
    results, detector = detection.measure(zoo, split, reals, options)
    auc = np.array(results["d_by_g"]["auc"])
    # The stand-in D ranks by brightness alike for every run: each column is one AUC, repeated.
    assert np.allclose(auc, auc[0]) and auc.shape == (8, 8)
    assert set(results["held_out_arms"]) == {"best", "quick"}
    assert results["held_out_arms"]["best"]["tested_on"] == ["best 1", "best 2"]
    assert not set(results["held_out_arms"]["quick"]["calibrated_on"]) & {"quick 1", "quick 2"}
    assert set(results["detector"]["unseen"]) == {m.name for m in split.unseen}
    assert all(0 <= s["matched_auc"] <= 1 for s in results["detector"]["unseen"].values())
    assert 0 <= results["detector"]["pooled_matched"]["auc"] <= 1
    assert 0 < results["detector"]["threshold"] < 1 and 0 <= results["detector"]["ece"] <= 1
    assert detector.output_shape == (None, 1)


def test_bad_input_is_one_line_before_any_work(tmp_path, capsys):
    args = sweep_args(tmp_path)[1:]
    for bad, message in [("n=5", "error: n=5: n is an integer >= 20"), ("epochs=0", "error: epochs=0: epochs is an integer >= 1"),
                         ("register=maybe", "error: register=maybe: register is true or false"),
                         ("detector=huge", "error: detector=huge: detector is small or deep"),
                         ("fit_fakes=0", "error: fit_fakes=0: fit_fakes is an integer >= 1"),
                         ("augment=2", "error: augment=2: augment is true or false"),
                         ("histogram=maybe", "error: histogram=maybe: histogram is true or false"),
                         ("histogram_match=1.5", "error: histogram_match=1.5: histogram_match is a share from 0 to 1")]:
        code, _, err = call_main(detection.main, ["sweep=tiny", *args, bad], capsys)
        assert code == 2 and err.strip() == message
    code, _, err = call_main(detection.main, ["sweep=tiny", *args], capsys)
    assert code == 2 and err.strip() == f"error: study_name=tiny: no such study in sqlite:///{tmp_path}/optuna.db"
    optuna.create_study(study_name="tiny", storage=f"sqlite:///{tmp_path}/optuna.db")
    code, _, err = call_main(detection.main, ["sweep=tiny", *args], capsys)
    assert code == 2 and "it has no MLflow run yet" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # the tiny study trains its generators
def test_detection_across_the_tiny_studys_generators(tiny_study, capsys, tmp_path):
    args = ["sweep=tiny", *sweep_args(tiny_study)[1:]]
    code, _, err = call_main(detection.main, [*args, "n=600"], capsys)
    assert code == 2 and err.strip() == ("error: n=600: the data hold out 1000 images, and calibration and test take "
                                         "n each: n is at most 500")
    code, out, err = call_main(detection.main, [*args, "n=50", "epochs=1", "fit_fakes=200", "detector=small"], capsys)
    assert code == 0, err
    assert "the detector on generators it never saw" in out and "all unseen" in out and "took " in out
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tiny_study}/optuna.db")
    parent = study.user_attrs["mlflow_parent_run_id"]
    client = MlflowClient(f"sqlite:///{tiny_study}/mlflow.db")
    folder = Path(client.download_artifacts(parent, "detection", str(tmp_path)))
    results = json.loads((folder / "detection.json").read_text())
    assert {p.name for p in folder.iterdir()} == {"detection.json", "d_by_g.png", "detector.png", "reliability.png"}
    splits = {g["name"]: g["split"] for g in results["generators"]}
    assert splits == {"trial 0": "fit", "trial 1": "unseen", "trial 2": "calibrate", "trial 3": "unseen"}
    auc = np.array(results["d_by_g"]["auc"])
    assert auc.shape == (4, 4) and ((auc >= 0) & (auc <= 1)).all()
    assert results["d_by_g"]["own_auc"] == pytest.approx(np.mean(np.diag(auc)))
    assert results["recipe"] == {"detector": "small", "fit_fakes": 200, "augment": False, "histogram": True,
                                 "histogram_match": 0.5, "epochs": 1}
    assert list(results["detector"]["by_group"]) == ["trials"]  # every unseen generator a trial
    # The registered detector, loaded back and scored here with sklearn, gives the logged AUC (same seed,
    # same noise: the same fakes).
    mlflow.set_tracking_uri(f"sqlite:///{tiny_study}/mlflow.db")
    from ganstudy import mlflow_models, zoo
    from ganstudy.config import compose
    from ganstudy.detection import _scores, real_sets

    name = "tiny-detector"
    version = client.get_model_version_by_alias(name, "champion")
    threshold = results["detector"]["threshold"]
    assert float(version.tags["threshold"]) == pytest.approx(threshold, rel=1e-5)
    detector = mlflow_models.logit_scorer(mlflow_models.load(f"models:/{name}@champion"))
    trial1 = next(m for m in zoo.members(client, parent) if m.name == "trial 1")
    fakes = zoo.fakes(trial1, {"test": (50, 0)})["test"]
    reals = real_sets(compose(["experiment=tiny", "run_dir=unused"]).data, 50)["test"]
    p_reals, p_fakes = _scores(detector, reals), _scores(detector, fakes)
    expected = roc_auc_score(np.r_[np.ones(50), np.zeros(50)], np.r_[p_reals, p_fakes])
    assert results["detector"]["unseen"]["trial 1"]["auc"] == pytest.approx(expected, abs=1e-6)
    # detect takes the calibrated threshold from the registered version.
    np.savez(tmp_path / "fakes.npz", images=np.rint(fakes).astype(np.uint8))
    code, out, _ = call_main(detect.main, ["--model", f"models:/{name}@champion", "--tracking-uri",
                                           f"sqlite:///{tiny_study}/mlflow.db", "--json", str(tmp_path / "fakes.npz")],
                             capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(rows) == 50
    assert all(r["verdict"] == ("real" if r["p_real_model"] >= threshold else "generated") for r in rows
               if abs(r["p_real_model"] - threshold) > 1e-4)  # the JSON rounds p_real to 4 decimals
    # A threshold set on the version decides: at 0, the fakes the calibrated one caught are called real too.
    assert [r["verdict"] for r in rows].count("generated") > 0
    client.set_model_version_tag(name, version.version, "threshold", "0.0")
    _, out, _ = call_main(detect.main, ["--model", f"models:/{name}@champion", "--tracking-uri",
                                        f"sqlite:///{tiny_study}/mlflow.db", "--json", str(tmp_path / "fakes.npz")],
                          capsys)
    assert [json.loads(line)["verdict"] for line in out.splitlines()] == ["real"] * 50
    # Its version says it has the histogram term: a JPEG or a resized image gets a warning, an npz or a 28x28 PNG not.
    assert version.tags["histogram"] == "true"
    from PIL import Image

    Image.fromarray(reals[0].astype(np.uint8)).save(tmp_path / "digit.png")
    Image.fromarray(reals[0].astype(np.uint8)).save(tmp_path / "digit.jpg", quality=90)
    Image.fromarray(reals[0].astype(np.uint8)).resize((56, 56)).save(tmp_path / "big.png")
    for files, warned in (([tmp_path / "fakes.npz", tmp_path / "digit.png"], False),
                          ([tmp_path / "digit.jpg", tmp_path / "big.png"], True)):
        code, _, err = call_main(detect.main, ["--model", f"models:/{name}@champion", "--tracking-uri",
                                               f"sqlite:///{tiny_study}/mlflow.db", *map(str, files)], capsys)
        assert code == 0 and ("warning: " in err) == warned
    assert f"2 file(s) JPEG or not 28x28 (first: {tmp_path / 'digit.jpg'})" in err and len(err.strip().splitlines()) == 1
    page = Path(client.download_artifacts(parent, "report/index.html", str(tmp_path / "page"))).read_text()
    assert "Detection: the discriminator and a detector" in page


def test_a_generator_whose_model_files_are_gone_is_one_line(tmp_path):
    import shutil

    import keras

    from ganstudy import mlflow_models, zoo

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = mlflow.create_experiment("gone", (tmp_path / "artifacts").as_uri())
    with mlflow.start_run(experiment_id=experiment) as run:
        sampler = keras.Sequential([keras.Input((4,)), keras.layers.Dense(784, activation="tanh"),
                                    keras.layers.Reshape((28, 28, 1))])
        info = mlflow_models.log(mlflow_models.pixel_generator(sampler), mlflow_models.GENERATOR, step=0)
    shutil.rmtree(Path(MlflowClient().get_logged_model(info.model_id).artifact_location.removeprefix("file://")))
    member = Member(run.info.run_id, "trial", "trial 0", TRIALS, 0)
    with pytest.raises(ConfigError, match=r"^trial 0 \(run \w+\): its generator model cannot be loaded .*: were its "
                                          r"artifacts removed\?$"):
        zoo.fakes(member, {"test": (4, 0)})


def test_the_study_page_shows_a_detection_json_written_before_the_matched_fakes(tmp_path):
    """A study whose detection ran before the histogram term (no pooled_matched) still gets its page section."""
    from ganstudy.study_page import _detection

    pooled = {"auc": 0.96, "ap": 0.95, "acc_05": 0.88, "acc": 0.9, "reals_called_real": 0.91, "fakes_caught": 0.9}
    old = {"detector": {"threshold": 0.955, "ece": 0.089, "pooled": pooled}, "held_out_arms": {},
           "d_by_g": {"own_auc": 0.744, "cross_auc": 0.712}}

    class Client:
        def download_artifacts(self, run_id, path, dst):
            folder = Path(dst) / path
            folder.mkdir(parents=True)
            (folder / "detection.json").write_text(json.dumps(old))
            return str(folder)

    html = _detection(Client(), "run", tmp_path)
    assert "0.960" in html and "the same fakes with real digits" not in html
    old["detector"]["pooled_matched"] = {**pooled, "auc": 0.5}
    assert "the same fakes with real digits" in _detection(Client(), "run", tmp_path / "again")
