"""The CPM training loss: weighted L2 between every stage's belief maps and the target maps.

Normalisation (OpenPose-style): squared error summed over all map cells of a sample, then the mean
over the batch, i.e. sum(w * (pred - target)^2) / N. Caffe's EuclideanLoss has a further 1/2; it is
left out, which only rescales the learning rate. Every stage, stage 1 included, is supervised
(intermediate supervision is what keeps the gradients of the early stages alive).

`foreground_weight` (0 = OpenPose's plain L2) weights each keypoint-map cell by
1 + foreground_weight * target. A keypoint's Gaussian covers about 2% of a map, so plain L2 is
met almost as well by all-zero keypoint maps, and a small network trained from scratch sits at that
level for thousands of steps; weighting the cells near the keypoints is what moves it off.

`false_peak_weight` (0 = off) adds, per stage, this x how far the stage's own prediction (detached)
rises above the target in a keypoint-map cell. With the foreground weight alone, a missed peak costs
up to 1 + foreground_weight per cell and a peak in the wrong place (most wrong keypoints are a
neighbouring finger's: models/MODEL_CARD.md, "Where the keypoints go wrong") costs 1; with both
weights equal the two cost alike.
"""
from __future__ import annotations

import torch


def cpm_loss(stage_maps: list[torch.Tensor], targets: torch.Tensor, weights: torch.Tensor,
             foreground_weight: float = 0.0, false_peak_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """Losses {'stage1': ..., 'stageK': ..., 'total': sum} for maps (N,M,S,S) per stage.

    `weights` (N,M) scales each map's squared error: 0 drops an invisible keypoint's map, 1 keeps
    it. The last map is the background, which `foreground_weight` and `false_peak_weight` leave at
    weight 1. The trainer checks that 'total' is finite.
    """
    if not stage_maps:
        raise ValueError('cpm_loss needs the maps of at least one stage')
    if targets.dim() != 4:
        raise ValueError(f'targets must be (N, maps, S, S), got shape {tuple(targets.shape)}')
    if tuple(weights.shape) != tuple(targets.shape[:2]):
        raise ValueError(f'weights must be (N, maps) = {tuple(targets.shape[:2])}, '
                         f'got {tuple(weights.shape)}')
    batch = targets.shape[0]
    if not foreground_weight >= 0:
        raise ValueError(f'foreground_weight must be >= 0, got {foreground_weight}')
    if not false_peak_weight >= 0:
        raise ValueError(f'false_peak_weight must be >= 0, got {false_peak_weight}')
    map_weights = weights.to(targets.dtype)[:, :, None, None]
    emphasis = torch.ones_like(targets)
    emphasis[:, :-1] += foreground_weight * targets[:, :-1]
    losses: dict[str, torch.Tensor] = {}
    for index, maps in enumerate(stage_maps, start=1):
        if maps.shape != targets.shape:
            raise ValueError(f'stage {index} maps have shape {tuple(maps.shape)}, targets '
                             f'{tuple(targets.shape)}')
        stage_emphasis = emphasis
        if false_peak_weight:
            stage_emphasis = emphasis.clone()
            stage_emphasis[:, :-1] += false_peak_weight * (maps.detach()[:, :-1] - targets[:, :-1]).clamp(min=0)
        losses[f'stage{index}'] = (map_weights * stage_emphasis * (maps - targets).square()).sum() / batch
    losses['total'] = torch.stack(list(losses.values())).sum()
    return losses
