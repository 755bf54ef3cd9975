"""hand-cpm-benchmark's arguments and the shape of its results (the figures themselves are for the
README, measured by hand: a timed test on a shared machine would be noise)."""
import json

from hand_cpm_train import benchmark


def test_localizer_is_measured_at_each_frame_size_asked(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    assert benchmark.main(['--variants', '--skip-train', '--runs', '1', '--warmup', '0',
                           '--threads', '1', '--localizer-frame-sizes', '128x96', '192x160',
                           '--json', str(out)]) == 0
    result = json.loads(out.read_text())
    assert result['results'] == []
    # Every localiser variant by default, each at every size asked.
    assert [(entry['variant'], entry['input']) for entry in result['localizers']] == \
        [('loc-lite', '128x96'), ('loc-lite', '192x160'), ('loc-deep', '128x96'), ('loc-deep', '192x160')]
    for entry in result['localizers']:
        assert [row['what'] for row in entry['latency']] == [
            'detect 640x480 frame', 'detect, flip averaging', 'network only']
        assert all(row['runs'] == 1 and row['median_ms'] > 0 for row in entry['latency'])
    table = capsys.readouterr().out
    assert '| loc-lite | 192x160 | detect 640x480 frame |' in table
    assert '| loc-deep | 128x96 | network only |' in table

    assert benchmark.main(['--variants', '--skip-train', '--localizer-frame-sizes', '100x90']) == 2
    assert 'multiples of 32' in capsys.readouterr().err
    assert benchmark.main(['--variants', '--skip-train', '--json', str(out)]) == 2
    assert 'exists' in capsys.readouterr().err


def test_keypoint_variant_is_measured_with_each_number_of_stages_asked(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    assert benchmark.main(['--variants', 'cpm-lite-s', '--stages', '3', '5', '--backends',
                           'onnxruntime', '--batches', '1', '--skip-train', '--localizers',
                           '--runs', '1', '--warmup', '0', '--threads', '1', '--json', str(out)]) == 0
    results = json.loads(out.read_text())['results']
    assert [(entry['variant'], entry['stages']) for entry in results] == \
        [('cpm-lite-s', 3), ('cpm-lite-s, 5 stages', 5)]
    assert results[1]['gflops'] > results[0]['gflops'] * 1.15   # two stages of 0.10 GFLOPs each
    assert '| cpm-lite-s, 5 stages |' in capsys.readouterr().out
    assert benchmark.main(['--variants', 'cpm-lite-s', '--stages', '0', '--skip-train']) == 2
    assert '--stages must be >= 1' in capsys.readouterr().err
