"""The CornerNet task through the shared engine: architecture, options, oracle round trip, flip and
multi-scale tests, error analysis, predictor pictures, presets."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import centernet
from centernet.app.builders import model_from_config, open_source, set_classes, task_from_config
from centernet.config import ExperimentConfig
from centernet.data import make_synthetic_dataset, read_image
from centernet.data.pipeline import TrainDataset, collate
from centernet.data.transforms import output_side, padded_size, prepare_test_image
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


# -- the original's test input and corner targets ------------------------------------------------------------
def test_keep_res_input_is_the_originals() -> None:
    """keep_res pads each side to n | 127 (480 -> 511, 640 -> 767; CenterNet: (n | 127) + 1), copies the image
    in at an integer offset (centre pixel on centre pixel) and maps the map back with in / out per side."""
    assert [padded_size(n, 127, "cornernet") for n in (480, 511, 512, 640)] == [511, 511, 639, 767]
    assert [padded_size(n, 127) for n in (480, 511, 640)] == [512, 512, 768]  # CenterNet unchanged
    with pytest.raises(ValueError, match="pad style"):
        padded_size(480, 127, "corner")
    rng = np.random.RandomState(0)
    image = rng.randint(1, 255, (480, 640, 3)).astype(np.uint8)
    zeros, ones = np.zeros(3, np.float32), np.ones(3, np.float32)
    prepared = prepare_test_image(image, zeros, ones, None, 127, 4, pad_style="cornernet")
    assert prepared.image.shape == (3, 511, 767) and prepared.output_size == (192, 128)
    dy, dx = 255 - 240, 383 - 320  # canvas centre (inp // 2) minus image centre (n // 2)
    np.testing.assert_allclose(prepared.image[:, dy:dy + 480, dx:dx + 640] * 255, image.transpose(2, 0, 1), atol=1e-3)
    assert prepared.image[:, :dy].max() == 0 and prepared.image[:, :, dx + 640:].max() == 0
    np.testing.assert_allclose(prepared.trans_inv, [[767 / 192, 0, -dx], [0, 511 / 128, -dy]])
    centernet = prepare_test_image(image, zeros, ones, None, 127, 4)
    assert centernet.image.shape == (3, 512, 768) and centernet.trans_inv is None
    # a side already of the form n | 127 keeps its size and loses its last pixel, as the original's crop
    odd = prepare_test_image(image[:, :511], zeros, ones, None, 127, 4, pad_style="cornernet")
    assert odd.image.shape[2] == 511 and odd.image[:, dy:dy + 480, -1].max() == 0
    np.testing.assert_allclose(odd.image[:, dy:dy + 480, :510] * 255, image[:, :510].transpose(2, 0, 1), atol=1e-3)


@pytest.mark.parametrize("flip", [False, True])
def test_keep_res_detections_come_back_to_the_image(flip: bool) -> None:
    """The predictor tests a CornerNet task with its own keep_res layout (an odd input side) and maps the
    corners of perfect maps back onto the image's boxes, with and without the flip test."""
    task = build_task("cornernet", 2)
    image = np.zeros((100, 140, 3), np.uint8)
    boxes = np.array([[10.5, 20.25, 90.0, 70.5], [60.0, 5.0, 130.0, 95.0]], np.float32)  # image pixels
    labels, ignore = np.array([0, 1]), np.zeros(2, bool)
    inp_w, inp_h, out_w, out_h = 140 | 31, 100 | 31, 40, 32  # 159 x 127 -> a 40 x 32 map
    on_map = boxes.copy()
    on_map[:, [0, 2]] = (boxes[:, [0, 2]] + (inp_w // 2 - 70)) * out_w / inp_w
    on_map[:, [1, 3]] = (boxes[:, [1, 3]] + (inp_h // 2 - 50)) * out_h / inp_h
    mirrored = on_map.copy()
    mirrored[:, [0, 2]] = out_w - on_map[:, [2, 0]]
    seen = []

    def maps(b: np.ndarray) -> dict[str, torch.Tensor]:
        return cornernet_oracle_maps(collate([encode_corners(b, labels, ignore, out_w, out_h, 2, 4)]))

    def runner(images: torch.Tensor) -> dict[str, torch.Tensor]:
        seen.append(tuple(images.shape))
        halves = [maps(on_map)] + ([maps(mirrored)] if images.shape[0] == 2 else [])
        return {k: torch.cat([h[k] for h in halves]) for k in halves[0]}

    predictor = Predictor(None, task, EvalSettings(input_size=None, pad=31, flip=flip), ["a", "b"], runner=runner)
    rows = predictor(image).rows
    assert seen == [(1 + flip, 3, inp_h, inp_w)]
    best = rows[rows[:, 4] > 0.5]
    best = best[np.argsort(best[:, 5])]
    assert len(best) == 2
    np.testing.assert_allclose(best[:, :4], boxes, atol=1e-3)


def test_corner_targets_are_clipped_as_the_originals(tmp_path) -> None:
    """A box touching the image's right and bottom edges: its bottom-right corner is clipped to the 511 input's
    last pixel, 510 * 128 / 511 = 127.75 on the 128 map (the original's rule), not to the map's last pixel
    127; ctdet's targets of the same box still clip at 127."""
    import json

    import cv2

    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), np.full((64, 64, 3), 128, np.uint8))
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 64}],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [8.0, 16.0, 56.0, 48.0],
                             "area": 2688.0, "iscrowd": 0}]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    source = open_source(str(tmp_path / "ann.json"), str(tmp_path / "images"))
    item = TrainDataset(source, build_task("cornernet", 1), (511, 511), augment=False)[0]
    bound = 510 * 128 / 511  # 127.7495
    assert item["br_ind"][0] == 127 * 128 + 127 and item["tag_mask"][0] == 1
    np.testing.assert_allclose(item["br_regr"][0], [bound - 127, bound - 127], atol=1e-4)
    np.testing.assert_allclose(item["tl_regr"][0], [16 % 1, 32 % 1], atol=1e-4)  # (8, 16) x 2 -> (16, 32)
    assert item["augmented"] == 0
    ctdet = TrainDataset(source, build_task("ctdet", 1), (512, 512), augment=False)[0]
    np.testing.assert_allclose(ctdet["wh"][0], [127 - 16, 127 - 32], atol=1e-4)


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
    settings = EvalSettings.from_config(cfg)  # tested as the original: keep_res n | 127, always flipped
    assert settings.input_size is None and settings.pad == 127 and settings.flip
    assert task_from_config(cfg).test_pad_style == "cornernet"
    assert not EvalSettings.from_config(get_preset("cornernet_cpu_small")).flip
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
