"""Export a trained checkpoint to ONNX for the runtime: `hand-cpm-export`.

The graph is inference only (the last stage's maps), BatchNorm folded into the convolutions, with
input 'image' (N,3,S,S) float32 (normalised BGR), output 'belief_maps' (N,22,S/8,S/8) and a
dynamic batch axis; a model with a handedness head (hand-cpm-train-handedness) adds a second
output 'handedness' (N,), the probability that each crop shows a left hand. It is produced by
torch's dynamo exporter (`torch.onnx.export(dynamo=True)`, the default of torch >= 2.9, via
onnxscript), which gives a clean Conv/Relu/Add/Concat graph and a symbolic batch dimension.
Everything a runtime needs (variant, sizes, normalisation, keypoint names, codec, the model
config, the handedness output's name) is stored in the model's metadata_props.

A localiser checkpoint (hand-cpm-train --task localizer) exports the same way, with input 'image'
(N,3,H,W) (the letterboxed frame, 256x320 for loc-lite) and output 'localizer_maps'
(N,6,H/4,W/4); its metadata says task=localizer. --frame-size WxH exports it for frames
letterboxed to another input size than it was trained on (hand-cpm-eval --frame-size measures
which is best); the runtime reads the size from the metadata.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

from hand_cpm_ros.backends.base import HANDEDNESS_OUTPUT
from hand_cpm_ros.files import write_atomic
from hand_cpm_train.checkpoint import load_model, runtime_metadata
from hand_cpm_train.localizer_model import LocalizerConfig, parse_frame_size
from hand_cpm_train.models import ModelConfig, fuse_batchnorm, pad_stage_maps

DEFAULT_OPSET = 18
INPUT_NAME = 'image'
OUTPUT_NAME = 'belief_maps'
LOCALIZER_OUTPUT_NAME = 'localizer_maps'


class _MapsAndHandedness(nn.Module):
    """A CPM with a handedness head as one graph: crops -> (belief maps, P(left))."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.forward_handedness(x)


def _graph_spec(config: ModelConfig | LocalizerConfig) -> tuple[tuple[int, int], list[str], str]:
    """((input height, width), output names, doc string) of a model's ONNX graph."""
    if isinstance(config, LocalizerConfig):
        return ((config.input_height, config.input_width), [LOCALIZER_OUTPUT_NAME],
                f'hand_cpm {config.name}: letterboxed normalised BGR frames -> hand centre / size '
                f'/ offset / handedness maps')
    if config.handedness_head:
        return ((config.input_size, config.input_size), [OUTPUT_NAME, HANDEDNESS_OUTPUT],
                f'hand_cpm {config.name}: normalised BGR crops -> CPM belief maps and the '
                f'probability of a left hand')
    return ((config.input_size, config.input_size), [OUTPUT_NAME],
            f'hand_cpm {config.name}: normalised BGR crops -> CPM belief maps')


def export_onnx(model: nn.Module, config: ModelConfig | LocalizerConfig, codec_dict: dict,
                path: str | os.PathLike, opset: int = DEFAULT_OPSET) -> Path:
    """Write `model` (a CPM's last stage, or a localiser; BN folded, dynamic batch) with runtime
    metadata to `path` (atomically, replacing any file there) and return the path; the graph
    passes onnx.checker."""
    import onnx

    path = Path(path)
    inference_model = pad_stage_maps(fuse_batchnorm(model)).cpu()
    (height, width), output_names, doc = _graph_spec(config)
    if len(output_names) == 2:
        inference_model = _MapsAndHandedness(inference_model).eval()
    example = torch.zeros(2, 3, height, width)
    batch = torch.export.Dim('batch', min=1, max=4096)
    onnx_logger = logging.getLogger('torch.onnx')  # silence its torchvision-missing notes
    previous_level = onnx_logger.level
    onnx_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)  # torch.export internals, not ours
            program = torch.onnx.export(inference_model, (example,), dynamo=True, verbose=False,
                                        opset_version=opset, input_names=[INPUT_NAME],
                                        output_names=output_names, dynamic_shapes=({0: batch},),
                                        optimize=True)
    finally:
        onnx_logger.setLevel(previous_level)
    proto = program.model_proto
    proto.doc_string = doc
    onnx.helper.set_model_props(proto, runtime_metadata(config, codec_dict))
    onnx.checker.check_model(proto)
    return write_atomic(path, proto.SerializeToString())


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='hand-cpm-export',
        description='Export a hand-cpm checkpoint to an ONNX model with runtime metadata.')
    parser.add_argument('--checkpoint', required=True, help='checkpoint (.pt) from hand-cpm-train')
    parser.add_argument('--out', required=True, help='ONNX file to write')
    parser.add_argument('--opset', type=int, default=DEFAULT_OPSET,
                        help=f'ONNX opset (default {DEFAULT_OPSET})')
    parser.add_argument('--frame-size', metavar='WxH',
                        help='localizer: network input for the letterboxed frame, e.g. 384x288 '
                             '(multiples of 32); default: the trained size')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out file')
    return parser


def main(argv: list[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        print(f'hand-cpm-export: {out} exists; pass --overwrite to replace it', file=sys.stderr)
        return 2
    if out.suffix != '.onnx':
        print(f'hand-cpm-export: --out {out} should end in .onnx', file=sys.stderr)
        return 2
    if not 14 <= args.opset <= 23:
        print(f'hand-cpm-export: --opset {args.opset} is outside the supported 14..23',
              file=sys.stderr)
        return 2
    try:
        frame_size = parse_frame_size(args.frame_size) if args.frame_size else None
        model, config, codec = load_model(args.checkpoint, frame_size=frame_size)
    except ValueError as error:
        print(f'hand-cpm-export: {error}', file=sys.stderr)
        return 2
    export_onnx(model, config, codec, out, args.opset)
    (height, width), _, _ = _graph_spec(config)
    print(f'wrote {out} ({config.name}, input {width}x{height}, opset {args.opset}, '
          f'{out.stat().st_size / 1e6:.1f} MB)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
