"""CPM variants: exact OpenPose structure and size, costs, output shapes, stage outputs, weight
mapping, BatchNorm folding, the training loss and the hand-cpm-models command."""
import json

import numpy as np
import pytest
import torch

from hand_cpm_train.losses import cpm_loss
from hand_cpm_train.models import (VARIANTS, ModelConfig, build_model, count_gflops,
                                   count_parameters, fuse_batchnorm, get_config,
                                   load_openpose_weights, main)


def meta_model(config):
    with torch.device('meta'):
        return build_model(config)


def test_openpose_network_has_exactly_openpose_parameter_count():
    assert count_parameters(meta_model(get_config('cpm-vgg19'))) == 36_832_324


@pytest.mark.parametrize('size, gflops', [(368, 206.0), (256, 100.0), (184, 52.0)])
def test_openpose_network_gflops_match_measured_costs(size, gflops):
    assert count_gflops(get_config('cpm-vgg19'), size) == pytest.approx(gflops, rel=0.01)


def test_gflops_of_a_model_equal_those_of_its_config():
    config = get_config('cpm-lite-s', input_size=64)
    assert count_gflops(build_model(config)) == pytest.approx(count_gflops(config))


def test_light_variants_fit_the_real_time_budget():
    assert count_gflops(get_config('cpm-lite')) <= 2.0
    assert 0.6 <= count_gflops(get_config('cpm-lite-s')) <= 1.2
    assert get_config('cpm-lite').stages >= 2 and get_config('cpm-lite-s').stages >= 2


def test_openpose_layer_names_are_caffe_names():
    keys = set(meta_model(get_config('cpm-vgg19')).state_dict())
    for name in ('conv1_1', 'conv4_4', 'conv5_3_CPM', 'conv6_1_CPM', 'conv6_2_CPM',
                 'Mconv1_stage2', 'Mconv7_stage2', 'Mconv1_stage6', 'Mconv7_stage6'):
        assert {f'{name}.weight', f'{name}.bias'} <= keys
    assert not any('stage7' in key for key in keys)
    assert meta_model(get_config('cpm-vgg19')).Mconv1_stage2.in_channels == 150


@pytest.mark.parametrize('name, size', [('cpm-vgg19', 64), ('cpm-lite', 256), ('cpm-lite-s', 192)])
def test_train_mode_returns_every_stage_and_eval_the_last(name, size):
    config = get_config(name, input_size=size)
    torch.manual_seed(0)
    model = build_model(config)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        stages = model(x)
        model.eval()
        last = model(x)
        listed = model.forward_stages(x)
    assert len(stages) == config.stages and len(listed) == config.stages
    for maps in stages:
        assert maps.shape == (2, 22, size // 8, size // 8)
    assert isinstance(last, torch.Tensor) and last.shape == (2, 22, size // 8, size // 8)
    torch.testing.assert_close(last, listed[-1])
    # Stages differ: each refines (is a different function of) the previous maps.
    assert not torch.allclose(listed[0], listed[-1])


def test_openpose_weights_round_trip_by_name():
    config = get_config('cpm-vgg19', input_size=32, stages=2)
    torch.manual_seed(1)
    source = build_model(config)
    arrays = {key: value.numpy().copy() for key, value in source.state_dict().items()}
    target = build_model(config)
    load_openpose_weights(target, arrays)
    np.testing.assert_array_equal(target.conv5_3_CPM.weight.detach().numpy(),
                                  arrays['conv5_3_CPM.weight'])
    np.testing.assert_array_equal(target.Mconv7_stage2.bias.detach().numpy(),
                                  arrays['Mconv7_stage2.bias'])
    with pytest.raises(ValueError, match=r'conv6_2_CPM\.weight.*shape'):
        load_openpose_weights(target, {**arrays, 'conv6_2_CPM.weight': np.zeros((21, 512, 1, 1))})
    with pytest.raises(ValueError, match='missing.*conv1_1.bias'):
        load_openpose_weights(target, {k: v for k, v in arrays.items() if k != 'conv1_1.bias'})


def test_fused_batchnorm_model_computes_the_same_maps():
    config = get_config('cpm-lite-s', input_size=64)
    torch.manual_seed(2)
    model = build_model(config).eval()
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    fused = fuse_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=1e-4)


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match='cpm-vgg19.*cpm-lite'):
        get_config('cpm-resnet')
    with pytest.raises(ValueError, match='multiple of 8'):
        get_config('cpm-lite', input_size=100)
    with pytest.raises(ValueError, match='unknown model config fields'):
        get_config('cpm-lite', depth=3)
    config = get_config('cpm-lite', input_size=128)
    assert ModelConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.output_size == 16


def test_models_command_lists_every_variant_as_json(capsys):
    assert main(['--json']) == 0
    rows = {row['name']: row for row in json.loads(capsys.readouterr().out)}
    assert set(rows) == set(VARIANTS)
    assert rows['cpm-vgg19']['params'] == 36_832_324
    assert rows['cpm-vgg19']['output_shape'] == [22, 46, 46]
    assert rows['cpm-vgg19']['gflops'] == pytest.approx(206.0, rel=0.01)
    assert set(rows['cpm-lite']) == {'name', 'params', 'gflops', 'input_size', 'stages',
                                     'output_shape'}
    assert main([]) == 0
    assert '| cpm-lite |' in capsys.readouterr().out


def test_cpm_loss_sums_weighted_squared_error_per_stage():
    targets = torch.zeros(2, 2, 2, 2)
    stage1 = torch.ones(2, 2, 2, 2)           # error 1 in each of 8 cells per sample
    stage2 = torch.zeros(2, 2, 2, 2)
    stage2[1, 0, 0, 0] = 3.0                  # one cell of sample 1, map 0: error 9
    weights = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # sample 0's map 1 is invisible
    losses = cpm_loss([stage1, stage2], targets, weights)
    assert set(losses) == {'stage1', 'stage2', 'total'}
    assert losses['stage1'].item() == pytest.approx((4 + 8) / 2)
    assert losses['stage2'].item() == pytest.approx(9 / 2)
    assert losses['total'].item() == pytest.approx(6 + 4.5)
    zeroed = cpm_loss([stage2], targets, torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    assert zeroed['stage1'].item() == 0.0


def test_cpm_loss_foreground_weight_emphasises_keypoint_cells_not_the_background():
    targets = torch.zeros(1, 3, 1, 2)
    targets[0, 0, 0, 0] = 0.5                 # keypoint map 0: a Gaussian's cell and an empty cell
    targets[0, 2] = 1.0                       # the background map (last) is 1 everywhere here
    maps = [torch.zeros(1, 3, 1, 2)]          # error 0.25 at the keypoint cell, 1 per bg cell
    plain = cpm_loss(maps, targets, torch.ones(1, 3))
    weighted = cpm_loss(maps, targets, torch.ones(1, 3), foreground_weight=10.0)
    assert plain['stage1'].item() == pytest.approx(0.25 + 2)
    assert weighted['stage1'].item() == pytest.approx(0.25 * (1 + 10 * 0.5) + 2)
    with pytest.raises(ValueError, match='foreground_weight'):
        cpm_loss(maps, targets, torch.ones(1, 3), foreground_weight=-1.0)


def test_cpm_loss_false_peak_weight_emphasises_predictions_above_the_target():
    targets = torch.zeros(1, 3, 1, 3)
    targets[0, 0, 0, 0] = 0.5                 # keypoint map 0: the true peak's cell ...
    targets[0, 2] = 1.0                       # background map
    maps = torch.zeros(1, 3, 1, 3)
    maps[0, 0, 0, 1] = 0.8                    # ... a false peak in the next cell: excess 0.8
    maps[0, 0, 0, 2] = 0.0                    # an empty cell predicted empty: no excess
    maps[0, 2] = 1.6                          # background over its target: not emphasised
    maps.requires_grad_(True)
    plain = cpm_loss([maps], targets, torch.ones(1, 3), foreground_weight=10.0)
    weighted = cpm_loss([maps], targets, torch.ones(1, 3), foreground_weight=10.0,
                        false_peak_weight=10.0)
    missed_peak = 0.25 * (1 + 10 * 0.5)       # 0.5 below target, foreground-weighted
    background = 3 * 0.36
    assert plain['stage1'].item() == pytest.approx(missed_peak + 0.64 + background)
    assert weighted['stage1'].item() == pytest.approx(missed_peak + 0.64 * (1 + 10 * 0.8) + background)
    weighted['total'].backward()              # the weight is detached: gradient = weight x 2 x error
    assert maps.grad[0, 0, 0, 1].item() == pytest.approx(2 * 0.8 * (1 + 10 * 0.8))
    with pytest.raises(ValueError, match='false_peak_weight'):
        cpm_loss([maps], targets, torch.ones(1, 3), false_peak_weight=-1.0)


def test_cpm_loss_backpropagates_into_every_stage_and_rejects_bad_shapes():
    maps = [torch.zeros(1, 22, 4, 4, requires_grad=True) for _ in range(3)]
    targets = torch.rand(1, 22, 4, 4)
    cpm_loss(maps, targets, torch.ones(1, 22))['total'].backward()
    assert all(m.grad is not None and m.grad.abs().sum() > 0 for m in maps)
    with pytest.raises(ValueError, match='weights'):
        cpm_loss(maps, targets, torch.ones(22))
    with pytest.raises(ValueError, match='stage 1'):
        cpm_loss([torch.zeros(1, 22, 5, 5)], targets, torch.ones(1, 22))
