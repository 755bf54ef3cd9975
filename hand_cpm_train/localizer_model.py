"""The hand localiser network: finds every hand in a whole camera frame, fast.

Design (numbers from `hand-cpm-models` and `hand-cpm-benchmark`): a CenterNet-style fully
convolutional detector. A MobileNetV2-like front (inverted residuals with BatchNorm) runs down to
stride 32 so that a hand filling 80% of the frame is inside one receptive field; a light top-down
pathway (1x1 laterals + nearest upsampling, as in FPN) brings that context back to stride 4, where
a hand only 5% of a 480-pixel-high frame tall (24 px, 12-13 px at the 320x256 input) still spans
three cells. The head predicts per cell a hand-centre logit, the log box size, the offset of
the hand's centre from the cell and a handedness logit (hand_cpm_ros.localizer describes the
maps and decodes them). No anchors, no NMS inside the graph: decoding is a 3x3 max filter and a
top-k in numpy.

loc-deep is loc-lite with six more residual blocks (0.59 against 0.39 GFLOPs): five at strides
8-32 and one at stride 4 before the head. loc-lite had stopped gaining from new frames, and it
fitted frames it had trained on hardly better than unseen ones (models/MODEL_CARD.md, loc_deep_1): it
needed capacity more than data. The added blocks start as identities, so loc-deep can start from a
trained loc-lite.

Input: the frame letterboxed to 320x256 (a 640x480 camera image at half resolution, padded by 8
rows top and bottom), normalised BGR like the CPM light variants.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from hand_cpm_ros.dataclass_io import from_known_fields
from hand_cpm_ros.localizer import HEAT, NUM_OUTPUTS, OFFSET, SIDE, SIZE, LocalizerCodec
from hand_cpm_train.models import IMAGENET_MEAN_BGR, IMAGENET_STD_BGR, ConvBNReLU, InvertedResidual


@dataclass(frozen=True)
class LocalizerConfig:
    """Everything needed to rebuild a localiser; stored in its checkpoint and ONNX metadata."""
    name: str = 'loc-lite'
    input_width: int = 320
    input_height: int = 256
    stride: int = 4
    width_mult: float = 1.0
    pyramid_channels: int = 48
    # Residual blocks added at the end of each of the five levels, and on the stride-4 pyramid
    # before the head: 0 for loc-lite. They start as identities (their last BatchNorm at zero), so
    # a run can grow a trained loc-lite into loc-deep without losing what it had learnt.
    extra_blocks: tuple[int, ...] = (0, 0, 0, 0, 0)
    refine_blocks: int = 0
    mean: tuple[float, float, float] = IMAGENET_MEAN_BGR
    std: tuple[float, float, float] = IMAGENET_STD_BGR

    def __post_init__(self):
        if self.stride != 4:
            raise ValueError(f'the localiser predicts at stride 4, got stride={self.stride}')
        if self.input_width % 32 or self.input_height % 32 or min(self.input_width, self.input_height) < 64:
            raise ValueError(f'localiser input {self.input_width}x{self.input_height} must be multiples '
                             'of 32 (the deepest feature map) and at least 64')
        extra = tuple(int(v) for v in self.extra_blocks)
        if len(extra) != len(_LEVELS) or min(extra) < 0 or self.refine_blocks < 0:
            raise ValueError(f'extra_blocks needs {len(_LEVELS)} counts >= 0 (one per level) and '
                             f'refine_blocks >= 0, got {self.extra_blocks} and {self.refine_blocks}')
        object.__setattr__(self, 'extra_blocks', extra)
        object.__setattr__(self, 'mean', tuple(float(v) for v in self.mean))
        object.__setattr__(self, 'std', tuple(float(v) for v in self.std))

    def codec(self) -> LocalizerCodec:
        return LocalizerCodec(self.input_width, self.input_height, self.stride)

    def to_dict(self) -> dict:
        data = asdict(self)
        data['mean'], data['std'] = list(self.mean), list(self.std)
        data['extra_blocks'] = list(self.extra_blocks)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> LocalizerConfig:
        return from_known_fields(cls, data, 'localiser config')

    def grows(self, smaller: LocalizerConfig) -> bool:
        """True if this network is `smaller` with blocks added (extra_blocks, refine_blocks) or a
        wider stride-4 path (pyramid_channels), so that a run can start from its weights
        (hand-cpm-train --init-weights, models.widen_weights)."""
        same_otherwise = replace(self, name=smaller.name, extra_blocks=smaller.extra_blocks,
                                 refine_blocks=smaller.refine_blocks,
                                 pyramid_channels=smaller.pyramid_channels) == smaller
        return (same_otherwise and self.refine_blocks >= smaller.refine_blocks
                and self.pyramid_channels >= smaller.pyramid_channels
                and all(new >= old for new, old in zip(self.extra_blocks, smaller.extra_blocks)))


# (expand, out channels, repeats, stride) per level; levels end at strides 2, 4, 8, 16, 32.
_LEVELS = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 64, 3, 2), (4, 96, 2, 2))
REFINE_EXPAND = 2   # the stride-4 refine blocks are the costly ones (80x64 cells): half expansion

LOCALIZER_VARIANTS = {
    'loc-lite': LocalizerConfig(),
    # loc-lite with two blocks more at strides 8 and 16, one at 32 and one refine block at stride 4;
    # the shipped localiser is a trained loc-lite grown into it (models/MODEL_CARD.md).
    'loc-deep': LocalizerConfig(name='loc-deep', extra_blocks=(0, 0, 2, 2, 1), refine_blocks=1),
}


def parse_frame_size(text: str) -> tuple[int, int]:
    """'320x256' -> (320, 256), the --frame-size of the localiser commands; ValueError otherwise."""
    try:
        width, height = (int(part) for part in str(text).lower().split('x'))
    except ValueError:
        raise ValueError(f'--frame-size needs WIDTHxHEIGHT, e.g. 320x256, got {text!r}') from None
    return width, height


def get_localizer_config(name: str, **overrides) -> LocalizerConfig:
    """The named localiser variant with field overrides (e.g. input_width, input_height)."""
    if name not in LOCALIZER_VARIANTS:
        raise ValueError(f'unknown localiser variant {name!r}; valid: {sorted(LOCALIZER_VARIANTS)}')
    return LocalizerConfig.from_dict({**LOCALIZER_VARIANTS[name].to_dict(), **overrides})


class HandLocalizerNet(nn.Module):
    """Frame (N, 3, H, W) -> (N, 6, H/4, W/4) centre / size / offset / handedness maps."""

    def __init__(self, config: LocalizerConfig):
        super().__init__()
        self.config = config
        channels = max(8, round(16 * config.width_mult))
        self.stem = ConvBNReLU(3, channels, 3, stride=2)
        self.levels = nn.ModuleList()
        level_channels = []
        added = []   # the grown blocks, which start as identities
        for (expand, out, repeats, stride), extra in zip(_LEVELS, config.extra_blocks):
            out = max(8, round(out * config.width_mult))
            blocks = []
            for index in range(repeats):
                blocks.append(InvertedResidual(channels, out, stride if index == 0 else 1, expand))
                channels = out
            grown = [InvertedResidual(out, out, 1, expand) for _ in range(extra)]
            added += grown
            self.levels.append(nn.Sequential(*blocks, *grown))
            level_channels.append(out)
        width = config.pyramid_channels
        # Laterals for strides 4, 8, 16, 32 (levels 1..4); the top-down sum is smoothed by a
        # depthwise 3x3 at each step.
        self.laterals = nn.ModuleList(ConvBNReLU(c, width) for c in level_channels[1:])
        self.smooth = nn.ModuleList(
            nn.Sequential(ConvBNReLU(width, width, 3, groups=width), ConvBNReLU(width, width))
            for _ in level_channels[1:-1])
        self.refine = nn.Sequential(*(InvertedResidual(width, width, 1, REFINE_EXPAND)
                                      for _ in range(config.refine_blocks)))
        added += list(self.refine)
        self.head = nn.Sequential(ConvBNReLU(width, width, 3, groups=width), ConvBNReLU(width, width),
                                  nn.Conv2d(width, NUM_OUTPUTS, 1))
        self._init_weights(added)

    def _init_weights(self, added: list[InvertedResidual]) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        out = self.head[-1]
        nn.init.normal_(out.weight, 0.0, 0.01)
        # Start the centre map at p = 0.01 everywhere (CenterNet's prior), so the focal loss is not
        # swamped by confident false positives in the first steps.
        # The size maps start at a typical hand (a fifth of the input height, the geometric mean
        # of 5%..80%) instead of one cell, so the L1 on log sizes starts near its optimum.
        with torch.no_grad():
            out.bias[HEAT] = -math.log(99.0)
            out.bias[SIZE] = math.log(0.2 * self.config.input_height / self.config.stride)
            for block in added:
                block.block[-1][1].weight.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = []
        x = self.stem(x)
        for level in self.levels:
            x = level(x)
            features.append(x)
        top = self.laterals[-1](features[-1])
        for index in range(len(self.laterals) - 2, -1, -1):
            top = self.smooth[index](self.laterals[index](features[index + 1])
                                     + F.interpolate(top, scale_factor=2.0, mode='nearest'))
        return self.head(self.refine(top))


def build_localizer(config: LocalizerConfig) -> HandLocalizerNet:
    return HandLocalizerNet(config)


def box_giou(offset: torch.Tensor, log_size: torch.Tensor, target_offset: torch.Tensor,
             target_log_size: torch.Tensor) -> torch.Tensor:
    """Generalised IoU, per cell, of the boxes that (N, 2, h, w) offset and log-size maps describe
    (centre = the cell's centre + offset, extent = exp(log size), all in cells) and the target
    boxes: 1 for the same box, towards -1 the further apart two boxes are."""
    def corners(centre: torch.Tensor, log_extent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        half = 0.5 * torch.exp(log_extent.clamp(-10.0, 10.0))
        return centre - half, centre + half

    low, high = corners(offset, log_size)
    target_low, target_high = corners(target_offset, target_log_size)
    overlap = (torch.minimum(high, target_high) - torch.maximum(low, target_low)).clamp(min=0).prod(1)
    union = (high - low).prod(1) + (target_high - target_low).prod(1) - overlap
    hull = (torch.maximum(high, target_high) - torch.minimum(low, target_low)).prod(1)
    return overlap / union - (hull - union) / hull


def localizer_loss(outputs: torch.Tensor, targets: dict[str, torch.Tensor],
                   box_iou_weight: float = 0.0) -> dict[str, torch.Tensor]:
    """Named losses of a batch: 'heat' (CenterNet's penalty-reduced focal loss over all cells
    but those of ignored hands, per hand), 'size' and 'offset' (L1 weighted by the codec's
    reg_weight, per hand), 'side' (binary cross-entropy of the handedness at centres whose side is
    known), and 'total' =
    heat + size + offset + 0.5 * side. With `box_iou_weight` > 0 also 'box': 1 - GIoU of the
    same cells' boxes (box_giou), weighted as size and offset, added to the total with that
    weight: the L1 terms treat width, height and centre apart, while a box that overlaps its hand
    by less than half is a miss however the error splits.

    `targets` holds batched tensors of LocalizerCodec.encode's arrays.
    """
    heat_target = targets['heat'][:, 0]
    centres = targets['reg_mask']
    heat_logits = outputs[:, HEAT]
    probability = torch.sigmoid(heat_logits).clamp(1e-4, 1 - 1e-4)
    positive = -F.logsigmoid(heat_logits) * (1 - probability) ** 2 * centres
    counted = (1 - centres) * (1 - targets['heat_ignore'])
    negative = -F.logsigmoid(-heat_logits) * probability ** 2 * (1 - heat_target) ** 4 * counted
    hands = centres.sum().clamp(min=1.0)
    losses = {'heat': (positive.sum() + negative.sum()) / hands}
    weight = targets['reg_weight'].unsqueeze(1)
    losses['size'] = (F.l1_loss(outputs[:, SIZE], targets['size'], reduction='none') * weight).sum() / hands
    losses['offset'] = (F.l1_loss(outputs[:, OFFSET], targets['offset'], reduction='none') * weight).sum() / hands
    side_mask = targets['side_mask']
    side_loss = F.binary_cross_entropy_with_logits(outputs[:, SIDE], targets['side'][:, 0], reduction='none')
    losses['side'] = (side_loss * side_mask).sum() / side_mask.sum().clamp(min=1.0)
    losses['total'] = losses['heat'] + losses['size'] + losses['offset'] + 0.5 * losses['side']
    if box_iou_weight > 0:
        giou = box_giou(outputs[:, OFFSET], outputs[:, SIZE], targets['offset'], targets['size'])
        losses['box'] = ((1.0 - giou) * targets['reg_weight']).sum() / hands
        losses['total'] = losses['total'] + box_iou_weight * losses['box']
    return losses
