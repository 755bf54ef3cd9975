"""Static INT8 quantisation (hand-cpm-quantize): metadata carried over, the backends load the int8
model, and its decoded keypoints stay close to the float model's; a model that INT8 breaks fails
the agreement check; clear errors for bad input.

The model is a real cpm-lite-s (at 96 px) trained for a few seconds to overfit one drawn hand, so
its belief maps have real peaks at known positions: a random-weight network's argmax is noise,
and a comparison of its decoded keypoints would say nothing about quantisation.
"""
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper

from hand_cpm_ros.backends import ModelInfo, create_backend, normalize_crops
from hand_cpm_ros.backends.onnxruntime_backend import read_onnx_metadata
from hand_cpm_ros.codec import HeatmapCodec
from hand_cpm_ros.keypoints import FINGER_COLORS_BGR, NUM_KEYPOINTS, SKELETON, finger_of
from hand_cpm_train.checkpoint import runtime_metadata
from hand_cpm_train.export import export_onnx
from hand_cpm_train.losses import cpm_loss
from hand_cpm_train.localizer_model import build_localizer, get_localizer_config
from hand_cpm_train.models import build_model, get_config
from hand_cpm_train.quantize import (QUANTIZATION_KEY, QuantizationSettings, agreement_problem,
                                     check_images, default_out_path, keypoint_deviation, main,
                                     quantize_onnx)
from hand_cpm_ros.tensorrt_build import calibration_batches, list_calibration_images

sys.path.insert(0, str(Path(__file__).parent / 'fixtures'))
from fixed_peaks_model import TEST_INPUT_SIZE, TEST_KEYPOINTS_CROP  # noqa: E402

SIZE = 96
TRAIN_STEPS = 200
# The test pose, scaled from the fixture's 128 px crop to SIZE and spread a little.
KEYPOINTS = (TEST_KEYPOINTS_CROP - (TEST_INPUT_SIZE - 1) / 2) * 1.2 * SIZE / TEST_INPUT_SIZE \
    + (SIZE - 1) / 2


def draw_hand(keypoints: np.ndarray, seed: int, brightness: int = 0) -> np.ndarray:
    """A SIZE x SIZE BGR image: coloured bones and white joints on a noisy grey background."""
    rng = np.random.default_rng(seed)
    image = rng.integers(60, 120, (SIZE, SIZE, 3), dtype=np.uint8)
    points = np.round(keypoints).astype(int)
    for a, b in SKELETON:
        cv2.line(image, tuple(points[a]), tuple(points[b]), FINGER_COLORS_BGR[finger_of(b)], 3)
    for point in points:
        cv2.circle(image, tuple(point), 3, (255, 255, 255), -1)
    return cv2.add(image, np.full_like(image, brightness)) if brightness else image


@pytest.fixture(scope='module')
def models(tmp_path_factory):
    """(float .onnx, int8 .onnx, calibration dir, ModelInfo, training image) of the overfitted
    model; the int8 one written by the command line."""
    directory = tmp_path_factory.mktemp('quantize')
    config = get_config('cpm-lite-s', input_size=SIZE)
    codec = HeatmapCodec(input_size=SIZE, stride=8, sigma=5.0)
    info = ModelInfo.from_metadata(runtime_metadata(config, codec.to_dict()))
    image = draw_hand(KEYPOINTS, seed=0)
    x = torch.from_numpy(normalize_crops(image[None], info))
    targets, weights = (torch.from_numpy(a)[None]
                        for a in codec.encode(KEYPOINTS, np.ones(NUM_KEYPOINTS, bool)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is several times faster here
    try:
        torch.manual_seed(0)
        model = build_model(config).eval()  # eval: BatchNorm stays the identity it starts as
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        for _ in range(TRAIN_STEPS):
            optimizer.zero_grad()
            cpm_loss(model.forward_stages(x), targets, weights)['total'].backward()
            optimizer.step()
        float_path = export_onnx(model, config, codec.to_dict(), directory / 'model.onnx')
    finally:
        torch.set_num_threads(threads)
    calib_dir = directory / 'calib'
    calib_dir.mkdir()
    rng = np.random.default_rng(1)
    for index in range(16):  # the hand shifted by a few pixels, brighter or not
        shifted = KEYPOINTS + rng.uniform(-4, 4, 2)
        cv2.imwrite(str(calib_dir / f'{index:03d}.png'),
                    draw_hand(shifted, seed=index + 1, brightness=int(rng.integers(0, 40))))
    assert main(['--onnx', str(float_path), '--calib-dir', str(calib_dir), '--calib-batch', '4',
                 '--threads', '1', '--no-progress']) == 0
    return float_path, default_out_path(float_path), calib_dir, info, image


@pytest.mark.slow  # the overfitted model: about 15 s once per module
def test_int8_model_keeps_float_metadata_and_describes_its_quantization(models):
    float_path, int8_path, calib_dir, _, _ = models
    assert int8_path == float_path.with_name('model.int8.onnx')
    float_props = read_onnx_metadata(float_path)
    int8_props = read_onnx_metadata(int8_path)
    description = json.loads(int8_props.pop(QUANTIZATION_KEY))
    assert int8_props == float_props
    assert description['format'] == 'QDQ' and description['per_channel'] is True
    assert description['activation_type'] == 'uint8' and description['weight_type'] == 'int8'
    assert description['calibration_images'] == 16
    assert description['calibration_source'] == str(calib_dir.resolve())
    assert description['source_model'] == 'model.onnx'
    graph = onnx.load(str(int8_path)).graph
    ops = {node.op_type for node in graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear', 'Conv'} <= ops
    # Every convolution's weights are an int8 initializer with one scale per output channel.
    initializers = {t.name: t for t in graph.initializer}
    dequantized_from = {node.output[0]: node for node in graph.node
                        if node.op_type == 'DequantizeLinear'}
    convs = [node for node in graph.node if node.op_type == 'Conv']
    assert len(convs) > 20
    for conv in convs:
        weight = initializers[dequantized_from[conv.input[1]].input[0]]
        scales = initializers[dequantized_from[conv.input[1]].input[1]]
        assert weight.data_type == onnx.TensorProto.INT8, conv.name
        assert list(scales.dims) == [weight.dims[0]], conv.name
    assert int8_path.stat().st_size < 0.4 * float_path.stat().st_size


@pytest.mark.slow  # the overfitted model: about 15 s once per module
def test_backend_loads_int8_model_and_its_keypoints_match_the_float_model(models):
    float_path, int8_path, _, info, image = models
    float_backend = create_backend('onnxruntime', model_path=str(float_path), threads=1)
    int8_backend = create_backend('auto', model_path=str(int8_path), threads=1)
    assert int8_backend.info == float_backend.info == info
    batch = normalize_crops(np.stack([image, draw_hand(KEYPOINTS, seed=99)]), info)
    float_maps, int8_maps = float_backend.infer(batch), int8_backend.infer(batch)
    assert int8_maps.shape == float_maps.shape == (2, 22, SIZE // 8, SIZE // 8)
    codec = HeatmapCodec.from_dict(info.codec)
    float_keypoints, float_scores = codec.decode_batch(float_maps)
    int8_keypoints, int8_scores = codec.decode_batch(int8_maps)
    # The float model learned the pose (so the maps have real peaks) ...
    assert np.abs(float_keypoints - KEYPOINTS).max() < 1.5
    assert float_scores.min() > 0.5
    # ... and the int8 model finds the same keypoints.
    distances = np.linalg.norm(int8_keypoints - float_keypoints, axis=-1)
    assert distances.max() < 1.0 and distances.mean() < 0.3
    score_change = np.abs(int8_scores - float_scores)
    assert score_change.max() < 0.2 and score_change.mean() < 0.1
    np.testing.assert_allclose(keypoint_deviation(float_path, int8_path, [batch[:1], batch[1:]], threads=1),
                               distances, atol=1e-9)


def _run(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.mark.slow  # the overfitted model: about 15 s once per module
def test_errors_exit_2_with_one_line(models, tmp_path, capsys):
    float_path, int8_path, calib_dir, _, _ = models
    no_metadata = onnx.load(str(float_path))
    del no_metadata.metadata_props[:]
    foreign = tmp_path / 'foreign.onnx'
    onnx.save(no_metadata, str(foreign))
    empty = tmp_path / 'empty'
    empty.mkdir()
    before = int8_path.read_bytes()
    cases = {
        'does not exist': ['--onnx', str(tmp_path / 'missing.onnx'), '--calib-dir', str(calib_dir)],
        'metadata lacks': ['--onnx', str(foreign), '--calib-dir', str(calib_dir)],
        'holds no images': ['--onnx', str(float_path), '--calib-dir', str(empty),
                            '--out', str(tmp_path / 'a.onnx')],
        'pass --overwrite': ['--onnx', str(float_path), '--calib-dir', str(calib_dir)],
        'already quantised': ['--onnx', str(int8_path), '--calib-dir', str(calib_dir),
                              '--out', str(tmp_path / 'b.onnx')],
        'must differ': ['--onnx', str(float_path), '--calib-dir', str(calib_dir),
                        '--out', str(float_path), '--overwrite'],
        'fewer than one batch': ['--onnx', str(float_path), '--calib-dir', str(calib_dir),
                                 '--out', str(tmp_path / 'c.onnx'), '--calib-count', '3',
                                 '--calib-batch', '4', '--no-progress'],
    }
    for expected, argv in cases.items():
        code, err = _run(argv, capsys)
        assert code == 2, expected
        assert expected in err and err.startswith('hand-cpm-quantize: error:'), err
        assert '\n' not in err, err
    assert int8_path.read_bytes() == before
    assert not any(tmp_path.glob('[abc].onnx'))


def with_fragile_output(float_path: Path, out_path: Path) -> Path:
    """The float model with its maps shifted up by 1000 and back: the same model in float32, but
    INT8 quantises the shifted tensor with a step of about 4 and loses the maps (as it loses
    activations of a model whose ranges are wide)."""
    model = onnx.load(str(float_path))
    graph = model.graph
    name = graph.output[0].name
    for node in graph.node:
        node.output[:] = [f'{name}_raw' if output == name else output for output in node.output]
    graph.initializer.extend([numpy_helper.from_array(np.array(value, np.float32), key)
                              for key, value in (('shift_up', 1000.0), ('shift_down', -1000.0))])
    graph.node.extend([helper.make_node('Add', [f'{name}_raw', 'shift_up'], [f'{name}_shifted']),
                       helper.make_node('Add', [f'{name}_shifted', 'shift_down'], [name])])
    onnx.checker.check_model(model)
    onnx.save(model, str(out_path))
    return out_path


@pytest.mark.slow  # the overfitted model: about 15 s once per module
def test_a_model_that_lost_its_keypoints_is_kept_but_fails_with_exit_code_1(models, tmp_path,
                                                                            capsys):
    float_path, _, calib_dir, info, image = models
    fragile = with_fragile_output(float_path, tmp_path / 'fragile.onnx')
    batch = normalize_crops(image[None], info)
    np.testing.assert_allclose(create_backend('onnxruntime', model_path=str(fragile)).infer(batch),
                               create_backend('onnxruntime', model_path=str(float_path)).infer(batch),
                               atol=1e-3)
    out = tmp_path / 'fragile.int8.onnx'
    code = main(['--onnx', str(fragile), '--calib-dir', str(calib_dir), '--calib-count', '8',
                 '--calib-batch', '4', '--threads', '1', '--out', str(out), '--no-progress'])
    captured = capsys.readouterr()
    assert code == 1
    assert 'int8 vs float keypoints on 8 images not calibrated on: median' in captured.out
    assert captured.err.startswith(f'hand-cpm-quantize: {out} failed the check: the int8 '
                                   'keypoints are a median ')
    assert f'of the {SIZE} px input; the limit is 5%' in captured.err
    assert out.is_file() and QUANTIZATION_KEY in read_onnx_metadata(out)


def test_agreement_limit_is_five_percent_of_the_input_side():
    assert agreement_problem(np.array([[1.0, 9.6, 50.0]]), 192) is None
    problem = agreement_problem(np.array([[1.0, 9.7, 50.0]]), 192)
    assert problem.startswith('the int8 keypoints are a median 9.7 px from the float model\'s '
                              '(5.1% of the 192 px input')


def _input_range(int8_path: Path) -> float:
    """Width of the quantised input's range: 255 uint8 steps of its QuantizeLinear scale."""
    graph = onnx.load(str(int8_path)).graph
    node = next(node for node in graph.node
                if node.op_type == 'QuantizeLinear' and node.input[0] == graph.input[0].name)
    scale = next(t for t in graph.initializer if t.name == node.input[1])
    return 255 * float(numpy_helper.to_array(scale))


@pytest.mark.slow  # the overfitted model: about 15 s once per module
def test_default_calibration_averages_batch_ranges_so_one_outlier_batch_does_not_set_the_range(
        models, tmp_path):
    float_path, _, calib_dir, info, _ = models
    batches = list(calibration_batches(list_calibration_images(calib_dir), info, 4))
    batches[-1] = batches[-1] * 20  # one batch of rare, large values
    widths = {}
    for method in ('minmax', 'minmax-mean'):
        out = quantize_onnx(float_path, tmp_path / f'{method}.onnx', batches,
                            QuantizationSettings(calibrate_method=method))
        description = json.loads(read_onnx_metadata(out)[QUANTIZATION_KEY])
        assert description['calibrate_method'] == method
        widths[method] = _input_range(out)
    # minmax: the extremes over all images; minmax-mean: the mean of each batch's min and max.
    all_values = np.concatenate(batches)
    assert widths['minmax'] == pytest.approx(all_values.max() - all_values.min(), rel=0.01)
    mean_width = np.mean([b.max() for b in batches]) - np.mean([b.min() for b in batches])
    assert widths['minmax-mean'] == pytest.approx(mean_width, rel=0.01)
    assert widths['minmax-mean'] < 0.5 * widths['minmax']


def test_check_images_are_those_after_the_calibration_ones_when_there_are_any(tmp_path):
    for index in range(40):
        cv2.imwrite(str(tmp_path / f'{index:03d}.png'), np.zeros((4, 4, 3), np.uint8))
    names = lambda paths: [path.name for path in paths]  # noqa: E731
    images, held_out = check_images(tmp_path, 30)
    assert held_out and names(images) == [f'{index:03d}.png' for index in range(30, 40)]
    images, held_out = check_images(tmp_path, 1)
    assert held_out and names(images) == [f'{index:03d}.png' for index in range(1, 33)]
    images, held_out = check_images(tmp_path, 200)
    assert not held_out and names(images) == [f'{index:03d}.png' for index in range(32)]


def test_settings_reject_unknown_types():
    with pytest.raises(ValueError, match='activation_type'):
        QuantizationSettings(activation_type='int4')
    with pytest.raises(ValueError, match='calibrate_method'):
        QuantizationSettings(calibrate_method='mse')


def test_a_localizer_quantizes_and_its_maps_stay_close(tmp_path):
    """The real loc-lite graph (random weights, small input): its Resize layers once stopped
    ONNX Runtime's symbolic shape inference, so quantising the shipped localiser failed."""
    config = get_localizer_config('loc-lite', input_width=128, input_height=96)
    torch.manual_seed(0)
    float_path = export_onnx(build_localizer(config).eval(), config, config.codec().to_dict(),
                             tmp_path / 'localizer.onnx')
    rng = np.random.default_rng(0)
    batches = [rng.normal(0, 1, (4, 3, 96, 128)).astype(np.float32) for _ in range(4)]
    int8_path = quantize_onnx(float_path, tmp_path / 'localizer.int8.onnx', batches)
    assert json.loads(read_onnx_metadata(int8_path)[QUANTIZATION_KEY])['calibration_images'] == 16
    float_backend = create_backend('onnxruntime', model_path=str(float_path), threads=1)
    int8_backend = create_backend('onnxruntime', model_path=str(int8_path), threads=1)
    float_maps, int8_maps = float_backend.infer(batches[0]), int8_backend.infer(batches[0])
    assert int8_maps.shape == float_maps.shape == (4, 6, 24, 32)
    assert np.abs(int8_maps - float_maps).mean() < 0.1 * np.abs(float_maps).mean()
