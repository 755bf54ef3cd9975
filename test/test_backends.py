"""Inference backends: ModelInfo parsing, the one normalisation, input validation, clear errors
for missing or foreign files, the automatic choice, and torch/ONNX Runtime agreement."""
import importlib.util
import json

import numpy as np
import onnx
import pytest
import torch

from hand_cpm_ros.backends import (Backend, BackendError, ModelInfo, average_mirrored,
                                   create_backend, normalize_crops, with_mirrored)
from hand_cpm_ros.codec import HeatmapCodec
from hand_cpm_ros.keypoints import KEYPOINT_NAMES
from hand_cpm_ros.tensorrt_build import write_sidecar
from hand_cpm_train.checkpoint import runtime_metadata, save_checkpoint
from hand_cpm_train.export import export_onnx
from hand_cpm_train.models import build_model, get_config

SIZE = 64


def metadata(**changes):
    config = get_config('cpm-lite-s', input_size=SIZE)
    props = runtime_metadata(config, HeatmapCodec(input_size=SIZE, stride=8).to_dict())
    props.update(changes)
    return props


@pytest.fixture(scope='module')
def model_files(tmp_path_factory):
    """A cpm-lite-s checkpoint at 64 px with non-trivial BatchNorm statistics, and its ONNX."""
    directory = tmp_path_factory.mktemp('models')
    config = get_config('cpm-lite-s', input_size=SIZE)
    torch.manual_seed(3)
    model = build_model(config).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
            module.bias.data.uniform_(-0.1, 0.1)
    codec = HeatmapCodec(input_size=SIZE, stride=8).to_dict()
    save_checkpoint(directory / 'model.pt', {'format_version': 1, 'model': model.state_dict(),
                                             'model_config': config.to_dict(), 'codec': codec})
    export_onnx(model, config, codec, directory / 'model.onnx')
    return directory / 'model.pt', directory / 'model.onnx'


@pytest.fixture(scope='module')
def onnx_backend(model_files):
    return create_backend('onnxruntime', model_path=str(model_files[1]), threads=1)


def test_model_info_parses_runtime_metadata():
    info = ModelInfo.from_metadata(metadata())
    assert info.variant == 'cpm-lite-s' and info.input_size == SIZE and info.output_size == 8
    assert info.mean == (0.406, 0.456, 0.485) and info.channel_order == 'bgr'
    assert info.keypoint_names == KEYPOINT_NAMES and info.codec['input_size'] == SIZE


@pytest.mark.parametrize('props, message', [
    ({'input_size': None}, r"lacks \['input_size'\]"),
    ({'input_size': 'big'}, "input_size='big'"),
    ({'mean': '[0.5, 0.5]'}, 'mean=.*3 numbers'),
    ({'std': '[1, 0, 1]'}, 'std=.*> 0'),
    ({'channel_order': 'yuv'}, "channel_order='yuv'"),
    ({'num_maps': '19'}, 'num_maps=19 does not match 21 keypoint_names'),
    ({'input_size': '60'}, 'not a multiple of stride=8'),
    ({'format_version': '2'}, 'format_version'),
    ({'codec': '[1]'}, 'codec=.*JSON object'),
    ({'handedness_output': 'side'}, "handedness_output='side'"),
])
def test_model_info_errors_name_the_bad_key(props, message):
    values = metadata(**{k: v for k, v in props.items() if v is not None})
    for key in [k for k, v in props.items() if v is None]:
        del values[key]
    with pytest.raises(ValueError, match=message):
        ModelInfo.from_metadata(values)


def test_normalize_crops_applies_mean_std_in_bgr_order():
    info = ModelInfo.from_metadata(metadata(mean='[0.0, 0.5, 1.0]', std='[1.0, 0.5, 0.25]'))
    crops = np.zeros((2, SIZE, SIZE, 3), np.uint8)
    crops[1, 3, 5] = (255, 51, 0)  # B, G, R
    x = normalize_crops(crops, info)
    assert x.shape == (2, 3, SIZE, SIZE) and x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_allclose(x[1, :, 3, 5], [1.0, (0.2 - 0.5) / 0.5, -4.0], atol=1e-6)
    np.testing.assert_allclose(x[0, :, 0, 0], [0.0, -1.0, -4.0], atol=1e-6)
    rgb = ModelInfo.from_metadata(metadata(mean='[0,0,0]', std='[1,1,1]', channel_order='rgb'))
    np.testing.assert_allclose(normalize_crops(crops, rgb)[1, :, 3, 5], [0.0, 0.2, 1.0], atol=1e-6)
    with pytest.raises(ValueError, match='uint8'):
        normalize_crops(crops.astype(np.float32), info)
    with pytest.raises(ValueError, match=r'\(N,H,W,3\)'):
        normalize_crops(crops[0], info)


def test_infer_validates_shape_and_dtype(onnx_backend):
    assert isinstance(onnx_backend, Backend) and onnx_backend.name == 'onnxruntime'
    with pytest.raises(ValueError, match='float32'):
        onnx_backend.infer(np.zeros((1, 3, SIZE, SIZE), np.float64))
    with pytest.raises(ValueError, match=r'\(N,3,64,64\).*cpm-lite-s.*\(1, 3, 96, 96\)'):
        onnx_backend.infer(np.zeros((1, 3, 96, 96), np.float32))
    with pytest.raises(ValueError, match='numpy array'):
        onnx_backend.infer([[0.0]])
    assert onnx_backend.infer(np.zeros((0, 3, SIZE, SIZE), np.float32)).shape == (0, 22, 8, 8)
    assert 'CPUExecutionProvider, 1 threads' in onnx_backend.describe()


def test_torch_backend_matches_onnxruntime(model_files, onnx_backend):
    torch_backend = create_backend('torch', model_path=str(model_files[0]), threads=1)
    assert torch_backend.info == onnx_backend.info
    crops = np.random.default_rng(0).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    x = normalize_crops(crops, onnx_backend.info)
    expected = torch_backend.infer(x)
    assert expected.shape == (3, 22, 8, 8) and expected.dtype == np.float32
    assert np.abs(expected).max() > 1e-3
    assert np.abs(onnx_backend.infer(x) - expected).max() < 1e-4
    assert np.abs(onnx_backend.infer(x[1:2]) - expected[1:2]).max() < 1e-4


def test_handedness_head_exports_a_second_output_that_every_backend_returns(tmp_path):
    config = get_config('cpm-lite-s', input_size=SIZE, handedness_head=True)
    torch.manual_seed(4)
    model = build_model(config).eval()
    model.handedness.classifier[0].running_mean.uniform_(-0.5, 0.5)
    codec = HeatmapCodec(input_size=SIZE, stride=8).to_dict()
    save_checkpoint(tmp_path / 'sided.pt', {'format_version': 1, 'model': model.state_dict(),
                                            'model_config': config.to_dict(), 'codec': codec})
    export_onnx(model, config, codec, tmp_path / 'sided.onnx')
    model_proto = onnx.load(tmp_path / 'sided.onnx')
    assert [output.name for output in model_proto.graph.output] == ['belief_maps', 'handedness']
    # hand-cpm-quantize starts with ONNX Runtime's symbolic shape inference: it must follow the head
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference
    inferred = SymbolicShapeInference.infer_shapes(model_proto, auto_merge=True)
    assert [len(o.type.tensor_type.shape.dim) for o in inferred.graph.output] == [4, 1]
    onnx_backend = create_backend('onnxruntime', model_path=str(tmp_path / 'sided.onnx'), threads=1)
    torch_backend = create_backend('torch', model_path=str(tmp_path / 'sided.pt'), threads=1)
    assert onnx_backend.info.handedness and torch_backend.info == onnx_backend.info
    crops = np.random.default_rng(1).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    x = normalize_crops(crops, onnx_backend.info)
    maps, left = torch_backend.infer_with_handedness(x)
    assert left.shape == (3,) and np.all((left > 0) & (left < 1)) and np.ptp(left) > 1e-4
    onnx_maps, onnx_left = onnx_backend.infer_with_handedness(x)
    np.testing.assert_allclose(onnx_maps, maps, atol=1e-4)
    np.testing.assert_allclose(onnx_left, left, atol=1e-5)
    np.testing.assert_allclose(onnx_backend.infer(x), maps, atol=1e-4)
    empty_maps, empty_left = onnx_backend.infer_with_handedness(x[:0])
    assert empty_maps.shape == (0, 22, 8, 8) and empty_left.shape == (0,)
    # flip averaging: each crop's answer averaged with its mirror's, flipped back (a mirrored
    # left hand looks like a right one), in one call
    mirrored = np.ascontiguousarray(x[..., ::-1])
    mirror_maps, mirror_left = onnx_backend.infer_with_handedness(mirrored)
    averaged_maps, averaged_left = onnx_backend.infer_with_handedness(x, flip_averaging=True)
    assert averaged_maps.shape == maps.shape and averaged_maps.flags.c_contiguous
    np.testing.assert_allclose(averaged_maps, (maps + mirror_maps[..., ::-1]) / 2, atol=1e-4)
    np.testing.assert_allclose(averaged_left, (left + 1 - mirror_left) / 2, atol=1e-5)
    # so a mirrored crop gets exactly the mirrored maps and the other side
    maps_of_mirror, left_of_mirror = torch_backend.infer_with_handedness(mirrored, flip_averaging=True)
    np.testing.assert_allclose(maps_of_mirror, averaged_maps[..., ::-1], atol=1e-4)
    np.testing.assert_allclose(left_of_mirror, 1 - averaged_left, atol=1e-5)


def test_mirrored_outputs_must_come_in_pairs():
    batch = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    doubled = with_mirrored(batch)
    assert doubled.shape == (4, 3, 4, 4)
    np.testing.assert_array_equal(doubled[3], batch[1][..., ::-1])
    maps, left = average_mirrored(doubled, None)  # mirror-symmetric by construction: unchanged
    np.testing.assert_allclose(maps, batch)
    assert left is None
    with pytest.raises(ValueError, match='even count'):
        average_mirrored(doubled[:3], None)
    with pytest.raises(ValueError, match='even count'):
        average_mirrored(doubled, np.zeros(3, np.float32))


def test_headless_model_has_no_handedness(onnx_backend):
    maps, left = onnx_backend.infer_with_handedness(np.zeros((1, 3, SIZE, SIZE), np.float32))
    assert maps.shape == (1, 22, 8, 8) and left is None and not onnx_backend.info.handedness


def test_auto_chooses_onnxruntime_here_and_says_why(model_files, tmp_path):
    logs = []
    backend = create_backend('auto', model_path=str(model_files[1]),
                             engine_path=str(tmp_path / 'model.engine'), logger=logs.append)
    assert backend.name == 'onnxruntime'
    assert len(logs) == 1 and 'onnxruntime' in logs[0] and 'does not exist' in logs[0]
    logs.clear()
    assert create_backend('auto', model_path=str(model_files[0]), logger=logs.append).name == 'torch'
    assert 'auto: checkpoint' in logs[0]


def test_auto_skips_an_engine_that_cannot_run_here(model_files, tmp_path):
    engine = tmp_path / 'model.engine'
    engine.write_bytes(b'serialized engine')
    logs = []
    backend = create_backend('auto', model_path=str(model_files[1]), engine_path=str(engine),
                             logger=logs.append)
    assert backend.name == 'onnxruntime'
    assert 'TensorRT is not installed' in logs[-1] or 'no CUDA GPU' in logs[-1]


def test_missing_and_foreign_files_give_clear_errors(model_files, tmp_path):
    with pytest.raises(BackendError, match='does not exist.*hand-cpm-export'):
        create_backend('onnxruntime', model_path=str(tmp_path / 'none.onnx'))
    (tmp_path / 'junk.onnx').write_bytes(b'junk')
    with pytest.raises(BackendError, match='cannot load ONNX model'):
        create_backend('onnxruntime', model_path=str(tmp_path / 'junk.onnx'))
    proto = onnx.load(str(model_files[1]))
    del proto.metadata_props[:]
    onnx.save(proto, str(tmp_path / 'bare.onnx'))
    with pytest.raises(BackendError, match='metadata lacks.*hand-cpm-export'):
        create_backend('onnxruntime', model_path=str(tmp_path / 'bare.onnx'))
    with pytest.raises(BackendError, match='does not exist'):
        create_backend('torch', model_path=str(tmp_path / 'none.pt'))
    with pytest.raises(BackendError, match='does not exist.*hand-cpm-build-engine'):
        create_backend('tensorrt', engine_path=str(tmp_path / 'none.engine'))
    with pytest.raises(ValueError, match="unknown backend 'openvino'"):
        create_backend('openvino', model_path=str(model_files[1]))
    with pytest.raises(ValueError, match=r'torch backend needs model_path to a \.pt'):
        create_backend('torch', model_path=str(model_files[1]))
    with pytest.raises(BackendError, match='no usable backend'):
        create_backend('auto')


def test_tensorrt_backend_reads_sidecar_before_needing_tensorrt(tmp_path):
    engine = tmp_path / 'model.engine'
    engine.write_bytes(b'serialized engine')
    with pytest.raises(BackendError, match='sidecar .* is missing'):
        create_backend('tensorrt', engine_path=str(engine))
    write_sidecar(engine, {
        'sidecar_version': 1, 'tensorrt_version': '10.3.0', 'gpu_name': 'Orin',
        'compute_capability': '8.7', 'precision': 'fp16', 'input_name': 'image',
        'output_name': 'belief_maps', 'min_shape': [1, 3, SIZE, SIZE],
        'opt_shape': [2, 3, SIZE, SIZE], 'max_shape': [4, 3, SIZE, SIZE],
        'onnx_path': '/m/model.onnx', 'onnx_sha256': '0' * 64, 'metadata': metadata()})
    if importlib.util.find_spec('tensorrt') is not None:
        pytest.skip('TensorRT is installed: the real engine path is covered on a GPU machine')
    with pytest.raises(BackendError, match='TensorRT is not installed'):
        create_backend('tensorrt', engine_path=str(engine))
    assert json.loads((tmp_path / 'model.engine.json').read_text())['precision'] == 'fp16'


def test_runtime_modules_import_no_engine_at_module_level():
    import subprocess
    import sys
    code = ('import sys, hand_cpm_ros.backends, hand_cpm_ros.tensorrt_build; '
            'print(sorted(m for m in ("torch", "onnxruntime", "tensorrt", "rclpy") '
            'if m in sys.modules))')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == '[]'
