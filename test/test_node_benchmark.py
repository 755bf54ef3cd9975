"""hand-cpm-node-benchmark: its pure parts (VmRSS parsing, the slope fit, the target checks, the
table), the RSS sampler on a real process, argument errors, and one short real run: the real
hand_cpm_node over real DDS with the fixed-peaks TEST MODEL and fixed-boxes TEST LOCALISER (not
hand detectors: they only prove the plumbing), a 1-hand stream and a short soak. No timing target
is asserted: the figures depend on the machine's load."""
import contextlib
import io
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hand_cpm_ros import node_benchmark as bench

STATUS_TEXT = """Name:\tpython3
State:\tS (sleeping)
Pid:\t4242
VmPeak:\t  812344 kB
VmSize:\t  812340 kB
VmHWM:\t  130000 kB
VmRSS:\t  123456 kB
RssAnon:\t   90000 kB
Threads:\t12
"""


def test_vm_rss_is_read_in_mib():
    assert bench.parse_vm_rss(STATUS_TEXT) == pytest.approx(123456 / 1024)
    own = bench.parse_vm_rss(Path('/proc/self/status').read_text())
    assert 1 < own < 100_000  # this Python process: more than 1 MiB, less than 100 GiB
    zombie = STATUS_TEXT.replace('VmRSS:\t  123456 kB\n', '')
    with pytest.raises(ValueError, match='no VmRSS line'):
        bench.parse_vm_rss(zombie)


def test_slope_is_fitted_over_the_second_half():
    # start-up growth in the first half (100 -> 300 MiB) is ignored; 2 MiB/min after it
    samples = [(0.0, 100.0), (60.0, 300.0)] + [(t, 300.0 + 2.0 * (t - 60.0) / 60.0)
                                               for t in range(60, 601, 10)]
    assert bench.rss_slope(samples) == pytest.approx(2.0)
    flat = [(t, 250.0 + (0.5 if t % 20 else -0.5)) for t in range(0, 601, 10)]  # noise only
    assert abs(bench.rss_slope(flat)) < 0.01
    assert bench.rss_slope([(0.0, 100.0), (3.0, 101.0)]) is None  # one sample in the second half
    assert bench.rss_slope([]) is None


def test_sampler_reads_a_live_process_and_nothing_once_it_exited():
    process = subprocess.Popen([sys.executable, '-c',
                                'import time; data = bytearray(64 << 20); time.sleep(30)'])
    try:
        deadline = time.monotonic() + 10
        while bench.parse_vm_rss(Path(f'/proc/{process.pid}/status').read_text()) < 64:
            assert time.monotonic() < deadline, 'the child never allocated its 64 MiB'
            time.sleep(0.05)
        sampler = bench.RssSampler(process.pid, period=0.1)
        sampler.start()
        time.sleep(0.35)
        sampler.stop()
    finally:
        process.kill()
        process.wait()
    times = [t for t, _ in sampler.samples]
    assert len(times) >= 4 and times == sorted(times) and times[0] < 0.05  # start, 3 periods, stop
    summary = sampler.summary()
    assert 64 < summary['first_mib'] <= summary['max_mib'] < 1024
    assert summary['last_mib'] == sampler.samples[-1][1]
    gone = bench.RssSampler(process.pid, period=0.1)
    gone.start()
    gone.stop()
    assert gone.samples == [] and gone.summary()['first_mib'] is None


def test_machine_names_its_cpu():
    cpuinfo = ('processor\t: 0\nvendor_id\t: GenuineIntel\n'
               'model name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n')
    assert bench.cpu_model(cpuinfo) == 'Intel(R) Xeon(R) CPU @ 2.20GHz'
    assert bench.cpu_model('processor\t: 0\nBogoMIPS\t: 50.00\n') is None
    machine = bench.machine_info()
    assert machine['name'] == platform.node() and machine['cores'] == os.cpu_count()


def timed_run(hands=1, fps_requested=30.0, processed_fps=30.0, p95=40.0, exit_code=0,
              alive=True):
    return {'run': f'{hands} hand', 'hands': hands, 'soak': False,
            'fps_requested': fps_requested, 'processed_fps': processed_fps,
            'latency_ms': None if p95 is None else {'median': p95 / 2, 'p95': p95, 'max': p95},
            'node_exit_code': exit_code, 'node_alive_at_end': alive}


def verdicts(run):
    return {check['target']: check['pass'] for check in bench.run_checks(run)}


def test_targets_of_issue_8():
    clean = 'alive at the end, exit code 0 on SIGINT'
    assert verdicts(timed_run()) == {'>= 30 frames/s': True, 'p95 < 50 ms': True, clean: True}
    assert verdicts(timed_run(processed_fps=29.9, p95=50.0)) == {
        '>= 30 frames/s': False, 'p95 < 50 ms': False, clean: True}
    assert verdicts(timed_run(p95=None))['p95 < 50 ms'] is False  # nothing processed
    # at 15 Hz the node cannot process 30 frames/s: not applicable, not failed
    assert verdicts(timed_run(fps_requested=15.0, processed_fps=15.0))['>= 30 frames/s'] is None
    # two hands: 20 frames/s, no latency target
    assert verdicts(timed_run(hands=2, processed_fps=21.0, p95=90.0)) == {
        '>= 20 frames/s': True, clean: True}
    assert verdicts(timed_run(exit_code=-9))[clean] is False
    assert verdicts(timed_run(alive=False))[clean] is False
    soak = {'soak': True, 'rss': {'slope_mib_per_min': 0.3}, 'node_exit_code': 0,
            'node_alive_at_end': True}
    assert verdicts(soak) == {'RSS slope <= 1 MiB/min': True, clean: True}
    assert verdicts({**soak, 'rss': {'slope_mib_per_min': 1.5}})['RSS slope <= 1 MiB/min'] is False
    assert verdicts({**soak, 'rss': {'slope_mib_per_min': None}})['RSS slope <= 1 MiB/min'] is None


def test_table_has_one_row_per_run_with_its_figures_and_verdicts():
    run = {**timed_run(processed_fps=28.5, p95=61.25), 'run': '1 hand', 'frames_published': 300,
           'publish_rate_hz': 29.99, 'frames_received_by_node': 299, 'frames_processed': 285,
           'frames_dropped': 15, 'hands_per_frame': 0.97, 'truth_hands_per_frame': 1.0}
    run['checks'] = bench.run_checks(run)
    soak = {**run, 'run': 'soak 10 min, 2 hands', 'soak': True,
            'rss': {'first_mib': 210.04, 'last_mib': 214.5, 'max_mib': 215.0,
                    'slope_mib_per_min': 0.123}}
    soak['checks'] = bench.run_checks(soak)
    lines = bench.markdown_table([run, soak]).splitlines()
    assert len(lines) == 4 and lines[0].startswith('| run |') and lines[1].startswith('| --- |')
    cells = [cell.strip() for cell in lines[2].strip('|').split('|')]
    assert cells == ['1 hand', '300 (30.0)', '299', '285', '28.5', '15', '30.6 / 61.2',
                     '0.97 (1.00)', '-',
                     '>= 30 frames/s: FAIL; p95 < 50 ms: FAIL; '
                     'alive at the end, exit code 0 on SIGINT: pass']
    cells = [cell.strip() for cell in lines[3].strip('|').split('|')]
    assert cells[0] == 'soak 10 min, 2 hands'
    assert cells[8] == '210.0 / 214.5 / 215.0, 0.12'
    assert cells[9] == 'RSS slope <= 1 MiB/min: pass; alive at the end, exit code 0 on SIGINT: pass'


def run_error(capsys, *argv):
    code = bench.main(list(argv))
    return code, capsys.readouterr().err.strip().splitlines()


def test_bad_arguments_are_one_line_and_exit_code_2(capsys, tmp_path):
    model = tmp_path / 'model.onnx'
    model.write_text('never loaded: the arguments fail first')
    code, lines = run_error(capsys, '--model', str(model), '--hands', '1', '1')
    assert code == 2 and lines == [f'{bench.PROG}: error: --hands lists a count twice: 1 1']
    code, lines = run_error(capsys, '--model', str(model), '--seconds', '61', '--fps', '30')
    assert code == 2 and lines == [f'{bench.PROG}: error: --seconds 61 at --fps 30 is 1830 '
                                   'frames; it must be 1..1800 (all are held in memory)']
    code, lines = run_error(capsys, '--model', str(tmp_path / 'none.onnx'))
    assert code == 2 and lines == [f'{bench.PROG}: error: --model {tmp_path / "none.onnx"} does '
                                   'not exist or is not a file']
    missing = tmp_path / 'no' / 'b.json'
    code, lines = run_error(capsys, '--model', str(model), '--json', str(missing))
    assert code == 2 and lines == [f'{bench.PROG}: error: --json {missing}: '
                                   f'directory {tmp_path / "no"} does not exist']
    for argv, message in ((['--hands', '3'], "invalid choice: 3"),
                          (['--soak-minutes', '-1'], '--soak-minutes must be in [0, 1440]'),
                          (['--seconds', 'nan'], '--seconds must be a positive number'),
                          (['--fps', '0'], '--fps must be in (0, 1000]'),
                          (['--param', 'localizer_interval=3'],
                           "'localizer_interval=3' is not NAME:=VALUE"),
                          (['--param', 'max_hands:='], "'max_hands:=' is not NAME:=VALUE")):
        with pytest.raises(SystemExit) as exit_info:
            bench.main(argv)
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_existing_outputs_are_not_overwritten(capsys, tmp_path):
    model = tmp_path / 'model.onnx'
    model.write_text('never loaded: the outputs are refused first')
    result = tmp_path / 'bench.json'
    result.write_text('{"earlier": true}')
    code, lines = run_error(capsys, '--model', str(model), '--json', str(result))
    assert code == 2 and lines == [f'{bench.PROG}: error: --json {result} exists; pass '
                                   '--overwrite to replace it']
    assert result.read_text() == '{"earlier": true}'
    occupied = tmp_path / 'logs'
    occupied.mkdir()
    (occupied / 'keep.txt').write_text('mine')
    code, lines = run_error(capsys, '--model', str(model), '--out', str(occupied))
    assert code == 2 and lines == [f'{bench.PROG}: error: --out {occupied} exists; pass '
                                   '--overwrite to write into it']
    assert (occupied / 'keep.txt').read_text() == 'mine'


FPS = 30
SECONDS = 2
SOAK_MINUTES = 0.05  # 3 s


@pytest.fixture(scope='module')
def real_run(tmp_path_factory, isolated_ros_environment):
    pytest.importorskip('rclpy')
    pytest.importorskip('hand_cpm_ros.msg', reason='messages not built: run scripts/setup.sh')
    pytest.importorskip('hand_cpm_train.synth.scene')
    pytest.importorskip('hand_cpm_train.localizer_model')
    sys.path.insert(0, str(Path(__file__).parent / 'fixtures'))
    from fixed_boxes_localizer import build_fixed_boxes_localizer
    from fixed_peaks_model import build_fixed_peaks_model

    root = tmp_path_factory.mktemp('node_benchmark')
    model = build_fixed_peaks_model(root / 'fixed_peaks_test.onnx')
    localizer = build_fixed_boxes_localizer(root / 'fixed_boxes_localizer.onnx')
    result = root / 'bench.json'
    out = root / 'logs'
    # the test localiser's boxes are fixed in its input, so a wide pass would put them elsewhere in
    # the frame: off, so that every frame has the same two hands
    argv = ['--hands', '1', '--seconds', str(SECONDS), '--fps', str(FPS), '--soak-minutes',
            str(SOAK_MINUTES), '--model', str(model), '--localizer', str(localizer),
            '--param', 'localizer_interval:=2', '--param', 'localizer_wide_factor:=1.0',
            '--out', str(out), '--json', str(result)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = bench.main(argv)
    return code, json.loads(result.read_text()), out, printed.getvalue()


def test_a_real_run_counts_frames_latency_and_memory(real_run):
    code, report, out, printed = real_run
    assert report['machine']['name'] == platform.node()
    assert report['machine']['cores'] == os.cpu_count()
    assert report['fps_requested'] == FPS and report['soak_minutes'] == SOAK_MINUTES
    assert report['node_parameters'] == ['localizer_interval:=2', 'localizer_wide_factor:=1.0']
    timed, soak = report['runs']
    assert [timed['run'], soak['run']] == ['1 hand', 'soak 0.05 min, 1 hand']
    assert timed['frames_published'] == SECONDS * FPS
    assert soak['frames_published'] == round(SOAK_MINUTES * 60 * FPS)
    for run in (timed, soak):
        published, processed = run['frames_published'], run['frames_processed']
        assert 1 <= processed <= run['frames_received_by_node'] <= published
        assert processed + run['frames_dropped'] == published
        assert run['processed_fps'] == pytest.approx(FPS * processed / published, abs=1e-3)
        assert 0.5 * FPS < run['publish_rate_hz'] < 1.1 * FPS
        latency = run['latency_ms']
        assert all(math.isfinite(latency[key]) for key in ('median', 'p95', 'max'))
        assert 0 < latency['median'] <= latency['p95'] <= latency['max']
        # the test localiser reports the same two hands in every frame; the stream has one
        assert run['hands_per_frame'] == 2.0 and run['truth_hands_per_frame'] == 1.0
        assert run['detection']['true_hands'] == processed
        assert run['node_alive_at_end'] and run['node_exit_code'] == 0
        assert run['node_diagnostics']['variant'] == 'test-fixed-peaks'
        assert Path(run['node_log']).is_file()
        assert f'| {run["run"]} | {published} (' in printed
    assert 'rss' not in timed
    rss = soak['rss']
    assert len(rss['samples']) >= 2 and rss['first_mib'] > 10
    assert rss['first_mib'] <= rss['max_mib'] and rss['last_mib'] <= rss['max_mib']
    # 3 s of samples every 10 s: start and end only, no second half to fit
    assert rss['slope_mib_per_min'] is None
    checks = [check for run in report['runs'] for check in run['checks']]
    assert report['all_targets_met'] == all(check['pass'] is not False for check in checks)
    assert code == (0 if report['all_targets_met'] else 1)
    assert sorted(path.name for path in out.iterdir()) == ['hands1', 'soak']


def test_a_parameter_the_node_refuses_stops_the_run_with_the_node_s_reason(
        capsys, tmp_path, real_run):
    # the fixtures are on sys.path since real_run
    from fixed_boxes_localizer import build_fixed_boxes_localizer
    from fixed_peaks_model import build_fixed_peaks_model

    model = build_fixed_peaks_model(tmp_path / 'fixed_peaks_test.onnx')
    localizer = build_fixed_boxes_localizer(tmp_path / 'fixed_boxes_localizer.onnx')
    code, lines = run_error(capsys, '--hands', '1', '--seconds', '0.1', '--model', str(model),
                            '--localizer', str(localizer), '--param', 'max_hands:=0',
                            '--out', str(tmp_path / 'logs'))
    assert code == 2
    assert lines[-1].startswith(f'{bench.PROG}: error: hand_cpm_node exited with code 2: ')
    assert 'cannot start' in lines[-1] and 'max_hands' in lines[-1]
    assert str(tmp_path / 'logs' / 'hands1' / 'node.log') in lines[-1]
