"""radsight evaluate: metrics, bootstrap CIs, ECE, subgroups, on hand-made predictions and a real DICOM set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("matplotlib", reason="radsight evaluate needs the train extra: pip install 'radsight[train]'")

from typer.testing import CliRunner

from ai_testmodels import make_classification_package
from radsight.cli import app
from radsight.datasets.cxr import cxr_to_dicom
from radsight.train import evaluate as ev


def test_ece_by_hand() -> None:
    # Bins are [k/15, (k+1)/15): 0.9 -> bin 13, 0.2 -> 3, 0.8 -> 12, and 0.61, 0.62 share bin 9.
    y = np.array([1, 0, 1, 1, 0])
    p = np.array([0.9, 0.2, 0.8, 0.61, 0.62])
    expected = (abs(1 - 0.9) + abs(0 - 0.2) + abs(1 - 0.8) + 2 * abs(0.5 - 0.615)) / 5
    assert ev.expected_calibration_error(y, p) == pytest.approx(expected, abs=1e-12)
    # Perfectly calibrated within bins: 0; probability 1.0 falls in the last bin, 0.0 in the first.
    assert ev.expected_calibration_error(np.array([1, 0]), np.array([1.0, 0.0])) == 0.0
    rows = ev.reliability(np.array([1, 0]), np.array([1.0, 0.0]))
    assert rows[0]["n"] == 1 and rows[-1]["n"] == 1 and len(rows) == ev.ECE_BINS


def test_metrics_by_hand_and_auc_matches_scikit_learn() -> None:
    y = np.array([1, 1, 1, 0, 0, 0, 0, 1])
    p = np.array([0.9, 0.7, 0.4, 0.3, 0.6, 0.1, 0.2, 0.8])
    m = ev.binary_metrics(y, p, 0.5)
    assert m["sensitivity"] == 3 / 4 and m["specificity"] == 3 / 4 and m["accuracy"] == 6 / 8
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    yy = rng.integers(0, 2, 300)
    pp = np.round(rng.random(300) * 0.5 + yy * 0.3, 2)  # ties on purpose
    assert ev.roc_auc(yy, pp) == pytest.approx(roc_auc_score(yy, pp), abs=1e-12)
    assert np.isnan(ev.roc_auc(np.ones(3), np.array([0.1, 0.2, 0.3])))


def test_bootstrap_ci_contains_the_point_estimate_and_is_reproducible() -> None:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 200)
    p = np.clip(y * 0.35 + rng.random(200) * 0.65, 0, 1)
    point = ev.binary_metrics(y, p, 0.5)
    ci = ev.metrics_ci(y, p, 0.5, resamples=300, seed=3)
    for name in ev.METRICS:
        lo, hi = ci[name]
        assert lo <= point[name] <= hi and hi - lo < 0.3, name
    assert ev.metrics_ci(y, p, 0.5, resamples=300, seed=3) == ci


def test_bootstrap_ci_of_a_mean_by_hand() -> None:
    from radsight.train.metrics import mean_ci

    # Two cases 0 and 1: a resample's mean is 0, 0.5 or 1 with chances 1/4, 1/2, 1/4, so the
    # 2.5th and 97.5th percentiles of 2000 resample means are 0 and 1.
    assert mean_ci([0.0, 1.0]) == (0.0, 1.0)
    assert mean_ci([0.7, float("nan")]) == (0.7, 0.7)  # NaN cases are dropped first
    assert all(np.isnan(mean_ci([float("nan")])))


def test_dice_by_hand_through_monai() -> None:
    from radsight.train.metrics import dice

    pred, truth = np.zeros((2, 3, 4), bool), np.zeros((2, 3, 4), bool)
    pred[0, 0, :3] = True  # 3 voxels
    truth[0, 0, 1:] = True  # 4 voxels (3 in this row, 1 below)
    truth[1, 2, 3] = True
    assert dice(pred, truth) == pytest.approx(2 * 2 / (3 + 4), abs=1e-12)  # 2 voxels shared
    assert dice(pred, pred) == 1.0
    assert dice(pred, np.zeros_like(truth)) == 0.0  # a false positive where the organ is absent
    assert np.isnan(dice(np.zeros_like(pred), np.zeros_like(truth)))  # absent from both: no score


def test_hd95_by_hand_through_monai() -> None:
    from radsight.train.metrics import hd95

    # A one-voxel-thick row along x (every voxel is on the surface), 2 mm between columns.
    truth, pred = np.zeros((1, 1, 12), bool), np.zeros((1, 1, 12), bool)
    truth[0, 0, :4] = True
    pred[0, 0, :4] = True
    pred[0, 0, 10] = True  # one stray voxel 7 columns = 14 mm from the truth
    # Prediction -> truth distances 0, 0, 0, 0, 14 mm: 95th percentile (linear) 0.8 * 14 = 11.2 mm;
    # truth -> prediction all 0; HD95 is the larger directed one.
    assert hd95(pred, truth, (1.0, 1.0, 2.0)) == pytest.approx(11.2, abs=1e-5)
    assert hd95(truth, pred, (1.0, 1.0, 2.0)) == pytest.approx(11.2, abs=1e-5)
    assert hd95(truth, truth, (1.0, 1.0, 2.0)) == 0.0
    assert np.isnan(hd95(np.zeros_like(pred), truth, (1.0, 1.0, 2.0)))


def test_youden_threshold_separates_separable_scores() -> None:
    y = np.array([0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    t = ev.youden_threshold(y, p)
    assert 0.3 < t <= 0.7
    m = ev.binary_metrics(y, p, t)
    assert m["sensitivity"] == 1.0 and m["specificity"] == 1.0


def test_age_bands() -> None:
    assert ev.age_band("003Y") == "1-4y"
    assert ev.age_band("018M") == "1-4y"
    assert ev.age_band("010D") == "<1y"
    assert ev.age_band("070Y") == ">=65y"
    assert ev.age_band("") == "" and ev.age_band("abc") == ""


def _xray(path: Path, bright_fraction: float) -> None:
    """A 64x64 image whose min-max scaled mean is exactly ``bright_fraction`` (the test model's input)."""
    img = np.zeros((64, 64), dtype=np.uint8)
    img.flat[: round(bright_fraction * img.size)] = 255
    Image.fromarray(img).save(path)


def test_evaluate_dicom_folder_with_known_predictions_flags_the_weak_subgroup(tmp_path: Path) -> None:
    gain = 10.0
    package = make_classification_package(tmp_path / "pkg", gain=gain, size=(64, 64), threshold=0.5)
    data = tmp_path / "dicom"
    data.mkdir()
    # (sex, label, bright fraction): the test model says sigmoid(10 * (fraction - 0.5)).
    cases = [("M", "PNEUMONIA", f) for f in (0.7, 0.8, 0.9, 0.6, 0.75)]
    cases += [("M", "NORMAL", f) for f in (0.1, 0.2, 0.3, 0.4, 0.25)]
    cases += [("F", "PNEUMONIA", f) for f in (0.3, 0.4, 0.8, 0.9, 0.2)]  # three missed
    cases += [("F", "NORMAL", f) for f in (0.1, 0.7, 0.3, 0.2, 0.35)]
    probs, labels = [], []
    for i, (sex, label, fraction) in enumerate(cases):
        _xray(tmp_path / f"{i}.png", fraction)
        cxr_to_dicom(tmp_path / f"{i}.png", data / f"{i:02d}.dcm", label=label, patient_id=f"EV-{i}", sex=sex)
        probs.append(1 / (1 + np.exp(-gain * (round(fraction * 4096) / 4096 - 0.5))))
        labels.append(int(label == "PNEUMONIA"))
    out = tmp_path / "eval"
    result = CliRunner().invoke(app, ["evaluate", str(package), str(data), "--by", "PatientSex", "--out", str(out),
                                      "--resamples", "200"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "metrics.json").read_text())
    expected = ev.binary_metrics(np.array(labels), np.array(probs), 0.5)
    for name in ev.METRICS:
        m = report["metrics"][name]
        assert m["value"] == pytest.approx(expected[name], abs=1e-5), name
        assert m["ci95"][0] <= m["value"] <= m["ci95"][1]
    assert report["n"] == 20 and report["n_positive"] == 10
    assert 0 <= report["metrics"]["ece"]["value"] <= 1
    by_sex = report["subgroups"]["PatientSex"]
    assert by_sex["M"]["accuracy"]["value"] == 1.0 and by_sex["M"]["flagged"] == []
    assert by_sex["F"]["accuracy"]["value"] == pytest.approx(0.6)
    assert {"accuracy", "sensitivity"} <= set(by_sex["F"]["flagged"])
    for plot in ("roc.png", "reliability.png", "subgroups-PatientSex.png"):
        assert (out / plot).stat().st_size > 1000, plot


def test_evaluate_csv_groups_by_a_column(tmp_path: Path) -> None:
    package = make_classification_package(tmp_path / "pkg", gain=10.0, size=(64, 64))
    rows = ["path,label,site"]
    for i, (label, fraction, site) in enumerate(
        [("PNEUMONIA", 0.9, "a"), ("NORMAL", 0.1, "a"), ("PNEUMONIA", 0.8, "b"), ("NORMAL", 0.9, "b")] * 3
    ):
        _xray(tmp_path / f"{i}.png", fraction)
        rows.append(f"{i}.png,{label},{site}")
    (tmp_path / "set.csv").write_text("\n".join(rows) + "\n")
    report = ev.evaluate(package, str(tmp_path / "set.csv"), out_dir=tmp_path / "out", by=["site"], resamples=50)
    assert report["subgroups"]["site"]["a"]["specificity"]["value"] == 1.0
    assert report["subgroups"]["site"]["b"]["specificity"]["value"] == 0.0
    assert "specificity" in report["subgroups"]["site"]["b"]["flagged"]
    assert report["subgroups"]["site"]["a"]["flagged"] == []


def test_evaluate_refuses_a_set_without_the_models_class(tmp_path: Path) -> None:
    package = make_classification_package(tmp_path / "pkg")
    (tmp_path / "data" / "CAT").mkdir(parents=True)
    _xray(tmp_path / "data" / "CAT" / "a.png", 0.5)
    result = CliRunner().invoke(app, ["evaluate", str(package), str(tmp_path / "data"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "Pneumonia" in result.output


def _labelled_pngs(root: Path) -> Path:
    for i, (label, fraction) in enumerate([("PNEUMONIA", 0.9), ("NORMAL", 0.1), ("PNEUMONIA", 0.4), ("NORMAL", 0.6)]):
        (root / label).mkdir(parents=True, exist_ok=True)
        _xray(root / label / f"{i}.png", fraction)
    return root


def test_evaluate_an_installed_model_by_name(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADSIGHT_DATABASE_URL", db_url)
    monkeypatch.delenv("RADSIGHT_HOME", raising=False)
    monkeypatch.delenv("RADSIGHT_CONFIG", raising=False)
    home = tmp_path / "home"
    package = make_classification_package(tmp_path / "pkg", name="site-cls", gain=10.0, size=(64, 64))
    data = _labelled_pngs(tmp_path / "data")
    assert CliRunner().invoke(app, ["model", "add", str(package), "--home", str(home)]).exit_code == 0
    # A disabled model (not yet let loose on the worklist) is exactly one to evaluate first.
    assert CliRunner().invoke(app, ["model", "disable", "site-cls", "--home", str(home)]).exit_code == 0
    by_name = CliRunner().invoke(app, ["evaluate", "site-cls", str(data), "--home", str(home), "--out",
                                       str(tmp_path / "by-name"), "--resamples", "20"])
    assert by_name.exit_code == 0, by_name.output
    by_folder = CliRunner().invoke(app, ["evaluate", str(package), str(data), "--out", str(tmp_path / "by-folder"),
                                         "--resamples", "20"])
    assert by_folder.exit_code == 0, by_folder.output
    named = json.loads((tmp_path / "by-name" / "metrics.json").read_text())
    folder = json.loads((tmp_path / "by-folder" / "metrics.json").read_text())
    assert named["model"]["name"] == "site-cls" and named["model"] == folder["model"]
    assert named["metrics"] == folder["metrics"] and named["n"] == 4

    unknown = CliRunner().invoke(app, ["evaluate", "other-cls", str(data), "--home", str(home)])
    assert unknown.exit_code == 1
    assert (f"other-cls: no such package folder, and no model of that name is installed in {home} "
            "(installed: site-cls)") in " ".join(unknown.output.split())


@pytest.mark.parametrize("model", ["no-such-model", "pkg.zip"])
def test_evaluate_says_what_to_give_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model: str) -> None:
    monkeypatch.delenv("RADSIGHT_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pkg.zip").write_bytes(b"PK")
    result = CliRunner().invoke(app, ["evaluate", model, str(_labelled_pngs(tmp_path / "data"))])
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in output
    if model == "pkg.zip":
        assert output.startswith("pkg.zip: not a package folder (unzip a .zip package, or install it with "
                                 "`radsight model add` and evaluate it by name)")
    else:
        assert output.startswith("no-such-model: no such package folder; to evaluate an installed model by name, "
                                 "give the archive with --home or RADSIGHT_HOME")
