"""The command line end to end on a small synthetic set: train -> eval -> analyze -> predict, and its errors."""
import json
from pathlib import Path

import pytest

from centernet.cli import main
from centernet.data import make_synthetic_dataset
from centernet.engine.rundir import validate_train_config
from centernet.presets import PRESETS, get_preset


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = make_synthetic_dataset(root / "data", num_train=16, num_val=4, image_size=(64, 64))
    out = root / "run"
    code = main(["train", "--preset", "ctdet_cpu_small", "--arch", "resdcn_18_tiny", "--train", str(data["train_ann"]),
                 "--val", str(data["val_ann"]), "--epochs", "2", "--batch-size", "4", "--out", str(out),
                 "--workers", "0", "--device", "cpu", "--set", "data.input_size=[64,64]", "train.val_interval=1",
                 "train.flops=false"])
    assert code == 0
    return data, out


def test_train_writes_run_folder(trained):
    _, out = trained
    assert {"config.json", "log.jsonl", "last.pth", "best.pth"} <= {p.name for p in out.iterdir()}
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2] and all("val_AP" in r for r in records)
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["arch"] == "resdcn_18_tiny" and config["task"]["class_names"][0] == "rectangle"


def test_eval_analyze_predict_need_only_the_checkpoint(trained, tmp_path, capsys):
    data, out = trained
    assert main(["eval", str(out / "last.pth"), "--data", str(data["val_ann"]), "--json", str(tmp_path / "m.json"),
                 "--workers", "0", "--flip"]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert {"AP", "AP50", "AP75", "APs", "APm", "APl", "AR100"} <= set(metrics)
    assert main(["analyze", str(out / "last.pth"), "--data", str(data["val_ann"]), "--workers", "0"]) == 0
    table = capsys.readouterr().out
    assert "heatmap" in table.lower() and "AP50" in table
    assert main(["predict", str(out / "last.pth"), str(data["val_images"]), "--out", str(tmp_path / "pred"),
                 "--heatmap", "--score", "0.0"]) == 0
    drawn = sorted(p.name for p in (tmp_path / "pred").glob("*_pred.jpg"))
    assert len(drawn) == 4
    results = json.loads((tmp_path / "pred" / "detections.json").read_text())
    assert results and {"image_id", "category_id", "bbox", "score", "file_name"} <= set(results[0])


def test_oracle_eval_without_checkpoint(trained, capsys):
    data, _ = trained
    capsys.readouterr()
    assert main(["eval", "--oracle", "--data", str(data["val_ann"]), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "Average Precision" not in out  # pycocotools' own lines only with --verbose
    header, row = out.strip().splitlines()[-2:]  # one table: metric names, then the bbox row
    metrics = {k: float(v) for k, v in zip(header.split(), row.split()[1:]) if v != "-"}  # "-": undefined
    assert row.split()[0] == "bbox" and metrics["AP50"] > 0.95 and set(metrics) >= {"AP", "AP50", "AR100"}
    assert main(["eval", "--oracle", "--data", str(data["val_ann"]), "--workers", "0", "--verbose"]) == 0
    assert "Average Precision" in capsys.readouterr().out


def test_config_test_flip_is_evals_default_and_the_flag_wins(trained, tmp_path, monkeypatch):
    """A checkpoint whose config has data.test_flip on is evaluated with the flip test without --flip, by the CLI
    and the facade; --no-flip (flip=False) turns it off, --flip turns it on for a config without it."""
    import centernet.engine.evaluator as evaluator
    from centernet import CenterNet
    from centernet.app.builders import load_checkpoint
    from centernet.engine.checkpoint import save_checkpoint

    data, out = trained
    cfg, model, _ = load_checkpoint(out / "last.pth")
    assert cfg.data.test_flip is False  # the default of every preset but cornernet_hg104_coco
    cfg.data.test_flip = True
    flip_ckpt = save_checkpoint(tmp_path / "flip.pth", cfg, model)
    flips = []
    real = evaluator.evaluate

    def recording(model, task, source, settings=None, *args, **kwargs):
        flips.append(settings.flip)
        return real(model, task, source, settings, *args, **kwargs)

    monkeypatch.setattr(evaluator, "evaluate", recording)
    common = ["--data", str(data["val_ann"]), "--workers", "0"]
    assert main(["eval", str(flip_ckpt), *common]) == 0
    assert main(["eval", str(flip_ckpt), *common, "--no-flip"]) == 0
    assert main(["eval", str(out / "last.pth"), *common]) == 0
    assert main(["eval", str(out / "last.pth"), *common, "--flip"]) == 0
    assert flips == [True, False, False, True]
    facade = CenterNet(str(flip_ckpt), device="cpu", progress=False)
    facade.val(data=str(data["val_ann"]))
    facade.val(data=str(data["val_ann"]), flip=False)
    assert flips[4:] == [True, False]
    assert facade.predictor().settings.flip and not facade.predictor(flip=False).settings.flip


def test_errors_name_the_problem(tmp_path, capsys):
    assert main(["eval", "--oracle", "--data", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert main(["eval", "--oracle", "--data", str(bad), "--images", str(tmp_path)]) == 2
    assert "bad.json" in capsys.readouterr().err
    assert main(["train", "--preset", "no_such_preset", "--train", str(bad)]) == 2
    assert "unknown preset 'no_such_preset'" in capsys.readouterr().err
    assert main(["train", "--train", str(bad), "--set", "train.nope=1"]) == 2
    assert "train.nope" in capsys.readouterr().err


def test_demo_runs_end_to_end(tmp_path):
    from centernet.app.demo import run_demo

    summary = run_demo(tmp_path / "demo", epochs=1, num_train=16, num_val=4, progress=False)
    assert Path(summary["picture"]).is_file() and 0.0 <= summary["AP50"] <= 1.0


@pytest.mark.parametrize("name", PRESETS.names())
def test_every_preset_passes_the_training_config_check(name: str) -> None:
    """Each preset trains as it stands (CornerNet's 511 x 511 input included: its map is 128 x 128)."""
    cfg = get_preset(name)
    cfg.data.train, cfg.train.device = "train.json", "cpu"
    validate_train_config(cfg)
