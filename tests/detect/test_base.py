"""detect/base.py: non-finite candidates, NMS, pixel-centre scale mapping (issue 12, item 3)."""

from __future__ import annotations

import numpy as np

from facerest_cli.detect.base import Candidates, drop_non_finite, map_to_image, nms


def test_nms_a_nan_box_suppresses_nothing():
    boxes = np.array([[0, 0, 10, 10], [np.nan, 0, 10, 10], [20, 20, 30, 30], [21, 21, 31, 31], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.95, 0.8, 0.7, 0.6], np.float32)
    # Before the fix, every IoU with the NaN box was NaN and `iou <= thr` dropped all later boxes.
    assert nms(boxes, scores, 0.4).tolist() == [0, 2, 4]


def test_nms_ignores_nan_scores_and_keeps_equal_boxes_once():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    assert nms(boxes, np.array([np.nan, 0.5, 0.7]), 0.4).tolist() == [2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.4).tolist() == []


def test_drop_non_finite_counts_every_bad_row():
    lm = np.zeros((4, 5, 2), np.float32)
    lm[3, 2, 1] = np.inf
    c = Candidates(np.array([[0, 0, 1, 1], [np.nan, 0, 1, 1], [0, 0, 1, 1], [0, 0, 1, 1]], np.float32),
                   np.array([0.9, 0.9, np.nan, 0.9], np.float32), lm, non_finite=2)
    d = drop_non_finite(c)
    assert len(d) == 1 and d.non_finite == 5 and d.scores.tolist() == [np.float32(0.9)]


def test_map_to_image_uses_pixel_centres():
    """A pass at half size, cropped at (10, 4): pass pixel u is image pixel (u + offset + 0.5) * 2 - 0.5."""
    c = Candidates(np.array([[0, 0, 4, 6]], np.float32), np.array([0.9], np.float32),
                   np.array([[[0, 0], [1, 2], [2, 3], [3, 4], [-0.5, -0.5]]], np.float32))
    m = map_to_image(c, 2.0, 2.0, 10, 4)
    np.testing.assert_allclose(m.landmarks[0], [[20.5, 8.5], [22.5, 12.5], [24.5, 14.5], [26.5, 16.5], [19.5, 7.5]])
    np.testing.assert_allclose(m.boxes[0], [20.5, 8.5, 28.5, 20.5])


def test_drop_non_finite_catches_boxes_whose_size_overflows():
    """Untrained weights give finite corners so large that width and height overflow: not a usable box."""
    c = Candidates(np.array([[-3e38, 0, 3e38, 10], [0, 0, 10, 10]], np.float32), np.array([0.9, 0.8], np.float32),
                   np.zeros((2, 5, 2), np.float32))
    d = drop_non_finite(c)
    assert len(d) == 1 and d.non_finite == 1 and d.boxes[0].tolist() == [0, 0, 10, 10]


def test_retinaface_detector_drops_a_nan_box_and_keeps_the_others():
    """The issue's case: one non-finite box from the network must not wipe out the other detections."""
    import torch

    from facerest_cli.detect.retinaface import RetinaFaceDetector
    from facerest_cli.models.retinaface import MIN_SIZES_1MB, STEPS, VARIANCES, prior_boxes

    class FakeNet(torch.nn.Module):
        min_sizes, steps, variances = MIN_SIZES_1MB, STEPS, VARIANCES

        def forward(self, x):
            h, w = x.shape[2:]
            priors = prior_boxes(h, w, self.min_sizes, self.steps)
            n = len(priors)
            loc, landms = torch.zeros(1, n, 4), torch.zeros(1, n, 10)
            conf = torch.zeros(1, n, 2)
            conf[..., 0] = 1.0
            # three confident faces on the stride-32 level (anchors 128/256 px), far apart; the middle one is NaN
            centres = priors[:, :2] * torch.tensor([w, h])
            big = priors[:, 2] * w > 100
            for k, (cx, cy) in enumerate([(80, 100), (320, 100), (560, 100)]):
                i = int(torch.argmin(((centres - torch.tensor([cx, cy])) ** 2).sum(1) + (~big) * 1e9))
                conf[0, i] = torch.tensor([0.01, 0.99])
                if k == 1:
                    loc[0, i, 0] = float("nan")
            return loc, conf, landms

    from types import SimpleNamespace

    from facerest_cli.models.retinaface import RETINAFACE_MNET_1MB

    net = FakeNet()
    net.spec = SimpleNamespace(arch_spec=RETINAFACE_MNET_1MB)  # what a built Model carries: the anchor layout
    det = RetinaFaceDetector(net, "fake", score_threshold=0.5)
    c = det.candidates(np.zeros((200, 640, 3), np.uint8))
    assert len(c) == 2 and c.non_finite == 1
    cx = np.sort((c.boxes[:, 0] + c.boxes[:, 2]) / 2)
    assert abs(cx[0] - 80) <= 16 and abs(cx[1] - 560) <= 16, cx  # the first and third, on the 32-px prior grid
