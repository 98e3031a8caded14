import numpy as np
import pytest

from centernet.data.sample import DetectionSource, Sample
from centernet.evaluation.voc import voc_ap


class ListSource(DetectionSource):
    def __init__(self, samples, class_names):
        self.samples, self.class_names = samples, class_names


def _source():
    a = Sample(1, "a.jpg", 100, 100, [[0, 0, 10, 10], [50, 50, 90, 90], [20, 20, 30, 30]], [0, 0, 1],
               ignore=np.array([False, False, True]))
    b = Sample(2, "b.jpg", 100, 100, [[10, 10, 40, 40]], [1])
    return ListSource([a, b], ["cat", "dog"])


def _det(image_id, box, cls, score):
    x1, y1, x2, y2 = box
    return {"image_id": image_id, "category_id": cls + 1, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score}


def test_perfect_detections_score_one_and_difficult_is_ignored():
    results = [_det(1, [0, 0, 10, 10], 0, 0.9), _det(1, [50, 50, 90, 90], 0, 0.8),
               _det(2, [10, 10, 40, 40], 1, 0.7), _det(1, [20, 20, 30, 30], 1, 0.95)]  # the last is "difficult"
    ap = voc_ap(_source(), results)
    assert ap == {"mAP": 1.0, "cat": 1.0, "dog": 1.0}


def test_false_positive_and_duplicate_lower_precision():
    results = [_det(1, [60, 0, 70, 10], 0, 0.99),  # false positive ranked first
               _det(1, [0, 0, 10, 10], 0, 0.9), _det(1, [0, 0, 10, 10], 0, 0.85),  # duplicate -> FP
               _det(1, [50, 50, 90, 90], 0, 0.8)]
    ap = voc_ap(_source(), results)
    # recall 0.5 at precision 1/2, recall 1 at precision 2/4: all-point AP = 0.5
    assert ap["cat"] == pytest.approx(0.5) and ap["dog"] == 0.0
    eleven = voc_ap(_source(), results, eleven_point=True)
    assert eleven["cat"] == pytest.approx(0.5)
