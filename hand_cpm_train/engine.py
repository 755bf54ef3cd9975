"""One training epoch and one evaluation pass, shared by hand-cpm-train and hand-cpm-eval.

`train_one_epoch` supervises every stage (stage 1 included) with cpm_loss and stops on a
non-finite loss before the optimizer touches the weights. `evaluate` runs any predictor (a torch
model, an ONNX Runtime session) over a crop loader, decodes with the one codec into SOURCE-image
pixels and keeps everything the metrics need.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from hand_cpm_ros import metrics
from hand_cpm_ros.codec import HeatmapCodec
from hand_cpm_train.losses import cpm_loss

PCK_THRESHOLDS = np.linspace(0.0, 0.5, 51)   # the AUC range of metrics.summary


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or inf; the step's update was not applied."""


def train_one_epoch(model: nn.Module, loader: Iterable[dict], optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler, scaler: torch.amp.GradScaler,
                    device: torch.device, *, epoch: int, step: int, max_steps: int | None = None,
                    amp: bool = False, on_step: Callable[[int, dict[str, float], float], None] | None = None,
                    progress: bool = True) -> int:
    """Train over `loader` (model in train mode returns every stage's maps) and return the new
    global step. Stops early at `max_steps`. `on_step(step, losses, lr)` runs after each update
    (logging, periodic checkpoints). Raises NonFiniteLossError on a NaN/inf loss."""
    model.train()
    running: dict[str, float] = {}
    bar = tqdm(loader, desc=f'epoch {epoch}', disable=not progress, dynamic_ncols=True, leave=False)
    for count, batch in enumerate(bar, start=1):
        if max_steps is not None and step >= max_steps:
            break
        images = batch['image'].to(device, non_blocking=True)
        targets = batch['targets'].to(device, non_blocking=True)
        weights = batch['weights'].to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp):
            stage_maps = model(images)
        losses = cpm_loss([maps.float() for maps in stage_maps], targets, weights)
        values = {name: float(value.detach()) for name, value in losses.items()}
        if not np.isfinite(values['total']):
            raise NonFiniteLossError(
                f'non-finite loss at step {step + 1} (epoch {epoch}): '
                + ', '.join(f'{name}={value:.4g}' for name, value in values.items())
                + '; lower --lr, check the data, or resume from the last checkpoint')
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses['total']).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        for name, value in values.items():
            running[name] = running.get(name, 0.0) + value
        bar.set_postfix(loss=f'{running["total"] / count:.4g}', step=step)
        if on_step is not None:
            on_step(step, values, optimizer.param_groups[0]['lr'])
    bar.close()
    return step


@dataclass
class Predictions:
    """Decoded predictions of every evaluated stage next to the ground truth, in source pixels."""
    keypoints: np.ndarray      # (stages, N, 21, 2)
    scores: np.ndarray         # (stages, N, 21)
    ground_truth: np.ndarray   # (N, 21, 2)
    visible: np.ndarray        # (N, 21) bool

    def summary(self, stage: int = -1) -> dict:
        """metrics.summary of one stage (the last by default)."""
        return metrics.summary(self.keypoints[stage], self.ground_truth, self.visible)

    def pck_curve(self, stage: int = -1, thresholds: np.ndarray = PCK_THRESHOLDS) -> np.ndarray:
        normalizer = metrics.hand_box_size(self.ground_truth, self.visible)
        return np.asarray(metrics.pck_curve(self.keypoints[stage], self.ground_truth, self.visible,
                                            normalizer, thresholds))

    def per_keypoint(self, stage: int = -1, threshold: float = 0.2) -> dict[str, np.ndarray]:
        """{'pck': (21,) PCK at `threshold`, 'epe_px': (21,) mean error of visible points}."""
        normalizer = metrics.hand_box_size(self.ground_truth, self.visible)
        _, pck = metrics.pck(self.keypoints[stage], self.ground_truth, self.visible, normalizer,
                             threshold)
        errors = metrics.keypoint_errors(self.keypoints[stage], self.ground_truth)
        counts = self.visible.sum(axis=0)
        epe = np.where(self.visible, errors, 0.0).sum(axis=0) / np.maximum(counts, 1)
        return {'pck': np.asarray(pck), 'epe_px': np.where(counts > 0, epe, np.nan)}


def torch_predictor(model: nn.Module, device: torch.device, all_stages: bool = True
                    ) -> Callable[[torch.Tensor], list[np.ndarray]]:
    """A predictor for `evaluate`: normalised images -> list of (N, 22, S, S) maps per stage
    (only the last with all_stages=False). Puts the model in eval mode."""
    model.eval()

    @torch.no_grad()
    def predict(images: torch.Tensor) -> list[np.ndarray]:
        stages = model.forward_stages(images.to(device))
        return [maps.float().cpu().numpy() for maps in (stages if all_stages else stages[-1:])]

    return predict


def evaluate(predict: Callable[[torch.Tensor], list[np.ndarray]], loader: Iterable[dict],
             codec: HeatmapCodec, progress: bool = False) -> Predictions:
    """Run `predict` over every batch of a (non-augmented) crop loader and decode each stage's
    maps through the crop->source affine into source-image pixels."""
    stage_keypoints: list[list[np.ndarray]] = []
    stage_scores: list[list[np.ndarray]] = []
    truth, visible = [], []
    for batch in tqdm(loader, desc='evaluate', disable=not progress, dynamic_ncols=True, leave=False):
        affines = list(batch['crop_to_source'].numpy())
        for index, maps in enumerate(predict(batch['image'])):
            if index == len(stage_keypoints):
                stage_keypoints.append([])
                stage_scores.append([])
            keypoints, scores = codec.decode_batch(maps, affines)
            stage_keypoints[index].append(keypoints)
            stage_scores[index].append(scores)
        truth.append(batch['source_keypoints'].numpy())
        visible.append(batch['visible'].numpy())
    if not truth:
        raise ValueError('evaluate got an empty data loader')
    return Predictions(keypoints=np.stack([np.concatenate(k) for k in stage_keypoints]),
                       scores=np.stack([np.concatenate(s) for s in stage_scores]),
                       ground_truth=np.concatenate(truth), visible=np.concatenate(visible))
