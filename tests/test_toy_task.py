"""A task defined here, outside the package, goes through the shared engine unchanged (issue 8's seam):
its own head with a custom branch module, its own per-image metadata, its own scorer; it trains, resumes
from its checkpoint, evaluates, predicts and exports to ONNX."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from centernet.app.builders import eval_settings, load_checkpoint, load_predictor, open_source, set_classes
from centernet.app.builders import model_from_config, task_from_config
from centernet.config import DataConfig, ExperimentConfig, ModelConfig, TaskConfig, TrainConfig
from centernet.data import make_synthetic_dataset, read_image
from centernet.data.pipeline import sample_meta
from centernet.engine.evaluator import evaluate
from centernet.engine.trainer import Trainer
from centernet.evaluation.scoring import CocoScorer
from centernet.models.heads import Branch
from centernet.ops.decode import decode_ctdet
from centernet.ops.losses import focal_loss, reg_l1_loss
from centernet.tasks import TASKS
from centernet.tasks.base import Task
from centernet.tasks.ctdet import encode_centers, scatter_at
from helpers.detections import assert_same_detections

TAG_SCALE = 10  # the toy's own metadata: tag = image_id * TAG_SCALE, carried to every result


class Doubler(nn.Module):
    """The toy's branch: a 1x1 conv the toy's heatmap reads from instead of the neck."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.calls = 0

    def forward(self, x: Tensor) -> Tensor:
        self.calls += 1
        return torch.relu(self.conv(x)) + x


class TagScorer(CocoScorer):
    """COCO box AP plus the share of results that carry their image's tag; AP50 leads."""

    headline = "AP50"

    def result(self, verbose: bool = False) -> dict[str, float]:
        metrics = super().result(verbose)
        ok = [r["tag"] == r["image_id"] * TAG_SCALE for r in self.results]
        metrics["tag_ok"] = float(np.mean(ok)) if ok else 0.0
        return metrics


class ToyTask(Task):
    name = "toy"
    heatmap_heads = ("toy_hm",)
    head_branches = {"toy_hm": Branch("doubler", Doubler)}
    meta_keys = ("image_id", "image_size", "tag")
    analysis_rows = (("none", frozenset()), ("heatmap", frozenset({"toy_hm"})))

    def head_channels(self) -> dict[str, int]:
        return {"toy_hm": self.num_classes, "toy_wh": 2}

    def default_weights(self) -> dict[str, float]:
        return {"hm": 1.0, "wh": 0.1}

    def encode(self, sample, out_w, out_h):
        t = encode_centers(sample, out_w, out_h, self.num_classes, self.max_objects)
        return {"toy_hm": t["hm"], "toy_wh": t["wh"], "ind": t["ind"], "mask": t["reg_mask"]}

    def loss(self, outputs, batch):
        def one(out, b):
            return {"hm": focal_loss(out["toy_hm"], b["toy_hm"]),
                    "wh": reg_l1_loss(out["toy_wh"], b["ind"], b["mask"], b["toy_wh"])}
        return self.stack_loss(outputs, batch, one)

    def activate(self, output):
        return {"toy_hm": torch.sigmoid(output["toy_hm"]), "toy_wh": output["toy_wh"]}

    def decode(self, maps):
        return decode_ctdet(maps["toy_hm"], maps["toy_wh"], None, K=self.K)

    def merge_flip(self, maps):
        b = maps["toy_hm"].shape[0] // 2
        return {k: (v[:b] + torch.flip(v[b:], dims=[3])) / 2 for k, v in maps.items()}

    def oracle_maps(self, batch):
        h, w = batch["toy_hm"].shape[-2:]
        return {"toy_hm": batch["toy_hm"], "toy_wh": scatter_at(batch["toy_wh"], batch["ind"], batch["mask"], h, w)}

    def sample_meta(self, sample):
        return {**sample_meta(sample), "tag": np.int64(sample.image_id * TAG_SCALE)}

    def postprocess(self, rows: Tensor, meta) -> Tensor:  # boxes clipped to the image: uses the meta
        size = meta["image_size"].to(rows.dtype)  # [B, 2]
        out = rows.clone()
        out[..., [0, 2]] = torch.minimum(rows[..., [0, 2]].clamp(min=0), size[:, None, :1])
        out[..., [1, 3]] = torch.minimum(rows[..., [1, 3]].clamp(min=0), size[:, None, 1:])
        return out

    def heatmap(self, maps):
        return maps["toy_hm"]

    def to_results(self, rows, meta: Mapping[str, Any], cat_ids):
        results = super().to_results(rows, meta, cat_ids)
        tag = int(meta.get("tag", -1))
        return [dict(r, tag=tag) for r in results]

    def scorer(self, source):
        return TagScorer(source, ("bbox",))


@pytest.fixture()
def toy_registered():
    TASKS.register("toy")(ToyTask)
    yield
    TASKS._items.pop("toy")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("toy"), num_train=16, num_val=4, image_size=(64, 64))


def test_toy_task_trains_evaluates_predicts_and_exports(toy_registered, shapes, tmp_path):
    cfg = ExperimentConfig(
        model=ModelConfig(arch="resdcn_18_tiny"),
        data=DataConfig(input_size=(64, 64), num_workers=0, random_crop=False),
        task=TaskConfig(name="toy"),
        train=TrainConfig(epochs=2, batch_size=4, lr=2e-3, lr_steps=(10,), val_interval=1, seed=1,
                          out_dir=str(tmp_path / "run"), device="cpu"))
    train, val = open_source(str(shapes["train_ann"]), task="toy"), open_source(str(shapes["val_ann"]), task="toy")
    set_classes(cfg, train)
    task = task_from_config(cfg)
    model = model_from_config(cfg, task)
    assert "branches.0.doubler.conv.weight" in model.state_dict()  # the branch lives in the model
    trainer = Trainer(cfg, model, task, train, val, progress=False)
    trainer.fit()
    assert trainer.headline == "AP50" and (tmp_path / "run" / "best.pth").is_file()
    assert all(r["val_tag_ok"] == 1.0 for r in trainer.history)

    cfg2, model2, task2 = load_checkpoint(tmp_path / "run" / "last.pth")
    assert isinstance(task2, ToyTask)
    result = evaluate(model2, task2, val, eval_settings(cfg2, flip=True), progress=False)
    assert result.headline == "AP50" and result.metrics["tag_ok"] == 1.0
    assert {r["tag"] for r in result.results} == {s.image_id * TAG_SCALE for s in val.samples}
    oracle = evaluate(None, task2, val, eval_settings(cfg2), progress=False)
    assert oracle.metrics["AP50"] > 0.9  # the toy's encode -> oracle maps -> decode round trip

    predictor = load_predictor(tmp_path / "run" / "last.pth")
    image = read_image(val.samples[0].path)
    calls = predictor.model.branches[0]["doubler"].calls
    pred = predictor(image, meta={"tag": 7})
    assert predictor.model.branches[0]["doubler"].calls == calls + 1 and pred.meta["tag"] == 7
    h, w = image.shape[:2]
    assert pred.heat is not None and pred.rows[:, [0, 2]].max() <= w and pred.rows[:, [1, 3]].max() <= h
    drawn = predictor.draw(image, pred, 0.0, heatmap=True)
    assert drawn.shape == image.shape


def test_toy_task_exports_and_scores_through_onnxruntime(toy_registered, shapes, tmp_path):
    pytest.importorskip("onnxruntime")
    from centernet.engine.checkpoint import save_checkpoint
    from centernet.export.onnx import OnnxRunner, export_checkpoint, onnx_predictor

    cfg = ExperimentConfig(model=ModelConfig(arch="resdcn_18_tiny"), data=DataConfig(input_size=(64, 64)),
                           task=TaskConfig(name="toy", num_classes=3))
    task = task_from_config(cfg)
    torch.manual_seed(0)
    model = model_from_config(cfg, task).eval()
    save_checkpoint(tmp_path / "toy.pth", cfg, model)
    path = export_checkpoint(tmp_path / "toy.pth", tmp_path / "toy.onnx")
    val = open_source(str(shapes["val_ann"]), task="toy")
    eager = evaluate(model, task, val, eval_settings(cfg), progress=False)
    onnx = evaluate(OnnxRunner(path), task, val, eval_settings(cfg), progress=False)
    assert onnx.metrics["tag_ok"] == 1.0
    assert assert_same_detections(eager.results, onnx.results, score_tol=1e-4, box_tol=0.05, top=20) > 0
    pred = onnx_predictor(path)(read_image(val.samples[0].path))
    assert pred.rows.shape[1] == 6
