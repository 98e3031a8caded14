import numpy as np
import pytest

from centernet.ops.heatmap import draw_gaussian, gaussian_radius, object_radius

# SPEC 2: (h, w) -> centernet radius at 0.7, corrected radius at 0.3
SPEC_RADII = [((1, 1), 0.273320, 0.226139), ((4, 4), 1.093280, 0.904555), ((10, 10), 2.733201, 2.261387),
              ((10, 30), 4.186954, 3.107976), ((20, 40), 7.355851, 5.780456),
              ((50, 100), 18.389627, 14.451139), ((128, 128), 34.984967, 28.945756)]


@pytest.mark.parametrize("size,centernet,corrected", SPEC_RADII)
def test_gaussian_radius_matches_spec(size, centernet, corrected):
    assert gaussian_radius(*size) == pytest.approx(centernet, abs=1e-6)
    assert gaussian_radius(*size, min_overlap=0.3, variant="cornernet") == pytest.approx(corrected, abs=1e-6)


def test_gaussian_radius_vectorised_and_quirk_ratio():
    h = np.array([s[0][0] for s in SPEC_RADII])
    w = np.array([s[0][1] for s in SPEC_RADII])
    np.testing.assert_allclose(gaussian_radius(h, w), [s[1] for s in SPEC_RADII], atol=1e-6)
    # the original's formula is linear in the box side: about 0.273 s for an s x s box
    assert gaussian_radius(100, 100) == pytest.approx(100 * gaussian_radius(1, 1), rel=1e-9)
    with pytest.raises(ValueError, match="variant"):
        gaussian_radius(3, 3, variant="nope")


def test_object_radius_ceils_and_floors():
    # ceil(3.2)=4 -> 1.09 -> 1; ceil(0.1)=1 -> 0.27 -> 0
    assert object_radius(np.array([3.2, 0.1]), np.array([3.2, 0.1])).tolist() == [1, 0]


def test_draw_gaussian_values_from_spec():
    hm = np.zeros((9, 9), np.float32)
    draw_gaussian(hm, (4.7, 4.2), 2)
    assert hm[4, 4] == 1
    assert hm[4, 5] == pytest.approx(0.486752, abs=1e-6)
    assert hm[5, 5] == pytest.approx(0.236928, abs=1e-6)
    assert hm[4, 6] == pytest.approx(0.056135, abs=1e-6)
    assert hm[6, 6] == pytest.approx(0.003151, abs=1e-6)
    assert hm[4, 7] == 0 and hm.sum() == pytest.approx(hm[2:7, 2:7].sum())
    r1 = draw_gaussian(np.zeros((3, 3), np.float32), (1, 1), 1)
    assert r1[1, 0] == pytest.approx(0.135335, abs=1e-6) and r1[0, 0] == pytest.approx(0.018316, abs=1e-6)
    r0 = draw_gaussian(np.zeros((3, 3), np.float32), (1, 1), 0)
    assert r0.sum() == 1 and r0[1, 1] == 1


def test_draw_gaussian_clips_at_borders_and_merges_with_max():
    hm = np.zeros((5, 5), np.float32)
    draw_gaussian(hm, (0, 0), 2)
    assert hm[0, 0] == 1 and hm[0, 2] == pytest.approx(0.056135, abs=1e-6)
    before = hm.copy()
    draw_gaussian(hm, (1, 0), 2)  # overlapping peak: elementwise max, never a sum
    assert hm.max() == 1
    np.testing.assert_array_equal(hm, np.maximum(before, draw_gaussian(np.zeros_like(hm), (1, 0), 2)))
    draw_gaussian(hm, (40, 40), 2)  # entirely outside: no change, no error
    assert hm.max() == 1
