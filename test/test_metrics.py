"""Keypoint and detection metrics on hand-made arrays with values worked out by hand."""
import json
import math

import numpy as np
import pytest

from hand_cpm_ros.metrics import (auc, average_precision, detection_pr, epe, frame_outcomes, gross_errors,
                                  hand_box_size, handedness_summary, keypoint_errors, match_detections,
                                  miss_reasons, pck, pck_curve, precision_recall_curve, recall_by_group,
                                  summary)

GT = np.zeros((1, 3, 2))
PRED = np.array([[[0.0, 0.0], [3.0, 4.0], [1.0, 1.0]]])   # errors 0, 5, sqrt(2)
VISIBLE = np.ones((1, 3), bool)
NORM = np.array([10.0])                                     # normalised errors 0, 0.5, 0.1414


def test_keypoint_errors_and_epe():
    np.testing.assert_allclose(keypoint_errors(PRED, GT), [[0.0, 5.0, math.sqrt(2)]])
    assert epe(PRED, GT, VISIBLE) == pytest.approx((5 + math.sqrt(2)) / 3)
    assert epe(PRED, GT, [[True, False, True]]) == pytest.approx(math.sqrt(2) / 2)
    assert keypoint_errors([[[np.nan, 0.0]]], [[[0.0, 0.0]]])[0, 0] == np.inf


def test_pck_fractions_and_never_visible_keypoint():
    overall, per_keypoint = pck(PRED, GT, VISIBLE, NORM, 0.2)
    assert overall == pytest.approx(2 / 3)
    np.testing.assert_array_equal(per_keypoint, [1.0, 0.0, 1.0])
    pred = np.concatenate([PRED, PRED + [[[0.0, 0.0], [0.0, 0.0], [9.0, 9.0]]]])
    gt = np.zeros((2, 3, 2))
    visible = np.array([[True, True, False], [True, False, False]])
    overall, per_keypoint = pck(pred, gt, visible, [10.0, 10.0], 0.2)
    assert overall == pytest.approx(2 / 3)            # kp0 twice right, kp1 once wrong
    np.testing.assert_array_equal(per_keypoint[:2], [1.0, 0.0])
    assert math.isnan(per_keypoint[2])


def test_pck_curve_and_auc_by_hand():
    np.testing.assert_allclose(pck_curve(PRED, GT, VISIBLE, NORM, [0.0, 0.25, 0.5]), [1 / 3, 2 / 3, 1.0])
    # trapezoids: 0.25 * (1/3 + 2/3) / 2 + 0.25 * (2/3 + 1) / 2 = 1/3, divided by 0.5
    assert auc(PRED, GT, VISIBLE, NORM, max_threshold=0.5, steps=3) == pytest.approx(2 / 3)
    assert auc(GT, GT, VISIBLE, NORM) == pytest.approx(1.0)


def test_hand_box_size_and_summary():
    gt = np.array([[[0.0, 0.0], [10.0, 4.0], [3.0, 20.0]],
                   [[5.0, 5.0], [100.0, 100.0], [7.0, 7.0]]])
    visible = np.array([[True, True, True], [True, False, False]])
    np.testing.assert_allclose(hand_box_size(gt, visible), [20.0, 0.0])
    pred = gt + np.array([[[0.0, 0.0], [0.0, 3.0], [0.0, 1.5]], [[50.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])
    report = summary(pred, gt, visible)
    assert list(report) == ['n', 'pck@0.05', 'pck@0.1', 'pck@0.2', 'auc', 'epe_px']
    assert report['n'] == 1                     # the one-keypoint sample has no box size
    assert report['pck@0.05'] == pytest.approx(1 / 3)   # errors / 20 = 0, 0.15, 0.075
    assert report['pck@0.1'] == pytest.approx(2 / 3)
    assert report['pck@0.2'] == pytest.approx(1.0)
    assert report['epe_px'] == pytest.approx(1.5)
    assert 0 < report['auc'] < 1
    json.dumps(report)


def test_bad_normaliser_and_shapes_raise():
    with pytest.raises(ValueError, match='normalizer must be finite and > 0'):
        pck(PRED, GT, VISIBLE, [0.0], 0.1)
    with pytest.raises(ValueError, match=r'\(N, K, 2\)'):
        epe(PRED[0], GT[0], VISIBLE)


GT_BOXES = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]])]
PRED_BOXES = [np.array([[0, 0, 10, 10], [0, 0, 10, 11], [20, 20, 30, 31], [50, 50, 60, 60]])]
PRED_SCORES = [np.array([0.9, 0.8, 0.7, 0.6])]   # TP, duplicate FP, TP, FP


def test_match_detections_greedy_by_score():
    np.testing.assert_array_equal(match_detections(PRED_BOXES[0], PRED_SCORES[0], GT_BOXES[0]), [0, -1, 1, -1])
    # the same boxes with the duplicate scored higher: it takes gt 0 instead
    np.testing.assert_array_equal(match_detections(PRED_BOXES[0], [0.8, 0.9, 0.7, 0.6], GT_BOXES[0]),
                                  [-1, 0, 1, -1])
    np.testing.assert_array_equal(match_detections(PRED_BOXES[0], PRED_SCORES[0], np.zeros((0, 4))),
                                  [-1, -1, -1, -1])


def test_precision_recall_and_average_precision():
    assert detection_pr(PRED_BOXES, PRED_SCORES, GT_BOXES, score_threshold=0.75) == (0.5, 0.5)
    assert detection_pr(PRED_BOXES, PRED_SCORES, GT_BOXES) == (0.5, 1.0)
    # ranking TP, FP, TP, FP: precision envelope 1 at recall 0.5, 2/3 at recall 1
    assert average_precision(PRED_BOXES, PRED_SCORES, GT_BOXES) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # a second image whose gt is missed halves the reachable recall
    boxes = PRED_BOXES + [np.zeros((0, 4))]
    scores = PRED_SCORES + [np.zeros(0)]
    gts = GT_BOXES + [np.array([[0, 0, 5, 5], [10, 10, 15, 15]])]
    assert average_precision(boxes, scores, gts) == pytest.approx(0.25 * 1 + 0.25 * 2 / 3)
    assert math.isnan(average_precision(PRED_BOXES, PRED_SCORES, [np.zeros((0, 4))]))


def test_precision_recall_curve_follows_the_ranked_detections():
    # ranking 0.9 TP, 0.8 FP (duplicate), 0.7 TP, 0.6 FP over two ground-truth boxes
    curve = precision_recall_curve(PRED_BOXES, PRED_SCORES, GT_BOXES)
    np.testing.assert_allclose(curve['score'], [0.9, 0.8, 0.7, 0.6])
    np.testing.assert_allclose(curve['precision'], [1.0, 0.5, 2 / 3, 0.5])
    np.testing.assert_allclose(curve['recall'], [0.5, 0.5, 1.0, 1.0])
    assert curve['hands'] == 2
    empty = precision_recall_curve(PRED_BOXES, PRED_SCORES, [np.zeros((0, 4))])
    assert empty['hands'] == 0 and np.all(np.isnan(empty['recall']))


def test_recall_by_group_counts_each_labelled_truth_box():
    boxes = PRED_BOXES + [np.zeros((0, 4))]
    scores = PRED_SCORES + [np.zeros(0)]
    gts = GT_BOXES + [np.array([[0, 0, 5, 5], [10, 10, 15, 15]])]
    groups = [['large', 'small'], ['small', 'small']]
    assert recall_by_group(boxes, scores, gts, groups) == {
        'large': {'hands': 1, 'recall': 1.0}, 'small': {'hands': 3, 'recall': 1 / 3}}
    # at 0.75 only the 0.9 detection counts: the 0.7 one no longer finds gt 1 of the first image
    assert recall_by_group(boxes, scores, gts, groups, score_threshold=0.75)['small'] == {
        'hands': 3, 'recall': 0.0}
    with pytest.raises(ValueError, match='1 group labels for 2 ground-truth boxes'):
        recall_by_group(PRED_BOXES, PRED_SCORES, GT_BOXES, [['large']])


def test_miss_reasons_say_why_each_truth_box_is_missed():
    truth = [np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [80, 80, 90, 90]])]
    boxes = [np.array([[0, 0, 10, 10],       # found at 0.9
                       [20, 20, 30, 31],     # the right box, scored 0.3: below the threshold
                       [40, 40, 46, 46]])]   # IoU 0.36 with the third hand: box off
    scores = [np.array([0.9, 0.3, 0.8])]
    assert miss_reasons(boxes, scores, truth, score_threshold=0.5) == {
        'found': 1, 'scored below the threshold': 1, 'box off': 1, 'not found': 1}
    # at threshold 0.2 the second hand is found; at IoU 0.3 the third one is too
    assert miss_reasons(boxes, scores, truth, score_threshold=0.2)['found'] == 2
    assert miss_reasons(boxes, scores, truth, iou_threshold=0.3, score_threshold=0.2)['found'] == 3
    # one box over two hands: the hand it is not matched to counts as box off, not as found
    two_hands = [np.array([[0, 0, 10, 10], [0, 0, 10, 11]])]
    assert miss_reasons([np.array([[0, 0, 10, 10]])], [np.array([0.9])], two_hands) == {
        'found': 1, 'scored below the threshold': 0, 'box off': 1, 'not found': 0}
    assert miss_reasons([np.zeros((0, 4))], [np.zeros(0)], truth)['not found'] == 4
    with pytest.raises(ValueError, match='one entry per image'):
        miss_reasons(boxes, scores, truth + truth)


def test_frame_outcomes_name_each_hands_outcome_and_the_false_boxes():
    truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50], [80, 80, 90, 90]])
    boxes = np.array([[0, 0, 10, 10],         # found at 0.9
                      [20, 20, 30, 31],       # the right box, scored 0.3
                      [40, 40, 46, 46],       # IoU 0.36 with the third hand: off, and a false box
                      [0, 0, 10, 10.5],       # a duplicate of the first: a false box
                      [200, 200, 220, 220]])  # nowhere near a hand: a false box
    scores = np.array([0.9, 0.3, 0.8, 0.7, 0.6])
    reasons, false_boxes = frame_outcomes(boxes, scores, truth, score_threshold=0.5)
    assert reasons == ['found', 'scored below the threshold', 'box off', 'not found']
    assert false_boxes.tolist() == [2, 3, 4]
    reasons, false_boxes = frame_outcomes(boxes, scores, truth, score_threshold=0.2)
    assert reasons[:2] == ['found', 'found'] and false_boxes.tolist() == [2, 3, 4]
    reasons, false_boxes = frame_outcomes(boxes, scores, np.zeros((0, 4)), score_threshold=0.65)
    assert reasons == [] and false_boxes.tolist() == [0, 2, 3]   # no hand: every kept box is false


def test_gross_errors_say_where_each_wrong_keypoint_landed():
    gt = np.zeros((1, 21, 2))
    gt[0, :, 0] = np.arange(21) * 100.0          # keypoint k at x = 100 k
    pred = gt.copy()
    visible = np.ones((1, 21), bool)
    visible[0, 16] = False
    landings = {4: 20,     # thumb tip on the little tip: mirrored finger
                8: 12,     # index tip on the middle tip: neighbouring finger
                5: 8,      # index base on its own tip: same finger
                0: 9,      # the wrist on the middle base: other keypoint
                14: 4,     # a ring joint on the thumb tip: other keypoint
                19: 16}    # on the hidden ring tip, which does not count: nowhere near
    for keypoint, target in landings.items():
        pred[0, keypoint] = gt[0, target]
    pred[0, 10] = [1000.0, 500.0]                # far from everything: nowhere near
    pred[0, 16] = [9999.0, 9999.0]               # hidden: not counted at all
    report = gross_errors(pred, gt, visible, [1000.0], threshold=0.2, near=0.05)
    assert report['visible'] == 20 and report['gross'] == 7
    assert report['kinds'] == {'same finger': 1, 'neighbouring finger': 1, 'mirrored finger': 1,
                               'other keypoint': 2, 'nowhere near a keypoint': 2}
    expected = np.zeros((6, 6), int)
    for row, column in [(1, 5), (2, 3), (2, 2), (0, 3), (4, 1)]:   # (wrist, thumb, ..., little)
        expected[row, column] = 1
    np.testing.assert_array_equal(report['confusion'], expected)
    json.dumps(report)
    with pytest.raises(ValueError, match='21-keypoint'):
        gross_errors(PRED, GT, VISIBLE, NORM)


def test_handedness_summary_counts_sure_and_right_calls():
    left = [0.9, 0.8, 0.6, 0.3, 0.1, 0.5]
    truth = [True, False, True, False, True, False]
    # likelier side: L L L R R L(0.5) -> right on hands 0, 2, 3: 3 of 6
    result = handedness_summary(left, truth, min_score=0.75)
    assert result['n'] == 6 and result['accuracy'] == pytest.approx(0.5)
    # sure (>= 0.75 either way): 0.9, 0.8, 0.1 -> right on hand 0 only
    assert result['coverage'] == pytest.approx(0.5)
    assert result['accuracy_when_sure'] == pytest.approx(1 / 3)
    assert np.isnan(handedness_summary([0.6], [True], 0.75)['accuracy_when_sure'])
    with pytest.raises(ValueError, match='2 probabilities for 1 hands'):
        handedness_summary([0.1, 0.2], [True], 0.75)
    with pytest.raises(ValueError, match='min_score'):
        handedness_summary([0.1], [True], 0.4)
