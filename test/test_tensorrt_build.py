"""TensorRT engine building: the parts that need neither TensorRT nor a GPU (profile shapes,
argument checks, calibration batches, sidecar and compatibility), the command's clear failure
where TensorRT is missing, and the real build where TensorRT and a GPU exist."""
import importlib.util

import cv2
import numpy as np
import pytest

from hand_cpm_ros.backends import BackendError, ModelInfo, normalize_crops
from hand_cpm_ros.codec import HeatmapCodec
from hand_cpm_ros.tensorrt_build import (calibration_batches, check_args,
                                         check_engine_compatibility, cuda_device_count,
                                         get_args_parser, list_calibration_images, main,
                                         precision_name, profile_shapes, read_sidecar,
                                         rebuild_command, sidecar_path, write_sidecar)
from hand_cpm_train.checkpoint import runtime_metadata
from hand_cpm_train.models import get_config

SIZE = 32


@pytest.fixture
def info():
    config = get_config('cpm-lite-s', input_size=SIZE)
    return ModelInfo.from_metadata(runtime_metadata(config, HeatmapCodec(input_size=SIZE).to_dict()))


def sidecar(**changes):
    values = {
        'sidecar_version': 1, 'tensorrt_version': '10.3.0', 'gpu_name': 'Orin',
        'compute_capability': '8.7', 'precision': 'fp16', 'input_name': 'image',
        'output_name': 'belief_maps', 'min_shape': [1, 3, 256, 256],
        'opt_shape': [2, 3, 256, 256], 'max_shape': [4, 3, 256, 256],
        'onnx_path': '/models/cpm lite.onnx', 'onnx_sha256': 'ab' * 32, 'calib_dir': None,
        'metadata': {'variant': 'cpm-lite'}}
    values.update(changes)
    return values


def test_profile_covers_batch_one_to_max_tuned_for_two():
    assert profile_shapes(256, 4) == {'min': (1, 3, 256, 256), 'opt': (2, 3, 256, 256),
                                      'max': (4, 3, 256, 256)}
    assert profile_shapes(192, 1)['opt'] == (1, 3, 192, 192)
    with pytest.raises(ValueError, match='>= 1'):
        profile_shapes(256, 0)
    assert precision_name(False, False) == 'fp32'
    assert precision_name(True, True) == 'int8+fp16'


def write_images(directory, colours):
    directory.mkdir(exist_ok=True)
    for index, colour in enumerate(colours):
        image = np.full((20 + 7 * index, 50, 3), colour, np.uint8)  # sizes differ from SIZE
        cv2.imwrite(str(directory / f'{index:02d}.png'), image)
    (directory / 'notes.txt').write_text('not an image')


def test_calibration_batches_resize_normalise_and_drop_the_partial_batch(tmp_path, info):
    colours = [(10 * i, 255 - 10 * i, 7 * i) for i in range(5)]
    write_images(tmp_path / 'calib', colours)
    images = list_calibration_images(tmp_path / 'calib')
    assert [p.name for p in images] == [f'{i:02d}.png' for i in range(5)]
    batches = list(calibration_batches(images, info, 2))
    assert len(batches) == 2  # 5 images, batch 2: the fifth is dropped
    for batch_index, batch in enumerate(batches):
        assert batch.shape == (2, 3, SIZE, SIZE) and batch.dtype == np.float32
        for row in range(2):
            colour = colours[2 * batch_index + row]
            expected = normalize_crops(np.full((1, SIZE, SIZE, 3), colour, np.uint8), info)[0]
            np.testing.assert_allclose(batch[row], expected, atol=1e-6)
    with pytest.raises(ValueError, match='fewer than one batch of 8'):
        next(calibration_batches(images, info, 8))


def test_calibration_directory_errors(tmp_path, info):
    with pytest.raises(ValueError, match='does not exist'):
        list_calibration_images(tmp_path / 'none')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='holds no images'):
        list_calibration_images(tmp_path / 'empty')
    (tmp_path / 'bad').mkdir()
    (tmp_path / 'bad' / 'broken.png').write_bytes(b'not a png')
    with pytest.raises(ValueError, match='cannot read calibration image .*broken.png'):
        next(calibration_batches(list_calibration_images(tmp_path / 'bad'), info, 1))


def test_sidecar_round_trip_and_errors(tmp_path):
    engine = tmp_path / 'model.engine'
    path = write_sidecar(engine, sidecar())
    assert path == sidecar_path(engine) == tmp_path / 'model.engine.json'
    assert read_sidecar(engine) == sidecar()
    with pytest.raises(ValueError, match='lacks'):
        write_sidecar(engine, {'precision': 'fp16'})
    with pytest.raises(BackendError, match='is missing'):
        read_sidecar(tmp_path / 'other.engine')
    path.write_text('{"precision": "fp16"}')
    with pytest.raises(BackendError, match='lacks .*tensorrt_version'):
        read_sidecar(engine)
    path.write_text('{not json')
    with pytest.raises(BackendError, match='unreadable'):
        read_sidecar(engine)


def test_compatibility_accepts_same_build_and_rejects_others_with_rebuild_command():
    check_engine_compatibility(sidecar(), '10.3.0', 'Orin', '8.7', 'm.engine')
    with pytest.raises(BackendError) as error:
        check_engine_compatibility(sidecar(), '10.7.0', 'Orin', '8.7', 'm.engine')
    message = str(error.value)
    assert 'TensorRT 10.3.0 (this machine has 10.7.0)' in message
    assert ("hand-cpm-build-engine --onnx '/models/cpm lite.onnx' --out m.engine --fp16 "
            "--max-batch 4 --overwrite") in message
    with pytest.raises(BackendError, match="GPU 'Orin' sm 8.7 .*'NVIDIA A100' sm 8.0"):
        check_engine_compatibility(sidecar(), '10.3.0', 'NVIDIA A100', '8.0', 'm.engine')
    command = rebuild_command(sidecar(precision='int8+fp16', calib_dir='/data/crops'), 'x.engine')
    assert '--fp16 --int8 --calib-dir /data/crops --max-batch 4' in command


def parse(argv):
    return get_args_parser().parse_args(argv)


def test_argument_checks(tmp_path):
    onnx_path = tmp_path / 'model.onnx'
    onnx_path.write_bytes(b'onnx')
    out = str(tmp_path / 'model.engine')
    check_args(parse(['--onnx', str(onnx_path), '--out', out, '--fp16']))
    cases = [
        (['--onnx', str(tmp_path / 'none.onnx'), '--out', out], 'does not exist'),
        (['--onnx', str(onnx_path), '--out', out, '--max-batch', '0'], '--max-batch must be >= 1'),
        (['--onnx', str(onnx_path), '--out', out, '--int8'], '--int8 needs --calib-dir'),
        (['--onnx', str(onnx_path), '--out', out, '--calib-dir', str(tmp_path)],
         'only used with --int8'),
        (['--onnx', str(onnx_path), '--out', out, '--int8', '--calib-dir', str(tmp_path)],
         'holds no images'),
    ]
    for argv, message in cases:
        with pytest.raises(ValueError, match=message):
            check_args(parse(argv))
    write_images(tmp_path / 'calib', [(1, 2, 3)] * 3)
    with pytest.raises(ValueError, match='3 images, fewer than one --calib-batch of 8'):
        check_args(parse(['--onnx', str(onnx_path), '--out', out, '--int8',
                          '--calib-dir', str(tmp_path / 'calib')]))
    check_args(parse(['--onnx', str(onnx_path), '--out', out, '--int8', '--calib-batch', '3',
                      '--calib-dir', str(tmp_path / 'calib')]))
    (tmp_path / 'model.engine').write_bytes(b'old')
    with pytest.raises(ValueError, match='exists; pass --overwrite'):
        check_args(parse(['--onnx', str(onnx_path), '--out', out]))
    check_args(parse(['--onnx', str(onnx_path), '--out', out, '--overwrite']))


def test_command_fails_with_one_line_where_it_cannot_build(tmp_path, capsys):
    assert main(['--onnx', str(tmp_path / 'none.onnx'), '--out', str(tmp_path / 'm.engine')]) == 2
    err = capsys.readouterr().err
    assert err.startswith('hand-cpm-build-engine: --onnx') and err.count('\n') == 1
    assert not (tmp_path / 'm.engine').exists()


@pytest.fixture(scope='module')
def exported_onnx(tmp_path_factory):
    from hand_cpm_train.export import export_onnx
    from hand_cpm_train.models import build_model
    config = get_config('cpm-lite-s', input_size=SIZE)
    path = tmp_path_factory.mktemp('onnx') / 'model.onnx'
    return export_onnx(build_model(config).eval(), config, HeatmapCodec(input_size=SIZE).to_dict(),
                       path)


def test_command_without_tensorrt_says_how_to_get_it(exported_onnx, tmp_path, capsys):
    if importlib.util.find_spec('tensorrt') is not None:
        pytest.skip('TensorRT is installed here')
    assert main(['--onnx', str(exported_onnx), '--out', str(tmp_path / 'm.engine')]) == 2
    assert 'TensorRT is not installed' in capsys.readouterr().err
    assert not (tmp_path / 'm.engine').exists()


def test_real_engine_build_and_inference(exported_onnx, tmp_path):
    pytest.importorskip('tensorrt', reason='TensorRT cannot be installed on this machine')
    if cuda_device_count() < 1:
        pytest.skip('no CUDA GPU here: TensorRT engines build only on a GPU')
    from hand_cpm_ros.backends import create_backend
    engine = tmp_path / 'model.engine'
    assert main(['--onnx', str(exported_onnx), '--out', str(engine), '--max-batch', '3']) == 0
    assert read_sidecar(engine)['max_shape'] == [3, 3, SIZE, SIZE]
    reference = create_backend('onnxruntime', model_path=str(exported_onnx))
    backend = create_backend('tensorrt', engine_path=str(engine))
    x = np.random.default_rng(0).standard_normal((5, 3, SIZE, SIZE), dtype=np.float32)
    assert np.abs(backend.infer(x) - reference.infer(x)).max() < 1e-2
