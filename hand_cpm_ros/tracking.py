"""Hands across frames: stable track ids, crop proposals from each track's last confident keypoints,
and optional One Euro smoothing of the keypoints.

Pure numpy (no ROS, no torch): HandPipeline uses it for the node and the offline CLI alike.
A track lives exactly as long as its hand is found in consecutive frames; ids come from one counter
per tracker and are never reused. Each track keeps the evidence that a hand is there (the score of
the localiser box or ROI that found it) and that evidence fades with a half-life while only the
track itself finds the hand again: the keypoint network alone cannot keep a false box alive. A
hand may have to score more to start a track than to continue one (HandTracker.update's
min_new_score), so that one weak false box does not start a track that feeds itself its own crops.
A hand's side does not change while it is tracked, so a track's side is the vote of all its
observations' sides (log-odds, older ones fading slowly), not the latest call alone. A track whose
keypoints jump (it may have slid onto another hand, e.g. when frames were dropped as a second hand
came in) starts a second vote beside the first; if the next calls clearly contradict the track's
side, that second vote replaces the first.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from .geometry import box_from_keypoints, box_iou

Box = tuple[float, float, float, float]

# Seconds in which a track's evidence halves while only tracking finds its hand: 2 s halves the
# false hands of the node benchmark's 1-hand stream and keeps as many true ones.
DEFAULT_HALF_LIFE_S = 2.0

# Each new side vote multiplies the weight of the earlier ones by this: a memory of about 1 / (1 -
# SIDE_MEMORY) observations (3 s at 30 Hz), long enough to outvote a few seconds of wrong calls
# (they come in runs: one pose seen for a while), short enough to follow two hands that swapped ids.
SIDE_MEMORY = 0.99
# A side score is clipped to this before it becomes log-odds, so one call of 1.0 is not a veto.
MAX_SIDE_SCORE = 0.99
# A continued track whose keypoints are less similar than this to its last ones may have slid onto
# another hand (keypoint_similarity: the same hand scores 0.83-1.00 frame to frame, 0.63 after 8
# dropped frames; a track that slid onto a new hand when the node dropped frames, 0.23-0.32).
SLIDE_SIMILARITY = 0.5
# After such a jump, the next calls are also added up alone; once there are this many, they replace
# the track's vote if they give the other side with at least SLIDE_SIDE_SCORE (the logistic of
# their mean vote): a run of sure contrary calls, not one, is needed to tell a slide.
SLIDE_CALLS = 10
SLIDE_SIDE_SCORE = 0.75
# A track reports its vote's side only when the vote is at least this sure, else UNKNOWN: a vote
# near 0.5 (a first wrong call met by right ones) is no answer. A single call (at least 0.75, the
# pipeline's MIN_HANDEDNESS_SCORE) is always reported. Chosen on the tracked demo streams of seeds
# 5-19, where it removed 21 of 49 wrong sides for 3 right ones (docs/pipeline_rules.md).
MIN_REPORTED_SIDE_SCORE = 0.55


class OneEuroFilter:
    """One Euro filter (Casiez, Roussel, Vogel, CHI 2012) applied element-wise to an array.

    Each element is low-pass filtered with a cut-off that rises with its speed:
    `cutoff = min_cutoff + beta * |dx/dt|` (Hz), so a still hand does not jitter and a moving one
    does not lag. Times are in seconds; a time that does not increase restarts the filter
    (e.g. a bag played again from its start).
    """

    def __init__(self, min_cutoff: float = 1.0, beta: float = 0.0, derivative_cutoff: float = 1.0):
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.derivative_cutoff = derivative_cutoff
        validate_one_euro(min_cutoff, beta)
        if not derivative_cutoff > 0:
            raise ValueError(f'derivative_cutoff must be > 0 Hz, got {derivative_cutoff}')
        self._value: np.ndarray | None = None
        self._derivative: np.ndarray | None = None
        self._time: float | None = None

    @staticmethod
    def _smoothing_factor(cutoff: float | np.ndarray, dt: float) -> float | np.ndarray:
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, value: np.ndarray, time: float) -> np.ndarray:
        """Filtered copy of `value` observed at `time` (seconds)."""
        value = np.asarray(value, dtype=np.float64)
        if (self._value is None or self._time is None or time <= self._time
                or value.shape != self._value.shape):
            self._value, self._derivative, self._time = value.copy(), np.zeros_like(value), time
            return value.copy()
        dt = time - self._time
        derivative = (value - self._value) / dt
        a_d = self._smoothing_factor(self.derivative_cutoff, dt)
        self._derivative = a_d * derivative + (1.0 - a_d) * self._derivative
        cutoff = self.min_cutoff + self.beta * np.abs(self._derivative)
        a = self._smoothing_factor(cutoff, dt)
        self._value = a * value + (1.0 - a) * self._value
        self._time = time
        return self._value.copy()


def validate_one_euro(min_cutoff: float, beta: float) -> None:
    """Raise ValueError naming the bad One Euro setting."""
    if not (math.isfinite(min_cutoff) and min_cutoff > 0):
        raise ValueError(f'One Euro min_cutoff must be a finite frequency > 0 Hz, got {min_cutoff}')
    if not (math.isfinite(beta) and beta >= 0):
        raise ValueError(f'One Euro beta must be finite and >= 0, got {beta}')


def validate_half_life(half_life: float) -> None:
    """Raise ValueError unless the evidence half-life is a finite number of seconds > 0."""
    if not (math.isfinite(half_life) and half_life > 0):
        raise ValueError(f'track half-life must be a finite number of seconds > 0, got {half_life}')


@dataclass
class Observation:
    """One hand found in the current frame, as the tracker needs it.

    `handedness_score` 0 means the handedness is unknown for this observation (it casts no vote on
    the track's side); otherwise it is max(p, 1 - p) of the call, in [0.5, 1]. `evidence` in
    [0, 1]: how sure the proposal that found it was that a hand is there (a localiser score, 1 for
    an external ROI, a track's faded evidence). `continues`: the
    id of a track this hand continues whatever their similarity (found in that track's crop after
    the crop regrew from a part of the hand to all of it, so its box changed too much to match).
    `score`: the hand's score (mean keypoint confidence x evidence), which a new track must reach.
    """
    keypoints: np.ndarray  # (21, 2) source pixels
    scores: np.ndarray  # (21,)
    box: Box
    handedness: int = 0
    handedness_score: float = 0.0
    evidence: float = 1.0
    continues: int | None = None
    score: float = 1.0


@dataclass
class SideVote:
    """Side calls (1 left, 2 right) added up as log-odds, each earlier call's weight fading by
    SIDE_MEMORY per new call. Its score is the logistic of the mean vote, so agreeing calls keep
    their own confidence and disagreeing ones lower it (it does not grow with the number of calls:
    successive frames are not independent)."""
    log_odds: float = 0.0  # faded sum of the calls, left positive
    weight: float = 0.0  # faded number of calls
    calls: int = 0  # calls added

    def add(self, handedness: int, score: float) -> None:
        """Add one call; `score` is its max(p, 1 - p), clipped to MAX_SIDE_SCORE."""
        clipped = min(score, MAX_SIDE_SCORE)
        log_odds = math.log(clipped / (1.0 - clipped))
        self.log_odds = SIDE_MEMORY * self.log_odds + (log_odds if handedness == 1 else -log_odds)
        self.weight = SIDE_MEMORY * self.weight + 1.0
        self.calls += 1

    @property
    def side(self) -> int:
        """0 while the calls favour neither side, else 1 (left) or 2 (right)."""
        return 0 if self.log_odds == 0.0 else 1 if self.log_odds > 0 else 2

    @property
    def score(self) -> float:
        """The logistic of the mean vote, in [0.5, 1); 0 while side is 0."""
        if self.side == 0:
            return 0.0
        return 1.0 / (1.0 + math.exp(-abs(self.log_odds) / self.weight))


@dataclass
class Track:
    """A hand followed over consecutive frames; `keypoints` are the (smoothed) latest ones, `evidence`
    the latest observation's, found at `time` (seconds). `handedness` and `handedness_score` are
    the side voted by its observations (see vote_side), or 0 and 0.0 while that vote is less than
    MIN_REPORTED_SIDE_SCORE sure."""
    track_id: int
    keypoints: np.ndarray
    scores: np.ndarray
    box: Box
    handedness: int = 0
    handedness_score: float = 0.0
    age: int = 1  # frames in which the hand was found
    evidence: float = 1.0
    time: float = 0.0
    smoother: OneEuroFilter | None = field(default=None, repr=False)
    votes: SideVote = field(default_factory=SideVote)
    # the calls since the keypoints last jumped (see SLIDE_SIMILARITY); None when they have not
    slide_votes: SideVote | None = None

    def vote_side(self, handedness: int, score: float) -> None:
        """Add one observation's side call (1 left, 2 right; `score` max(p, 1 - p)) to the vote.
        A call that is unknown or 0.5 sure casts no vote. After a jump (suspect_slide), the calls
        that follow replace the vote once SLIDE_CALLS of them give the other side surely enough."""
        if handedness not in (1, 2) or not score > 0.5:
            return
        self.votes.add(handedness, score)
        if self.slide_votes is not None:
            self.slide_votes.add(handedness, score)
            if self.slide_votes.calls >= SLIDE_CALLS:
                if (self.slide_votes.side not in (0, self.votes.side)
                        and self.slide_votes.score >= SLIDE_SIDE_SCORE):
                    self.votes = self.slide_votes
                self.slide_votes = None
        sure = self.votes.score >= MIN_REPORTED_SIDE_SCORE
        self.handedness, self.handedness_score = (self.votes.side, self.votes.score) if sure else (0, 0.0)

    def suspect_slide(self) -> None:
        """The track's keypoints jumped: judge its side again on the calls that follow."""
        self.slide_votes = SideVote()


def keypoint_similarity(keypoints_a: np.ndarray, visible_a: np.ndarray,
                        keypoints_b: np.ndarray, visible_b: np.ndarray, scale: float) -> float:
    """Mean Gaussian similarity exp(-d^2 / (2 (0.25 scale)^2)) over keypoints visible in both
    (0 when none is): 1 for identical hands, near 0 once they are a quarter hand-size apart."""
    common = np.asarray(visible_a, bool) & np.asarray(visible_b, bool)
    if not common.any():
        return 0.0
    sigma = 0.25 * max(scale, 1.0)
    squared = np.sum((keypoints_a[common] - keypoints_b[common]) ** 2, axis=1)
    return float(np.mean(np.exp(-squared / (2.0 * sigma * sigma))))


class HandTracker:
    """Matches each frame's hands to the previous frame's tracks and gives them stable ids.

    Similarity of a track and a new hand = mean of their box IoU and their keypoint similarity
    (so two crossing hands with overlapping boxes still keep their own ids); pairs are taken
    greedily, most similar first, down to `match_threshold`. Unmatched hands start new tracks,
    unmatched tracks end. A track's evidence halves every `half_life` seconds until an observation
    with new evidence continues it.
    """

    def __init__(self, keypoint_threshold: float = 0.2, match_threshold: float = 0.3,
                 smoothing: bool = False, min_cutoff: float = 1.0, beta: float = 0.0,
                 half_life: float = DEFAULT_HALF_LIFE_S):
        self.keypoint_threshold = keypoint_threshold
        self.match_threshold = match_threshold
        self.smoothing = smoothing
        validate_half_life(half_life)
        self.half_life = half_life
        self._ids = itertools.count(1)
        self._tracks: list[Track] = []
        self.configure_smoothing(min_cutoff, beta)

    @property
    def tracks(self) -> tuple[Track, ...]:
        return tuple(self._tracks)

    def configure_smoothing(self, min_cutoff: float, beta: float) -> None:
        """Change the One Euro settings, for new and running tracks."""
        validate_one_euro(min_cutoff, beta)
        self.min_cutoff, self.beta = min_cutoff, beta
        for track in self._tracks:
            if track.smoother is not None:
                track.smoother.min_cutoff, track.smoother.beta = min_cutoff, beta

    def end_all(self) -> None:
        """End every track (ids already given out stay used)."""
        self._tracks = []

    def proposals(self, time: float) -> list[tuple[Box, Track, float]]:
        """Crop proposals for a frame at `time` (seconds): the box of each track's confident
        keypoints, the track, and its evidence faded to that time (a time before the track's
        last one, e.g. a bag played again, fades nothing)."""
        proposals = []
        for track in self._tracks:
            visible = track.scores >= self.keypoint_threshold
            if np.count_nonzero(visible) >= 2:
                fade = 0.5 ** (max(time - track.time, 0.0) / self.half_life)
                proposals.append((box_from_keypoints(track.keypoints, visible), track,
                                  track.evidence * fade))
        return proposals

    def keypoint_similarity(self, track: Track, observation: Observation) -> float:
        """keypoint_similarity of the track's last keypoints and the observation's, at the
        scale of the track's box."""
        x0, y0, x1, y1 = track.box
        scale = math.sqrt(max(x1 - x0, 1.0) * max(y1 - y0, 1.0))
        return keypoint_similarity(
            track.keypoints, track.scores >= self.keypoint_threshold,
            observation.keypoints, observation.scores >= self.keypoint_threshold, scale)

    def similarity(self, track: Track, observation: Observation) -> float:
        return 0.5 * (box_iou(track.box, observation.box) + self.keypoint_similarity(track, observation))

    def update(self, observations: list[Observation], time: float,
               min_new_score: float = 0.0) -> list[Track | None]:
        """Assign every observation to a track (continued or new), in the same order; smooth the
        keypoints of continued tracks when smoothing is on. `time` is in seconds. Observations
        that name the track they continue get it first (when it is still there). An observation
        that continues no track and scores below `min_new_score` starts none: None in its place."""
        matched_track_of: dict[int, int] = {}
        used_tracks: set[int] = set()
        index_of_id = {track.track_id: t for t, track in enumerate(self._tracks)}
        for o, obs in enumerate(observations):
            t = index_of_id.get(obs.continues)
            if t is not None and t not in used_tracks:
                used_tracks.add(t)
                matched_track_of[o] = t
        pairs = sorted(((self.similarity(track, obs), t, o)
                        for t, track in enumerate(self._tracks)
                        for o, obs in enumerate(observations)), reverse=True)
        for similarity, t, o in pairs:
            if similarity < self.match_threshold:
                break
            if t in used_tracks or o in matched_track_of:
                continue
            used_tracks.add(t)
            matched_track_of[o] = t

        result = []
        for o, obs in enumerate(observations):
            if o in matched_track_of:
                track = self._tracks[matched_track_of[o]]
                track.age += 1
                if self.keypoint_similarity(track, obs) < SLIDE_SIMILARITY:
                    track.suspect_slide()
            elif obs.score < min_new_score:
                result.append(None)
                continue
            else:
                track = Track(next(self._ids), obs.keypoints, obs.scores, obs.box)
            if self.smoothing:
                if track.smoother is None:
                    track.smoother = OneEuroFilter(self.min_cutoff, self.beta)
                track.keypoints = track.smoother(obs.keypoints, time)
            else:
                track.smoother = None
                track.keypoints = np.asarray(obs.keypoints, dtype=np.float64).copy()
            track.scores, track.box = obs.scores, obs.box
            track.evidence, track.time = obs.evidence, time
            track.vote_side(obs.handedness, obs.handedness_score)
            result.append(track)
        self._tracks = [track for track in result if track is not None]
        return result
