"""Convolutional Pose Machine variants: the OpenPose hand network and light real-time designs.

Every variant maps a normalised BGR crop (N,3,S,S) to 22 belief maps (21 keypoints + background)
at stride 8, refined by a sequence of stages that each see the shared image features and the
previous stage's maps (Wei et al., CPM; Simon et al., OpenPose hand).

Variants (`hand-cpm-models` prints the table). Measured here (2-core x86 CPU, random weights,
batch 1, 2 threads, median; ONNX Runtime MatMul peak ~180 GFLOP/s), reproduced by
`hand-cpm-benchmark --variants cpm-lite cpm-lite-s --runs 15 --train-steps 3`:

| variant    | params     | GFLOPs (input) | ORT ms | torch ms | train img/s (b8, torch) |
|------------|-----------:|---------------:|-------:|---------:|------------------------:|
| cpm-vgg19  | 36,832,324 | 206.4 (368)    | 1129   |          |                         |
| cpm-lite   |    897,154 |   1.98 (256)   | 13.8   | 31.3     | 6.4 (9.3 channels_last) |
| cpm-lite-s |    827,650 |   1.03 (192)   |  7.2   | 21.8     | 13.9                    |

- `cpm-vgg19`: the OpenPose hand network layer for layer (VGG-19 conv1_1..conv4_4, conv5_1,
  conv5_2, conv5_3_CPM, six stages); ~1.1 s per crop on this CPU. Kept for fidelity and for
  GPU/TensorRT targets, not for CPU real time.
- `cpm-lite` (default to ship): a MobileNetV2 front (inverted residuals with BatchNorm, cut at
  stride 8: its 64- and 96-channel blocks run at stride 8) to 128 feature channels, then three CPM
  stages, each a 1x1 projection to 128 channels and four depthwise-separable 7x7 residual blocks
  (each block widens the receptive field by 48 input pixels, so one stage already sees the whole
  hand), ending in a 1x1 conv to 22 maps; stages 2 and 3 see [previous maps, features] like
  OpenPose's. 72 crops/s in ORT on 2 cores, 104x cheaper than cpm-vgg19.
- `cpm-lite-s`: the same design at 192 input with three blocks per stage, for a Jetson or a slow
  CPU (140 crops/s in ORT here).

Light variants keep BatchNorm in the backbone; `fuse_batchnorm` folds it into the convolutions for
export.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch
from torch import nn

from hand_cpm_ros.dataclass_io import from_known_fields
from hand_cpm_ros.keypoints import NUM_MAPS

# OpenPose feeds the VGG front with bgr/256 - 0.5; (bgr/255 - 0.5) / 1 is the same up to 0.4%.
OPENPOSE_MEAN = (0.5, 0.5, 0.5)
OPENPOSE_STD = (1.0, 1.0, 1.0)
# ImageNet statistics in BGR order, for the BatchNorm light variants.
IMAGENET_MEAN_BGR = (0.406, 0.456, 0.485)
IMAGENET_STD_BGR = (0.225, 0.224, 0.229)

BACKBONES = ('vgg19', 'mobilenetv2')


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; stored in checkpoints and ONNX metadata."""
    name: str
    backbone: str
    input_size: int
    stages: int
    num_maps: int = NUM_MAPS
    stride: int = 8
    mean: tuple[float, float, float] = OPENPOSE_MEAN
    std: tuple[float, float, float] = OPENPOSE_STD
    # Light variants only (ignored by vgg19):
    width_mult: float = 1.0        # MobileNetV2 channel multiplier
    feature_channels: int = 128    # shared features the stages see (conv5_3_CPM has 128 too)
    stage_channels: int = 128      # width inside the refinement stages
    stage_blocks: int = 4          # depthwise-separable residual blocks per stage
    stage_kernel: int = 7          # depthwise kernel of those blocks
    handedness_head: bool = False  # light variants: also say left or right (HandednessHead)

    def __post_init__(self):
        if self.backbone not in BACKBONES:
            raise ValueError(f'unknown backbone {self.backbone!r}; valid: {", ".join(BACKBONES)}')
        if self.stride != 8:
            raise ValueError(f'stride must be 8 (three 2x downsamplings), got {self.stride}')
        if self.input_size <= 0 or self.input_size % self.stride:
            raise ValueError(f'input_size must be a positive multiple of {self.stride}, '
                             f'got {self.input_size}')
        if self.stages < 1:
            raise ValueError(f'stages must be >= 1, got {self.stages}')
        if self.stage_kernel % 2 == 0:
            raise ValueError(f'stage_kernel must be odd, got {self.stage_kernel}')
        if self.handedness_head and self.backbone != 'mobilenetv2':
            raise ValueError('handedness_head is built for the light (mobilenetv2) variants only')
        object.__setattr__(self, 'mean', tuple(float(v) for v in self.mean))
        object.__setattr__(self, 'std', tuple(float(v) for v in self.std))
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError('mean and std need 3 values each (BGR), std > 0')

    @property
    def output_size(self) -> int:
        return self.input_size // self.stride

    def grows(self, smaller: ModelConfig) -> bool:
        """True if this network is `smaller` with a wider MobileNetV2 front (width_mult), so that a
        run can start from its weights (hand-cpm-train --init-weights, widen_weights)."""
        return (self.backbone == 'mobilenetv2' and self.width_mult >= smaller.width_mult
                and replace(self, width_mult=smaller.width_mult) == smaller)

    def to_dict(self) -> dict:
        data = asdict(self)
        data['mean'] = list(self.mean)
        data['std'] = list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ModelConfig:
        return from_known_fields(cls, data, 'model config')


VARIANTS: dict[str, ModelConfig] = {
    'cpm-vgg19': ModelConfig(name='cpm-vgg19', backbone='vgg19', input_size=368, stages=6),
    'cpm-lite': ModelConfig(name='cpm-lite', backbone='mobilenetv2', input_size=256, stages=3,
                            mean=IMAGENET_MEAN_BGR, std=IMAGENET_STD_BGR, stage_blocks=4),
    'cpm-lite-s': ModelConfig(name='cpm-lite-s', backbone='mobilenetv2', input_size=192, stages=3,
                              mean=IMAGENET_MEAN_BGR, std=IMAGENET_STD_BGR, stage_blocks=3),
}
DEFAULT_VARIANT = 'cpm-lite'


def get_config(name: str, **overrides) -> ModelConfig:
    """The named variant's config, with fields replaced by `overrides` (e.g. input_size=96)."""
    if name not in VARIANTS:
        raise ValueError(f'unknown model variant {name!r}; valid: {", ".join(VARIANTS)}')
    known = {f.name for f in fields(ModelConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f'unknown model config fields {unknown}; valid: {sorted(known)}')
    return replace(VARIANTS[name], **overrides)


# --------------------------------------------------------------------------------------------
# The OpenPose hand network
# --------------------------------------------------------------------------------------------

# (name, out_channels) of the VGG-19 front and the CPM feature layers, 'pool' = 2x2 max-pool.
_VGG_LAYERS = (
    ('conv1_1', 64), ('conv1_2', 64), 'pool',
    ('conv2_1', 128), ('conv2_2', 128), 'pool',
    ('conv3_1', 256), ('conv3_2', 256), ('conv3_3', 256), ('conv3_4', 256), 'pool',
    ('conv4_1', 512), ('conv4_2', 512), ('conv4_3', 512), ('conv4_4', 512),
    ('conv5_1', 512), ('conv5_2', 512), ('conv5_3_CPM', 128),
)


class OpenPoseHandCPM(nn.Module):
    """The OpenPose hand CPM (pose_deploy.prototxt) with OpenPose's layer names as module names,
    so `state_dict()` keys are `<layer>.weight` / `<layer>.bias` exactly as in Caffe."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self._front: list[str] = []
        channels = 3
        for layer in _VGG_LAYERS:
            if layer == 'pool':
                self._front.append('pool')
                continue
            name, out_channels = layer
            setattr(self, name, nn.Conv2d(channels, out_channels, 3, padding=1))
            self._front.append(name)
            channels = out_channels
        features = channels
        self.conv6_1_CPM = nn.Conv2d(features, 512, 1)
        self.conv6_2_CPM = nn.Conv2d(512, config.num_maps, 1)
        for stage in range(2, config.stages + 1):
            in_channels = features + config.num_maps
            for index in range(1, 6):
                setattr(self, f'Mconv{index}_stage{stage}', nn.Conv2d(in_channels, 128, 7, padding=3))
                in_channels = 128
            setattr(self, f'Mconv6_stage{stage}', nn.Conv2d(128, 128, 1))
            setattr(self, f'Mconv7_stage{stage}', nn.Conv2d(128, config.num_maps, 1))
        self.pool = nn.MaxPool2d(2, 2)
        self.relu = nn.ReLU(inplace=True)
        _init_weights(self, self._map_heads())

    def _map_heads(self) -> list[nn.Conv2d]:
        return [self.conv6_2_CPM] + [getattr(self, f'Mconv7_stage{s}')
                                     for s in range(2, self.config.stages + 1)]

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        for name in self._front:
            x = self.pool(x) if name == 'pool' else self.relu(getattr(self, name)(x))
        features = x
        maps = self.conv6_2_CPM(self.relu(self.conv6_1_CPM(features)))
        outputs = [maps]
        for stage in range(2, self.config.stages + 1):
            x = torch.cat([maps, features], dim=1)
            for index in range(1, 7):
                x = self.relu(getattr(self, f'Mconv{index}_stage{stage}')(x))
            maps = getattr(self, f'Mconv7_stage{stage}')(x)
            outputs.append(maps)
        return outputs

    def forward(self, x: torch.Tensor):
        outputs = self.forward_stages(x)
        return outputs if self.training else outputs[-1]


def load_openpose_weights(model: OpenPoseHandCPM, state: dict[str, np.ndarray]) -> None:
    """Copy OpenPose/Caffe-format arrays (`<layer>.weight` (out,in,kh,kw), `<layer>.bias` (out,))
    into `model`, by name, checking that every parameter is given once with the right shape."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f'OpenPose weights do not match the model: missing {missing[:5]}'
                         f'{"..." if len(missing) > 5 else ""}, unexpected {unexpected[:5]}'
                         f'{"..." if len(unexpected) > 5 else ""}')
    for key, array in state.items():
        array = np.asarray(array)
        if tuple(array.shape) != tuple(own[key].shape):
            raise ValueError(f'OpenPose weight {key!r} has shape {tuple(array.shape)}, '
                             f'the model needs {tuple(own[key].shape)}')
    model.load_state_dict({key: torch.as_tensor(np.asarray(array, dtype=np.float32))
                           for key, array in state.items()})


# --------------------------------------------------------------------------------------------
# Light variants
# --------------------------------------------------------------------------------------------

class ConvBNReLU(nn.Sequential):
    """Conv (no bias) + BatchNorm + optional ReLU; `fuse_batchnorm` folds the BN for export."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1,
                 groups: int = 1, dilation: int = 1, relu: bool = True):
        padding = dilation * (kernel - 1) // 2
        layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, padding, dilation,
                            groups=groups, bias=False),
                  nn.BatchNorm2d(out_channels)]
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand, 3x3 depthwise (strided or dilated), 1x1 linear project."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand: int,
                 dilation: int = 1):
        super().__init__()
        hidden = in_channels * expand
        layers = [] if expand == 1 else [ConvBNReLU(in_channels, hidden)]
        layers += [ConvBNReLU(hidden, hidden, 3, stride, groups=hidden, dilation=dilation),
                   ConvBNReLU(hidden, out_channels, relu=False)]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


class SeparableResidual(nn.Module):
    """Depthwise kxk + pointwise 1x1 with a skip: the cheap large-receptive-field stage block."""

    def __init__(self, channels: int, kernel: int):
        super().__init__()
        self.block = nn.Sequential(ConvBNReLU(channels, channels, kernel, groups=channels),
                                   ConvBNReLU(channels, channels, relu=False))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(x + self.block(x))


def grow_stages(state: dict[str, torch.Tensor], stages: int,
                new_stages: int) -> dict[str, torch.Tensor]:
    """The state dict of a `stages`-stage network grown to `new_stages`: each added stage starts as
    a copy of the last one (stages 2.. all see [maps, features], so their shapes match), so the
    grown network begins by refining its maps once more rather than from random weights."""
    if not 2 <= stages <= new_stages:
        raise ValueError(f'can grow a network of 2 or more stages to as many or more, not {stages} '
                         f'to {new_stages}')
    patterns = (re.compile(r'^stages\.(\d+)\.'), re.compile(r'_stage(\d+)\.'))   # lite, OpenPose
    first_index = (0, 1)   # stage 1's index in each naming
    grown = dict(state)
    for key, value in state.items():
        for pattern, first in zip(patterns, first_index):
            match = pattern.search(key)
            if match and int(match.group(1)) == stages - 1 + first:
                for stage in range(stages, new_stages):
                    index = str(stage + first)
                    new_key = key[:match.start(1)] + index + key[match.end(1):]
                    grown[new_key] = value.clone()
    return grown


def widen_weights(initial: dict[str, torch.Tensor], trained: dict[str, torch.Tensor]
                  ) -> dict[str, torch.Tensor]:
    """The `trained` weights of a network fitted into a grown one's `initial` weights (its
    state_dict), for the tensors the two share: a tensor the grown network has wider keeps the
    trained values in its leading channels and its own initial values in the added ones, except
    that a convolution reads nothing from added input channels (zero weights there). The added
    channels are thus computed but unread, so the grown network starts with the trained one's
    outputs and learns to use them. Tensors only the grown network has (added blocks) are left
    out, for load_state_dict(strict=False). Used for a wider localiser stride-4 path and a wider
    keypoint front (width_mult)."""
    widened = {}
    for key, values in trained.items():
        target = initial.get(key)
        if target is None or target.shape == values.shape:
            widened[key] = values
            continue
        if target.dim() != values.dim() or any(new < old for new, old in zip(target.shape, values.shape)):
            raise ValueError(f'{key}: trained shape {tuple(values.shape)} does not fit into '
                             f'{tuple(target.shape)}')
        grown = target.clone()
        if grown.dim() == 4 and grown.shape[1] > values.shape[1]:
            grown[:, values.shape[1]:] = 0.0
        grown[tuple(slice(0, size) for size in values.shape)] = values
        widened[key] = grown
    return widened


def _make_divisible(value: float, divisor: int = 8) -> int:
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


# MobileNetV2 settings (expand t, channels c, repeats n, stride s, dilation d), cut at stride 8:
# the stride-16 stages of the original run at stride 8. Not dilated: in torch on a CPU the
# backward pass of a dilated depthwise conv is about 12x slower than an undilated one (measured
# here), and the 7x7 stage blocks give the receptive field anyway.
_MOBILENETV2_SETTINGS = ((1, 16, 1, 1, 1), (6, 24, 2, 2, 1), (6, 32, 3, 2, 1),
                         (6, 64, 4, 1, 1), (6, 96, 3, 1, 1))


class LiteCPM(nn.Module):
    """MobileNetV2 front (stride 8) to `feature_channels`, then `stages` CPM stages of
    depthwise-separable residual blocks; stages 2.. see [previous maps, features]."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        channels = _make_divisible(32 * config.width_mult)
        layers: list[nn.Module] = [ConvBNReLU(3, channels, 3, stride=2)]
        for expand, out, repeats, stride, dilation in _MOBILENETV2_SETTINGS:
            out = _make_divisible(out * config.width_mult)
            for index in range(repeats):
                layers.append(InvertedResidual(channels, out, stride if index == 0 else 1, expand,
                                               dilation))
                channels = out
        layers.append(ConvBNReLU(channels, config.feature_channels))
        self.backbone = nn.Sequential(*layers)
        self.stages = nn.ModuleList(
            self._make_stage(config.feature_channels + (config.num_maps if index else 0))
            for index in range(config.stages))
        _init_weights(self, [stage[-1] for stage in self.stages])
        self.handedness = (HandednessHead(config.feature_channels) if config.handedness_head
                           else None)
        self.stage_map_channels = config.num_maps   # maps passed between stages (pad_stage_maps)

    def _make_stage(self, in_channels: int) -> nn.Sequential:
        width = self.config.stage_channels
        return nn.Sequential(
            ConvBNReLU(in_channels, width),
            *(SeparableResidual(width, self.config.stage_kernel)
              for _ in range(self.config.stage_blocks)),
            nn.Conv2d(width, self.config.num_maps, 1))

    def _features_and_stages(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features = self.backbone(x)
        maps = self.stages[0](features)
        outputs = [maps]
        for stage in self.stages[1:]:
            maps = stage(torch.cat([maps, features], dim=1))
            outputs.append(maps)
        if self.stage_map_channels != self.config.num_maps:
            outputs = [stage_maps[:, :self.config.num_maps] for stage_maps in outputs]
        return features, outputs

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self._features_and_stages(x)[1]

    def forward(self, x: torch.Tensor):
        outputs = self.forward_stages(x)
        return outputs if self.training else outputs[-1]

    def handedness_descriptors(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(last stage's maps, HandednessHead.describe vectors) of a batch."""
        features, outputs = self._features_and_stages(x)
        return outputs[-1], HandednessHead.describe(features, outputs[-1])

    def forward_handedness(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(last stage's maps (N,22,s,s), probability (N,) that each crop shows a left hand)."""
        if self.handedness is None:
            raise ValueError(f'model {self.config.name!r} has no handedness head')
        maps, descriptors = self.handedness_descriptors(x)
        return maps, torch.sigmoid(self.handedness(descriptors)[:, 0])


# Keypoint indices the handedness geometry uses (hand_cpm_ros.keypoints order).
_WRIST, _THUMB_MCP, _INDEX_MCP, _LITTLE_MCP = 0, 2, 5, 17


class HandednessHead(nn.Module):
    """Left or right from a crop's shared features and its keypoint maps.

    A hand's side is the product of two things: which way round its fingers lie in the image (the
    sign of the angle from wrist->index MCP to wrist->little MCP) and whether the palm or the
    back faces the camera (appearance, in the features). `describe` puts both, and their product,
    in one vector with no parameters; a small MLP turns it into a left-hand logit. It is trained
    on top of a finished keypoint network (hand-cpm-train-handedness) without changing it."""

    def __init__(self, feature_channels: int, hidden: int = 64):
        super().__init__()
        size = self.descriptor_size(feature_channels)
        self.classifier = nn.Sequential(nn.BatchNorm1d(size), nn.Linear(size, hidden),
                                        nn.ReLU(inplace=True), nn.Dropout(0.2),
                                        nn.Linear(hidden, 1))

    @staticmethod
    def descriptor_size(feature_channels: int) -> int:
        return 2 * feature_channels + 2 + 2 * (NUM_MAPS - 1)

    @staticmethod
    def describe(features: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        """(N, descriptor_size): mean features, the same times the finger-order sine, the sines
        of the wrist angles index->little and thumb->little, and the 21 keypoints' map-weighted
        mean positions in [-1, 1]."""
        height, width = maps.shape[2:]
        weights = torch.relu(maps[:, :NUM_MAPS - 1]).flatten(2)
        weights = weights / (weights.sum(dim=2, keepdim=True) + 1e-6)
        ys = torch.linspace(-1.0, 1.0, height, device=maps.device, dtype=maps.dtype)
        xs = torch.linspace(-1.0, 1.0, width, device=maps.device, dtype=maps.dtype)
        grid_x = xs.repeat(height)
        grid_y = ys.repeat_interleave(width)
        points = torch.stack([weights @ grid_x, weights @ grid_y], dim=2)  # (N, 21, 2)

        def sine(first: int, second: int) -> torch.Tensor:
            a = points[:, first] - points[:, _WRIST]
            b = points[:, second] - points[:, _WRIST]
            cross = a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]
            # lengths as sqrt(sum of squares), not norm(): ONNX Runtime's symbolic shape
            # inference (hand-cpm-quantize) cannot follow the ReduceL2 that norm() exports to
            lengths = torch.sqrt((a * a).sum(dim=1)) * torch.sqrt((b * b).sum(dim=1))
            return cross / (lengths + 1e-6)

        finger_order = sine(_INDEX_MCP, _LITTLE_MCP)
        pooled = features.mean(dim=(2, 3))
        return torch.cat([pooled, pooled * finger_order[:, None], finger_order[:, None],
                          sine(_THUMB_MCP, _LITTLE_MCP)[:, None], points.flatten(1)], dim=1)

    def forward(self, descriptors: torch.Tensor) -> torch.Tensor:
        """(N, 1) left-hand logits of `describe` vectors."""
        return self.classifier(descriptors)


# --------------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------------

def _init_weights(model: nn.Module, map_heads: list[nn.Conv2d]) -> None:
    """Kaiming-normal (fan_out, ReLU) for every conv, zero biases, BN to identity; the layers that
    predict belief maps get normal(0, 0.01) so training starts from near-zero maps.

    OpenPose's normal(0, 0.01) everywhere relies on a pretrained VGG-19; from scratch (no
    pretrained weights can be had here) it makes the activations of a 20-layer plain ReLU stack
    vanish, while Kaiming keeps their variance constant with depth.
    """
    heads = {id(head) for head in map_heads}
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            if id(module) in heads:
                nn.init.normal_(module.weight, 0.0, 0.01)
            else:
                nn.init.kaiming_normal_(module.weight, mode='fan_out', nonlinearity='relu')
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def build_model(config: ModelConfig) -> nn.Module:
    """A freshly initialised model for `config` (train mode)."""
    if config.backbone == 'vgg19':
        return OpenPoseHandCPM(config)
    return LiteCPM(config)


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` with every ConvBNReLU's BatchNorm folded into its conv."""
    fused = copy.deepcopy(model).eval()
    for module in fused.modules():
        if isinstance(module, ConvBNReLU) and isinstance(module[1], nn.BatchNorm2d):
            module[0] = torch.nn.utils.fusion.fuse_conv_bn_eval(module[0], module[1])
            module[1] = nn.Identity()
    return fused


def pad_stage_maps(model: nn.Module, multiple: int = 8) -> nn.Module:
    """An inference copy of a LiteCPM whose stages hand their maps on with zero channels added up
    to a multiple of `multiple` (22 -> 24); its outputs are the same. Then [maps, features] has a
    channel count that ONNX Runtime's blocked (NCHWc) CPU convolutions take, and the exported graph
    needs no layout reorders between stages: about a tenth less time per crop on the build CPU.
    Other models are returned as they are."""
    if not isinstance(model, LiteCPM) or model.stage_map_channels != model.config.num_maps:
        return model
    num_maps = model.config.num_maps
    width = -(-num_maps // multiple) * multiple
    padded = copy.deepcopy(model)
    for index, stage in enumerate(padded.stages):
        head = stage[-1]
        wide_head = nn.Conv2d(head.in_channels, width, 1)
        with torch.no_grad():
            wide_head.weight.zero_()
            wide_head.bias.zero_()
            wide_head.weight[:num_maps] = head.weight
            wide_head.bias[:num_maps] = head.bias
        stage[-1] = wide_head
        if index:   # stages 2..: the projection of [maps, features] gets zero weights for the padding
            projection = stage[0][0]
            wide_input = nn.Conv2d(projection.in_channels + width - num_maps,
                                   projection.out_channels, projection.kernel_size,
                                   projection.stride, projection.padding, projection.dilation,
                                   bias=projection.bias is not None)
            with torch.no_grad():
                wide_input.weight.zero_()
                wide_input.weight[:, :num_maps] = projection.weight[:, :num_maps]
                wide_input.weight[:, width:] = projection.weight[:, num_maps:]
                if projection.bias is not None:
                    wide_input.bias.copy_(projection.bias)
            stage[0][0] = wide_input
    padded.stage_map_channels = width
    return padded.eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_gflops(model_or_config: nn.Module | ModelConfig, input_size: int | None = None) -> float:
    """2 x multiply-accumulates of all convolutions and linear layers for one crop, in GFLOPs.

    Counted by forward hooks on a meta-device copy (no memory, no arithmetic)."""
    if isinstance(model_or_config, ModelConfig):
        config = model_or_config
        with torch.device('meta'):
            model = build_model(config)
    else:
        config = model_or_config.config
        model = copy.deepcopy(model_or_config).to('meta')
    size = input_size or config.input_size
    macs = 0

    def conv_hook(module: nn.Conv2d, _inputs, output):
        nonlocal macs
        kernel = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        macs += output[0].numel() * kernel

    def linear_hook(module: nn.Linear, _inputs, output):
        nonlocal macs
        macs += output[0].numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    model.eval()
    with torch.no_grad():
        model.forward_stages(torch.zeros(1, 3, size, size, device='meta'))
    for handle in handles:
        handle.remove()
    return 2.0 * macs / 1e9


def describe_variants() -> list[dict]:
    """One row per variant: name, params, gflops (at its input size), input_size, stages,
    output_shape (C, H, W) for one crop."""
    rows = []
    for name, config in VARIANTS.items():
        with torch.device('meta'):
            model = build_model(config)
        rows.append({'name': name, 'params': count_parameters(model),
                     'gflops': round(count_gflops(config), 3), 'input_size': config.input_size,
                     'stages': config.stages,
                     'output_shape': [config.num_maps, config.output_size, config.output_size]})
    return rows


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='hand-cpm-models',
        description='List the CPM model variants with parameters, GFLOPs and shapes.')
    parser.add_argument('--json', action='store_true', help='print a JSON list instead of a table')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    rows = describe_variants()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print('| variant | params | GFLOPs | input | stages | output (C,H,W) |')
    print('|---|---:|---:|---:|---:|---|')
    for row in rows:
        print(f'| {row["name"]} | {row["params"]:,} | {row["gflops"]:.2f} | {row["input_size"]} | '
              f'{row["stages"]} | {tuple(row["output_shape"])} |')
    return 0


if __name__ == '__main__':
    sys.exit(main())
