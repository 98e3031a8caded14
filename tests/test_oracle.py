"""Oracle mode: the ground truth through the real target -> decode -> image-coordinates path."""

from centernet.app.builders import open_source
from centernet.engine.evaluator import EvalSettings, evaluate
from centernet.evaluation.voc import voc_ap
from centernet.tasks import CtdetTask, build_task


def test_oracle_ap_on_real_coco_val(shared_data):
    source = open_source(str(shared_data / "coco_mini/annotations/instances_val2017.json"))
    task = CtdetTask(num_classes=len(source.class_names))
    metrics = evaluate(None, task, source, EvalSettings(), progress=False).metrics
    print(f"oracle on coco_mini val: AP {metrics['AP']:.4f} AP50 {metrics['AP50']:.4f} AP75 {metrics['AP75']:.4f}")
    assert metrics["AP"] >= 0.97  # the paper reports 99.5 on COCO val


def test_oracle_on_real_voc_scores_voc_ap50(shared_data):
    source = open_source(str(shared_data / "raccoon_voc"))
    task = CtdetTask(num_classes=len(source.class_names))
    result = evaluate(None, task, source, EvalSettings(input_size=(384, 384)), progress=False)
    ap = voc_ap(source, result.results)
    print(f"oracle on raccoon VOC: COCO AP {result.metrics['AP']:.4f}, VOC AP50 {ap['mAP']:.4f}")
    assert ap["mAP"] >= 0.97 and result.metrics["AP50"] >= 0.97


def test_cornernet_oracle_on_real_coco_val(shared_data):
    """CornerNet's ground truth (corners clipped to the 511 input as the original, 127.75 on the 128 map)
    through decode, soft-NMS and back to the image: AP 0.996 measured by bench_oracle.py, asserted at 0.992."""
    source = open_source(str(shared_data / "coco_mini/annotations/instances_val2017.json"), task="cornernet")
    task = build_task("cornernet", len(source.class_names))
    metrics = evaluate(None, task, source, EvalSettings(input_size=(511, 511)), progress=False).metrics
    print(f"cornernet oracle on coco_mini val: AP {metrics['AP']:.4f} AP50 {metrics['AP50']:.4f}")
    assert metrics["AP"] >= 0.992 and metrics["AP50"] >= 0.998


def test_untrained_model_scores_far_below_oracle(shared_data):
    from centernet.models import build_model

    source = open_source(str(shared_data / "coco_mini/annotations/instances_val2017.json"))
    from centernet.data.sample import Subset

    small = Subset(source, range(8))
    task = CtdetTask(num_classes=len(source.class_names))
    model = build_model("resdcn_18_half", task.heads())
    metrics = evaluate(model, task, small, EvalSettings(input_size=(128, 128)), progress=False).metrics
    assert metrics["AP"] < 0.05
