"""The CornerNet task through the shared engine: architecture, options, oracle round trip, flip and
multi-scale tests, error analysis, predictor pictures, presets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import centernet
from centernet.builders import model_from_config, open_source, set_classes, task_from_config
from centernet.config import ExperimentConfig
from centernet.data import make_synthetic_dataset, read_image
from centernet.data.pipeline import TrainDataset, collate
from centernet.data.transforms import output_side
from centernet.engine.analyze import analysis_rows, error_analysis, format_table
from centernet.engine.evaluator import EvalSettings, evaluate
from centernet.engine.inference import run_pass
from centernet.engine.predictor import Predictor
from centernet.models import INPUT_MULTIPLE, build_model
from centernet.models.layers.corner_pool import CornerPool, CornerPoolModule
from centernet.presets import get_preset
from centernet.tasks import TASKS, CornerNetTask, build_task
from centernet.tasks.cornernet_decode import cornernet_oracle_maps
from centernet.tasks.cornernet_targets import encode_corners

SIZE = 64  # synthetic images and network input: 16x16 output maps
ARCH = "hourglass_tiny"


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_synthetic_dataset(tmp_path_factory.mktemp("cn"), num_train=8, num_val=6, image_size=(SIZE, SIZE))


def tiny_config(**options) -> ExperimentConfig:
    cfg = get_preset("cornernet_cpu_small")
    cfg.data.input_size = (SIZE, SIZE)
    cfg.data.num_workers = 0
    cfg.task.options = dict(options)
    return cfg


def tiny_model(task: CornerNetTask, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(ARCH, task.heads())
    with torch.no_grad():  # distinct, non-trivial head outputs
        for name, p in model.named_parameters():
            if name.startswith("heads") and name.endswith("2.weight"):
                p.normal_(0, 0.05)
    return model.eval()


# -- architecture ---------------------------------------------------------------------------------------
def test_cornernet_architecture_has_201_04m_parameters_and_the_corner_heads() -> None:
    heads = {"tl_heat": 80, "br_heat": 80, "tl_tag": 1, "br_tag": 1, "tl_regr": 2, "br_regr": 2}
    with torch.device("meta"):
        model = centernet.build_model("cornernet", heads)
    assert sum(p.numel() for p in model.parameters()) == 201_035_212  # 201.04M (SPEC 8)
    assert INPUT_MULTIPLE["cornernet"] == 128
    assert isinstance(model.branches[1]["tl"], CornerPoolModule)
    assert [m.direction for m in model.branches[0]["br"].modules() if isinstance(m, CornerPool)] == ["bottom", "right"]


def test_model_returns_every_stack_in_training_and_the_last_in_eval() -> None:
    task = build_task("cornernet", 3)
    model = build_model(ARCH, task.heads())
    x = torch.randn(2, 3, SIZE, SIZE)
    train_out = model.train()(x)
    assert len(train_out) == 2 and set(train_out[0]) == set(task.head_channels())
    (out,) = model.eval()(x)
    assert out["tl_heat"].shape == (2, 3, 16, 16) and out["br_tag"].shape == (2, 1, 16, 16)
    heat_bias = model.heads[1]["br_heat"][2].bias
    assert torch.allclose(torch.sigmoid(heat_bias), torch.full_like(heat_bias, 0.1))


# -- options ----------------------------------------------------------------------------------------------
def test_corner_pool_off_keeps_the_parameters_and_drops_only_the_pooling() -> None:
    on, off = build_task("cornernet", 3), build_task("cornernet", 3, corner_pool=False)
    model_on, model_off = tiny_model(on), tiny_model(off)
    assert model_on.state_dict().keys() == model_off.state_dict().keys()
    assert not any(isinstance(m, CornerPool) for m in model_off.modules())
    model_off.load_state_dict(model_on.state_dict())
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        feature = model_on.neck(model_on.backbone(x))[-1]
        branch_on, branch_off = model_on.branches[1]["tl"], model_off.branches[1]["tl"]
        pooled = branch_on.p1_conv1(feature)
        # with pooling the top-left branch sees the running max towards the bottom / right
        assert torch.equal(branch_on.pool1(pooled), pooled.flip(2).cummax(2).values.flip(2))
        assert torch.equal(branch_off.pool1(pooled), pooled)
        assert not torch.allclose(model_on(x)[0]["tl_heat"], model_off(x)[0]["tl_heat"])


def test_penalty_option_reaches_the_targets(shapes) -> None:
    sample = open_source(str(shapes["train_ann"]))[0]  # a 64x64 image encoded on a 64x64 map
    counts = {}
    for penalty in ("none", "fixed", "object"):
        t = build_task("cornernet", 3, penalty=penalty, fixed_radius=1).encode(sample, SIZE, SIZE)
        n = len(sample.labels)
        kept = t["tag_mask"][:n] > 0
        corners = {(int(c), int(i)) for c, i in zip(np.asarray(sample.labels)[kept], t["tl_ind"][:n][kept])}
        assert (t["tl_heat"] == 1).sum() == len(corners)  # one positive per distinct corner
        counts[penalty] = np.count_nonzero(t["tl_heat"])
    assert counts["none"] == len(corners)  # only the corner pixels
    assert counts["none"] < counts["fixed"] <= 9 * counts["none"] < counts["object"]


def test_bad_options_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="penalty"):
        build_task("cornernet", 3, penalty="gaussian")
    with pytest.raises(ValueError, match="corner_pools"):
        build_task("cornernet", 3, corner_pools=False)
    with pytest.raises(ValueError, match="top_k"):
        build_task("cornernet", 3, top_k=0)


# -- inference ----------------------------------------------------------------------------------------------
def test_output_maps_round_511_up_to_128(shapes) -> None:
    assert output_side(511, 4) == 128 and output_side(512, 4) == 128 and output_side(64, 4) == 16
    task = build_task("cornernet", 3)
    item = TrainDataset(open_source(str(shapes["val_ann"])), task, (511, 511), augment=False)[0]
    assert item["tl_heat"].shape == (3, 128, 128)
    with torch.device("meta"):
        model = build_model("cornernet", task.heads())
    assert model.eval()(torch.zeros(1, 3, 511, 511, device="meta"))[0]["tl_heat"].shape[-2:] == (128, 128)


def test_oracle_round_trip_through_the_engine(shapes) -> None:
    source = open_source(str(shapes["val_ann"]))
    task = build_task("cornernet", 3)
    metrics = evaluate(None, task, source, EvalSettings(input_size=(SIZE, SIZE)), progress=False).metrics
    assert metrics["AP"] > 0.95 and metrics["AP50"] > 0.99


def test_unflip_maps_the_mirror_back() -> None:
    """A runner that returns, for the mirrored half of the batch, the maps of the mirrored boxes: after
    ``unflip_rows`` both halves give the same boxes."""
    task = build_task("cornernet", 2)
    w = 16
    boxes = np.array([[1.25, 2.5, 9.75, 12.0], [6.0, 1.0, 14.5, 7.25]], np.float32)  # inside the map
    mirrored = boxes.copy()
    mirrored[:, [0, 2]] = w - boxes[:, [2, 0]]
    labels, ignore = np.array([0, 1]), np.zeros(2, bool)

    def maps(b: np.ndarray) -> dict[str, torch.Tensor]:
        t = encode_corners(b, labels, ignore, w, w, 2, 4)
        return cornernet_oracle_maps(collate([t]))

    def runner(images: torch.Tensor) -> dict[str, torch.Tensor]:
        a, m = maps(boxes), maps(mirrored)
        return {k: torch.cat([a[k], m[k]]) for k in a}

    batch = {"input": torch.zeros(1, 3, 4 * w, 4 * w), "trans_inv": torch.tensor([[[1.0, 0, 0], [0, 1, 0]]]),
             "image_size": torch.tensor([[100.0, 100.0]]), "image_id": torch.tensor([0])}
    rows, _ = run_pass(runner, task, batch, flip=True)
    assert len(rows) == 2
    for r in rows:
        found = r[0][r[0, :, 4] > 0.5]
        order = torch.argsort(found[:, 5])
        assert torch.allclose(found[order, :4], torch.from_numpy(boxes), atol=1e-5)


def test_flip_and_multi_scale_tests_run_and_merge(shapes) -> None:
    source = open_source(str(shapes["val_ann"]))
    task = build_task("cornernet", 3, num_dets=200)  # fewer pairs: a quicker soft-NMS on untrained maps
    model = tiny_model(task)
    base = EvalSettings(input_size=(SIZE, SIZE))
    single = evaluate(model, task, source, base, progress=False)
    both = evaluate(model, task, source, EvalSettings(input_size=(SIZE, SIZE), flip=True, scales=(0.5, 1.0)),
                    progress=False)
    kept_res = evaluate(model, task, source, EvalSettings(input_size=None, pad=31), progress=False)
    for result in (single, both, kept_res):
        per_image = np.bincount([r["image_id"] for r in result.results])
        assert per_image.max() <= task.K and len(result.results) > 0
        assert all(0 <= r["bbox"][0] and r["bbox"][0] + r["bbox"][2] <= SIZE + 1e-3 for r in result.results)
    assert len(both.results) >= len(single.results)  # twice the passes, merged by soft-NMS


def test_error_analysis_rows(shapes) -> None:
    source = open_source(str(shapes["val_ann"]))
    task = build_task("cornernet", 3)
    rows = error_analysis(tiny_model(task), task, source, EvalSettings(input_size=(SIZE, SIZE)), progress=False)
    assert [r.name for r in rows] == [name for name, _ in analysis_rows(task)]
    assert [r.name for r in rows] == ["none", "heatmaps", "heatmaps + offsets", "heatmaps + offsets + embeddings"]
    ap = {r.name: r.metrics["AP"] for r in rows}
    assert ap["none"] < 0.05 and ap["heatmaps + offsets + embeddings"] > 0.95
    assert "heatmaps + offsets" in format_table(rows)


def test_predictor_draws_boxes_and_corners(shapes) -> None:
    cfg = tiny_config(show_corners=True)
    set_classes(cfg, open_source(str(shapes["train_ann"])))
    task = task_from_config(cfg)
    assert task.show_corners and task.flip_test == "detections"
    predictor = Predictor(tiny_model(task), task, EvalSettings(input_size=(SIZE, SIZE), flip=True), cfg.task.class_names)
    image = read_image(sorted(shapes["val_images"].iterdir())[0])
    pred = predictor(image)
    assert pred.rows.shape[1] == 6 and pred.heat.shape == (3, 16, 16)
    rows = np.array([[10.0, 12.0, 40.0, 50.0, 0.9, 1.0]])
    plain = task_from_config(tiny_config()).draw(image, rows, cfg.task.class_names, 0.3)
    marked = task.draw(image, rows, cfg.task.class_names, 0.3)
    assert (marked[47, 37] != plain[47, 37]).any()  # inside the bottom-right square, off the box's lines
    assert predictor.draw(image, pred, 0.0, heatmap=True).shape == image.shape


# -- presets --------------------------------------------------------------------------------------------------
def test_presets() -> None:
    cfg = get_preset("cornernet_hg104_coco")
    assert (cfg.model.arch, cfg.task.name, cfg.data.input_size) == ("cornernet", "cornernet", (511, 511))
    assert (cfg.train.batch_size, cfg.train.lr) == (49, 2.5e-4)
    iterations_per_epoch = 118_287 / 49
    assert cfg.train.epochs == round(500_000 / iterations_per_epoch)
    assert cfg.train.lr_steps == (int(450_000 / iterations_per_epoch),)
    assert TASKS.get(cfg.task.name).oracle_preset == "cornernet_hg104_coco"
    small = get_preset("cornernet_cpu_small")
    task = task_from_config(small)
    assert isinstance(task, CornerNetTask) and task.corner_pool and task.penalty == "object"
    assert sum(p.numel() for p in model_from_config(small, task).parameters()) < 2e6


@pytest.mark.slow
def test_overfits_a_few_real_coco_images(shared_data, tmp_path) -> None:
    """CornerNet on the small hourglass learns 4 real COCO images (15 objects) at 128x128 in 50 steps."""
    from centernet.data.sample import Subset
    from centernet.engine.trainer import Trainer

    full = open_source(str(shared_data / "coco_mini/annotations/instances_train2017.json"))
    source = Subset(full, [i for i, s in enumerate(full.samples) if 1 <= len(s) <= 6][:4])
    cfg = tiny_config()
    cfg.data.input_size = (128, 128)
    cfg.data.flip_prob, cfg.data.color_aug, cfg.data.scale_jitter, cfg.data.shift_jitter = 0.0, False, 0.0, 0.0
    cfg.task.num_classes = len(full.class_names)
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.lr_steps = 50, 4, 2e-3, (40,)
    cfg.train.val_interval, cfg.train.seed, cfg.train.out_dir, cfg.train.device = 0, 5, str(tmp_path), "cpu"
    settings = EvalSettings.from_config(cfg)
    task = task_from_config(cfg)
    torch.manual_seed(0)
    untrained = evaluate(model_from_config(cfg, task), task, source, settings, progress=False).metrics
    torch.manual_seed(cfg.train.seed)
    trainer = Trainer(cfg, model_from_config(cfg, task), task, source, progress=False)
    trainer.fit()
    trained = evaluate(trainer.model, task, source, settings, progress=False).metrics
    print(f"train-set AP50 untrained {untrained['AP50']:.3f} -> trained {trained['AP50']:.3f}")
    assert trained["AP50"] > untrained["AP50"] + 0.3
