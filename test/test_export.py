"""Checkpoints (atomic save, safe and checked load) and ONNX export (metadata, checker, dynamic
batch, ONNX Runtime parity with PyTorch on random and real images, the hand-cpm-export CLI)."""
import json
import os
import pickle

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from skimage import data as skimage_data

from hand_cpm_ros.backends import ModelInfo, normalize_crops
from hand_cpm_ros.codec import HeatmapCodec
from hand_cpm_ros.keypoints import KEYPOINT_NAMES
from hand_cpm_train.checkpoint import (CheckpointError, load_checkpoint, load_model,
                                       save_checkpoint)
from hand_cpm_train.export import export_onnx, main
from hand_cpm_train.models import build_model, get_config

# Small inputs keep cpm-vgg19 fast; the light variants run at their real sizes.
EXPORT_CASES = [('cpm-vgg19', 64), ('cpm-lite', 256), ('cpm-lite-s', 192)]


def trained_like(config, seed=0):
    """A model whose outputs are far from zero (Kaiming map heads, non-trivial BN statistics),
    so that a parity check compares real numbers, not 1e-3 noise."""
    torch.manual_seed(seed)
    model = build_model(config)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d) and module.out_channels == config.num_maps:
            torch.nn.init.kaiming_normal_(module.weight)
            torch.nn.init.uniform_(module.bias, -0.1, 0.1)
        elif isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.1)
    return model.eval()


def checkpoint_state(model, config):
    codec = HeatmapCodec(input_size=config.input_size, stride=config.stride).to_dict()
    return {'format_version': 1, 'model': model.state_dict(), 'model_config': config.to_dict(),
            'codec': codec, 'epoch': 3, 'history': [{'epoch': 3, 'loss': 0.5}]}


def real_crops(size, count):
    """`count` BGR crops of a real photo (scikit-image's astronaut), resized to size x size."""
    image = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR)
    boxes = [(0, 0, 300), (100, 150, 220), (200, 40, 260)]
    return np.stack([cv2.resize(image[y:y + s, x:x + s], (size, size))
                     for x, y, s in boxes[:count]])


@pytest.fixture(scope='module', params=EXPORT_CASES, ids=[name for name, _ in EXPORT_CASES])
def exported(request, tmp_path_factory):
    name, size = request.param
    config = get_config(name, input_size=size)
    model = trained_like(config)
    codec = HeatmapCodec(input_size=size, stride=8).to_dict()
    path = export_onnx(model, config, codec, tmp_path_factory.mktemp(name) / 'model.onnx')
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    return model, config, codec, path, session


def test_onnx_passes_checker_and_has_named_io_with_dynamic_batch(exported):
    _, config, _, path, _ = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    (image,), (maps,) = proto.graph.input, proto.graph.output
    assert image.name == 'image' and maps.name == 'belief_maps'
    dims = image.type.tensor_type.shape.dim
    assert dims[0].dim_param and not dims[0].dim_value  # symbolic batch
    assert [d.dim_value for d in dims[1:]] == [3, config.input_size, config.input_size]
    assert 'BatchNormalization' not in {node.op_type for node in proto.graph.node}
    if config.name != 'cpm-vgg19':   # light CPMs hand 24 maps (22 and 2 zero) from stage to stage
        weights = {tensor.name: tensor.dims for tensor in proto.graph.initializer}
        conv_outputs = [weights[node.input[1]][0] for node in proto.graph.node
                        if node.op_type == 'Conv' and node.input[1] in weights]
        assert 22 not in conv_outputs and 'Slice' in {node.op_type for node in proto.graph.node}


def test_onnx_metadata_round_trip(exported):
    _, config, codec, path, _ = exported
    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    info = ModelInfo.from_metadata(props)
    assert info.variant == config.name and info.input_size == config.input_size
    assert info.stride == 8 and info.num_maps == 22 and info.channel_order == 'bgr'
    assert info.mean == config.mean and info.std == config.std
    assert info.keypoint_names == KEYPOINT_NAMES
    assert info.codec == codec
    assert HeatmapCodec.from_dict(info.codec) == HeatmapCodec.from_dict(codec)
    assert json.loads(props['model_config']) == config.to_dict()
    assert props['format_version'] == '1'


@pytest.mark.parametrize('batch', [1, 3])
def test_onnxruntime_matches_pytorch_on_random_and_real_images(exported, batch):
    model, config, _, _, session = exported
    info = ModelInfo.from_metadata(session.get_modelmeta().custom_metadata_map)
    size = config.input_size
    rng = np.random.default_rng(batch)
    inputs = {'random': rng.standard_normal((batch, 3, size, size), dtype=np.float32),
              'astronaut': normalize_crops(real_crops(size, batch), info)}
    for label, x in inputs.items():
        onnx_maps = session.run(['belief_maps'], {'image': x})[0]
        with torch.no_grad():
            torch_maps = model(torch.from_numpy(x)).numpy()
        assert onnx_maps.shape == (batch, 22, size // 8, size // 8)
        assert np.abs(torch_maps).max() > 0.1, 'outputs too small for a meaningful comparison'
        assert np.abs(onnx_maps - torch_maps).max() < 1e-4, label


# ---------------------------------------------------------------------------------------------
# Checkpoints and the command line
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def small_checkpoint(tmp_path_factory):
    config = get_config('cpm-lite-s', input_size=64)
    model = trained_like(config, seed=5)
    path = tmp_path_factory.mktemp('ckpt') / 'model.pt'
    save_checkpoint(path, checkpoint_state(model, config))
    return path, model, config


def test_checkpoint_round_trip_restores_model_config_and_codec(small_checkpoint):
    path, model, config = small_checkpoint
    loaded, loaded_config, codec = load_model(path)
    assert loaded_config == config and not loaded.training
    assert HeatmapCodec.from_dict(codec).input_size == 64
    assert load_checkpoint(path)['history'] == [{'epoch': 3, 'loss': 0.5}]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_failing_save_leaves_previous_checkpoint_intact(small_checkpoint, tmp_path):
    path, model, config = small_checkpoint
    target = tmp_path / 'last.pt'
    save_checkpoint(target, checkpoint_state(model, config))
    before = target.read_bytes()
    broken = {**checkpoint_state(model, config), 'history': [lambda: 0]}  # cannot be pickled
    with pytest.raises(Exception):
        save_checkpoint(target, broken)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ['last.pt']  # no temp file left behind


class Payload:
    """An arbitrary object: weights_only loading must refuse to unpickle it."""


def test_load_errors_name_the_problem(small_checkpoint, tmp_path):
    path, model, config = small_checkpoint
    with pytest.raises(CheckpointError, match='does not exist'):
        load_checkpoint(tmp_path / 'missing.pt')
    (tmp_path / 'garbage.pt').write_bytes(b'not a checkpoint at all')
    with pytest.raises(CheckpointError, match='not a readable hand-cpm checkpoint'):
        load_checkpoint(tmp_path / 'garbage.pt')
    (tmp_path / 'object.pt').write_bytes(pickle.dumps(Payload(), protocol=2))
    with pytest.raises(CheckpointError, match='not a readable'):
        load_checkpoint(tmp_path / 'object.pt')
    torch.save({'model': model.state_dict()}, tmp_path / 'partial.pt')
    with pytest.raises(CheckpointError, match=r"missing keys \['format_version', 'model_config'"):
        load_checkpoint(tmp_path / 'partial.pt')
    torch.save({**checkpoint_state(model, config), 'format_version': 7}, tmp_path / 'future.pt')
    with pytest.raises(CheckpointError, match='format_version 7'):
        load_checkpoint(tmp_path / 'future.pt')
    other = checkpoint_state(model, config)
    other['model_config'] = get_config('cpm-lite', input_size=64).to_dict()
    torch.save(other, tmp_path / 'mismatch.pt')
    with pytest.raises(CheckpointError, match="do not fit variant 'cpm-lite'"):
        load_model(tmp_path / 'mismatch.pt')


def test_export_command_writes_model_and_refuses_to_overwrite(small_checkpoint, tmp_path, capsys):
    path, model, config = small_checkpoint
    out = tmp_path / 'model.onnx'
    assert main(['--checkpoint', str(path), '--out', str(out)]) == 0
    session = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    assert np.abs(session.run(None, {'image': x})[0] - expected).max() < 1e-4
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask, 'the model must be readable like any file'
    before = out.read_bytes()
    assert main(['--checkpoint', str(path), '--out', str(out)]) == 2
    assert 'pass --overwrite' in capsys.readouterr().err
    assert out.read_bytes() == before
    assert main(['--checkpoint', str(tmp_path / 'none.pt'), '--out', str(tmp_path / 'b.onnx')]) == 2
    assert 'does not exist' in capsys.readouterr().err
    assert not (tmp_path / 'b.onnx').exists()
