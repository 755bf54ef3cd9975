"""Tracking without ROS: One Euro filter values, id continuity, id uniqueness, crop proposals."""
import math
from dataclasses import replace

import numpy as np
import pytest

from hand_cpm_ros.tracking import (MIN_REPORTED_SIDE_SCORE, SLIDE_CALLS, SLIDE_SIMILARITY, HandTracker,
                                   Observation, OneEuroFilter, keypoint_similarity)


def hand_at(x: float, y: float, size: float = 100.0, score: float = 0.9) -> Observation:
    """A synthetic hand: 21 keypoints on a grid filling a size x size box at (x, y)."""
    grid = np.array([(i % 5, i // 5) for i in range(21)], np.float64) / 4.0
    keypoints = np.array([x, y]) + grid * size
    scores = np.full(21, score)
    box = (x, y, x + size, y + size * grid[:, 1].max())
    return Observation(keypoints, scores, box)


def alpha(cutoff: float, dt: float) -> float:
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def test_one_euro_first_value_passes_and_step_is_low_passed_exactly():
    smoother = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    assert smoother(np.array([0.0, 5.0]), 0.0).tolist() == [0.0, 5.0]
    out = smoother(np.array([1.0, 5.0]), 0.1)
    assert out[0] == pytest.approx(alpha(1.0, 0.1))  # 0.3858...
    assert out[1] == pytest.approx(5.0)
    out = smoother(np.array([1.0, 5.0]), 0.2)
    a = alpha(1.0, 0.1)
    assert out[0] == pytest.approx(a + (1 - a) * a)


def test_one_euro_beta_reduces_lag_on_fast_motion():
    slow, fast = OneEuroFilter(1.0, 0.0), OneEuroFilter(1.0, 1.0)
    for step in range(10):
        value = np.array([50.0 * step])
        lagging, following = slow(value, 0.033 * step), fast(value, 0.033 * step)
    assert abs(following[0] - 450.0) < 0.2 * abs(lagging[0] - 450.0)


def test_one_euro_restarts_when_time_goes_back():
    smoother = OneEuroFilter(1.0, 0.0)
    smoother(np.array([0.0]), 10.0)
    smoother(np.array([10.0]), 10.1)
    assert smoother(np.array([3.0]), 0.0).tolist() == [3.0]


@pytest.mark.parametrize('min_cutoff, beta', [(0.0, 0.0), (-1.0, 0.0), (1.0, -0.5), (math.nan, 0.0)])
def test_one_euro_rejects_bad_settings(min_cutoff, beta):
    with pytest.raises(ValueError, match='One Euro'):
        OneEuroFilter(min_cutoff, beta)


def test_ids_follow_hands_across_frames_whatever_the_order():
    tracker = HandTracker()
    left, right = tracker.update([hand_at(100, 100), hand_at(400, 120)], 0.0)
    assert (left.track_id, right.track_id) == (1, 2)
    # next frame: both moved a little, listed in the other order
    second = tracker.update([hand_at(410, 125), hand_at(108, 96)], 0.033)
    assert [t.track_id for t in second] == [2, 1]
    assert second[0].age == 2 and second[1].age == 2
    np.testing.assert_allclose(second[1].keypoints[0], (108, 96))


def test_ended_track_ids_are_never_reused():
    tracker = HandTracker()
    (first,) = tracker.update([hand_at(100, 100)], 0.0)
    assert tracker.update([], 0.033) == []
    (again,) = tracker.update([hand_at(100, 100)], 0.066)
    assert (first.track_id, again.track_id) == (1, 2)
    assert [t.track_id for t in tracker.update([hand_at(100, 100), hand_at(300, 300)], 0.1)] == [2, 3]


def test_far_jump_starts_a_new_track():
    tracker = HandTracker()
    tracker.update([hand_at(100, 100)], 0.0)
    (moved,) = tracker.update([hand_at(400, 400)], 0.033)
    assert moved.track_id == 2


def test_observation_naming_its_track_continues_it_however_far_it_moved():
    tracker = HandTracker()
    (part,) = tracker.update([hand_at(150, 150, size=30)], 0.0)
    whole = hand_at(100, 100, size=160)  # the hand around that part: too unlike it to match
    assert tracker.similarity(part, whole) < tracker.match_threshold
    whole.continues = part.track_id
    (track,) = tracker.update([whole], 0.033)
    assert track.track_id == part.track_id and track.age == 2 and track.box == whole.box
    stale = hand_at(400, 100, size=160)
    stale.continues = 99  # no such track (any more): matched as usual, here a new track
    assert [t.track_id for t in tracker.update([stale], 0.066)] == [2]


def test_weak_observation_continues_a_track_but_starts_none():
    tracker = HandTracker()
    (track,) = tracker.update([replace(hand_at(100, 100), score=0.6)], 0.0, min_new_score=0.25)
    weak_same, weak_new = replace(hand_at(104, 100), score=0.2), replace(hand_at(400, 300), score=0.2)
    continued, refused = tracker.update([weak_same, weak_new], 0.033, min_new_score=0.25)
    assert continued.track_id == track.track_id and refused is None
    assert [t.track_id for t in tracker.tracks] == [track.track_id]
    (started,) = tracker.update([weak_new], 0.066)  # no minimum: any hand starts a track
    assert started.track_id not in (None, track.track_id)


def test_crossing_hands_with_overlapping_boxes_keep_their_ids():
    """Two hands whose boxes overlap heavily but whose keypoints differ: keypoint similarity
    decides, so the ids do not swap."""
    tracker = HandTracker()
    a, b = hand_at(100, 100), hand_at(130, 100)
    tracker.update([a, b], 0.0)
    a2, b2 = hand_at(102, 100), hand_at(128, 100)
    ids = [t.track_id for t in tracker.update([b2, a2], 0.033)]
    assert ids == [2, 1]


def test_keypoint_similarity_values():
    points = np.zeros((21, 2))
    visible = np.ones(21, bool)
    assert keypoint_similarity(points, visible, points, visible, 100.0) == 1.0
    shifted = points + [25.0, 0.0]  # one sigma (0.25 * 100) away
    assert keypoint_similarity(points, visible, shifted, visible, 100.0) == pytest.approx(math.exp(-0.5))
    assert keypoint_similarity(points, visible, shifted, ~visible, 100.0) == 0.0


def test_proposals_cover_only_confident_keypoints():
    tracker = HandTracker(keypoint_threshold=0.5)
    hand = hand_at(100, 100)
    hand.scores = hand.scores.copy()
    hand.scores[[4, 20]] = 0.1  # (200, 100) and (100, 200) not confident: row 4 drops out
    hand.keypoints[4] = (900, 900)
    tracker.update([hand], 0.0)
    ((box, track, evidence),) = tracker.proposals(0.0)
    assert track.track_id == 1 and evidence == 1.0
    assert box == pytest.approx((100.0, 100.0, 200.0, 175.0))


def test_proposals_need_two_confident_keypoints():
    tracker = HandTracker(keypoint_threshold=0.5)
    hand = hand_at(100, 100, score=0.1)
    hand.scores = hand.scores.copy()
    hand.scores[0] = 0.9
    tracker.update([hand], 0.0)
    assert tracker.proposals(0.0) == []


def test_track_evidence_halves_every_half_life_until_new_evidence_continues_it():
    tracker = HandTracker(half_life=0.5)
    hand = hand_at(100, 100)
    hand.evidence = 0.8
    tracker.update([hand], 10.0)
    assert [evidence for _, _, evidence in tracker.proposals(10.0)] == [0.8]
    assert tracker.proposals(10.5)[0][2] == pytest.approx(0.4)
    assert tracker.proposals(11.5)[0][2] == pytest.approx(0.1)
    assert tracker.proposals(9.0)[0][2] == 0.8  # an earlier frame (a bag replayed) fades nothing
    faded = hand_at(102, 100)
    faded.evidence = tracker.proposals(11.0)[0][2]  # found again by tracking alone at 11 s
    (track,) = tracker.update([faded], 11.0)
    assert (track.track_id, track.evidence, track.time) == (1, pytest.approx(0.2), 11.0)
    assert tracker.proposals(11.5)[0][2] == pytest.approx(0.1)
    confirmed = hand_at(104, 100)
    confirmed.evidence = 0.9  # the localiser finds it again
    tracker.update([confirmed], 11.5)
    assert tracker.proposals(11.5)[0][2] == 0.9


@pytest.mark.parametrize('half_life', [0.0, -1.0, math.inf, math.nan])
def test_bad_half_life_is_refused(half_life):
    with pytest.raises(ValueError, match='half-life'):
        HandTracker(half_life=half_life)


def sided(x: float, side: int, score: float) -> Observation:
    return replace(hand_at(x, 100), handedness=side, handedness_score=score)


def test_handedness_is_kept_when_later_observations_do_not_know_it():
    tracker = HandTracker()
    tracker.update([sided(100, 2, 0.8)], 0.0)
    for step in range(1, 4):  # unknown, and a 0.5 call that favours no side: no vote
        (track,) = tracker.update([sided(100 + step, 1 if step == 3 else 0,
                                         0.5 if step == 3 else 0.0)], 0.033 * step)
        assert (track.handedness, track.handedness_score) == (2, pytest.approx(0.8))


def test_a_track_side_is_the_vote_of_its_calls_not_the_latest_one():
    tracker = HandTracker()
    for step in range(10):
        (track,) = tracker.update([sided(100 + step, 2, 0.9)], 0.033 * step)
    assert (track.handedness, track.handedness_score) == (2, pytest.approx(0.9))
    for step in range(10, 13):  # a short run of wrong calls is outvoted, and lowers the score
        (track,) = tracker.update([sided(100 + step, 1, 0.9)], 0.033 * step)
        assert track.handedness == 2 and 0.5 < track.handedness_score < 0.9
    one_sure_call = HandTracker()
    for step in range(5):  # a call of 1.0 is clipped: it does not veto five calls of 0.8
        (track,) = one_sure_call.update([sided(100 + step, 2 if step < 4 else 1,
                                               0.8 if step < 4 else 1.0)], 0.033 * step)
    assert track.votes.side == 2  # (0.54 sure: reported as no side, MIN_REPORTED_SIDE_SCORE)
    tracker_b = HandTracker()
    (other,) = tracker_b.update([sided(300, 1, 0.6)], 0.0)
    assert (other.handedness, other.handedness_score) == (1, pytest.approx(0.6))  # tracks vote apart


def test_a_vote_less_sure_than_the_report_threshold_reports_no_side():
    tracker = HandTracker()
    (track,) = tracker.update([sided(100, 2, 0.8)], 0.0)  # one wrong call, then a right one
    assert (track.handedness, track.handedness_score) == (2, pytest.approx(0.8))
    (track,) = tracker.update([sided(101, 1, 0.78)], 0.033)  # the vote: right, 0.51 sure
    assert track.votes.side == 2 and 0.5 < track.votes.score < MIN_REPORTED_SIDE_SCORE
    assert (track.handedness, track.handedness_score) == (0, 0.0)
    for step in range(2, 5):  # more right calls make the vote sure of the true side
        (track,) = tracker.update([sided(100 + step, 1, 0.9)], 0.033 * step)
    assert track.handedness == 1 and track.handedness_score >= MIN_REPORTED_SIDE_SCORE


def test_a_track_side_follows_a_lasting_change_of_the_calls():
    # e.g. two crossing hands whose ids swapped: the old votes fade (SIDE_MEMORY)
    tracker = HandTracker()
    for step in range(60):
        (track,) = tracker.update([sided(100, 2, 0.9)], 0.033 * step)
    for step in range(60, 200):
        (track,) = tracker.update([sided(100, 1, 0.9)], 0.033 * step)
    assert track.handedness == 1 and track.handedness_score > 0.75


def mirrored(x: float, side: int, score: float) -> Observation:
    """Another hand in the same box as sided(x, ...): its keypoints in the reverse order."""
    hand = sided(x, side, score)
    return replace(hand, keypoints=hand.keypoints[::-1].copy())


def test_a_track_that_jumps_onto_another_hand_takes_that_hands_side_after_a_run_of_sure_calls():
    tracker = HandTracker()
    for step in range(60):
        (track,) = tracker.update([sided(100, 2, 0.9)], 0.033 * step)
    assert tracker.keypoint_similarity(track, mirrored(100, 1, 0.9)) < SLIDE_SIMILARITY
    for step in range(60, 60 + SLIDE_CALLS):  # the box still matches: the track goes on with the new hand
        (continued,) = tracker.update([mirrored(100, 1, 0.9)], 0.033 * step)
        assert continued is track
        if step < 60 + SLIDE_CALLS - 1:  # the 60 calls of "right" outweigh the new ones until then
            assert track.handedness == 2
    assert (track.handedness, track.handedness_score) == (1, pytest.approx(0.9))
    assert track.slide_votes is None


@pytest.mark.parametrize('calls', [[2] * SLIDE_CALLS, [1] * 6 + [2] * 4],
                         ids=['the same side', 'mixed calls'])
def test_a_jump_without_a_run_of_sure_contrary_calls_keeps_the_side(calls):
    tracker = HandTracker()
    for step in range(60):
        (track,) = tracker.update([sided(100, 2, 0.9)], 0.033 * step)
    for step, side in enumerate(calls, start=60):  # 6 of 10 "left" at 0.9: their vote is 0.61 sure
        (track,) = tracker.update([mirrored(100, side, 0.9)], 0.033 * step)
    assert track.handedness == 2 and track.slide_votes is None


def test_a_run_of_sure_contrary_calls_without_a_jump_does_not_turn_the_side():
    tracker = HandTracker()
    for step in range(60):
        (track,) = tracker.update([sided(100, 2, 0.9)], 0.033 * step)
    for step in range(60, 60 + 2 * SLIDE_CALLS):
        (track,) = tracker.update([sided(100, 1, 0.9)], 0.033 * step)
    assert track.handedness == 2 and track.slide_votes is None


def test_smoothing_filters_keypoints_of_continued_tracks():
    tracker = HandTracker(smoothing=True, min_cutoff=1.0, beta=0.0)
    tracker.update([hand_at(100, 100)], 0.0)
    (track,) = tracker.update([hand_at(110, 100)], 0.1)
    expected_x = 100 + alpha(1.0, 0.1) * 10
    assert track.keypoints[0] == pytest.approx((expected_x, 100.0))
    tracker.configure_smoothing(min_cutoff=1e6, beta=0.0)  # practically no smoothing
    (track,) = tracker.update([hand_at(120, 100)], 0.2)
    assert track.keypoints[0] == pytest.approx((120.0, 100.0), abs=1e-3)
