"""The synthetic hand renderer: labels agree with the rendered pixels, left/right mirror, visibility
from the depth test, determinism per seed, the two JSON formats and the CLI's errors."""
import json
import shutil
from dataclasses import replace

import cv2
import numpy as np
import pytest
import yaml

pytest.importorskip('moderngl')
pytest.importorskip('pygltflib')

from hand_cpm_ros.keypoints import FINGERTIPS, NUM_KEYPOINTS  # noqa: E402
from hand_cpm_train.synth import asset  # noqa: E402
from hand_cpm_train.synth.cli import SETTINGS_FILE, main  # noqa: E402
from hand_cpm_train.synth.pose import GESTURES, LIMITS, NUM_DOFS, sample_pose  # noqa: E402
from hand_cpm_train.synth.renderer import Lighting  # noqa: E402
from hand_cpm_train.synth.mesh import PRIMITIVES, primitive_mesh  # noqa: E402
from hand_cpm_train.synth.scene import (OBJECT_ID, PALM_TO_CAMERA, HandParams, ObjectParams,  # noqa: E402
                                        SceneParams, hand_object_id, place_hand, render_sample,
                                        render_scene, render_sequence, sample_crop_scene,
                                        sample_frame_scene, sample_rng)

try:
    asset.find_asset_dir()
except asset.AssetNotFoundError as error:
    pytest.skip(f'hand asset missing: {error}', allow_module_level=True)

SIZE = (192, 192)
FINGER_TIPS = (8, 12, 16, 20)
BACK_TO_CAMERA = np.diag([-1.0, 1.0, -1.0]) @ PALM_TO_CAMERA  # turned 180 degrees about image y
CAMERA_MIRROR = np.diag([-1.0, 1.0, 1.0])                     # image x -> -x
HAND_MIRROR = np.diag([-1.0, 1.0, 1.0])                       # left mesh = right mesh mirrored in X


def plain_scene(hands, size=SIZE) -> SceneParams:
    lighting = Lighting(np.array([[0.2, -0.4, -1.0]]), np.array([[0.9, 0.9, 0.9]]),
                        np.array([0.3, 0.3, 0.3]))
    return SceneParams(width=size[0], height=size[1], horizontal_fov_deg=50.0, hands=tuple(hands),
                       lighting=lighting, background_kind='gradient', background_seed=1)


def hand_facing_camera(side, gesture, rotation=PALM_TO_CAMERA, size=SIZE, fraction=0.7) -> HandParams:
    hand = HandParams(side=side, pose=GESTURES[gesture], rotation=rotation, translation=np.zeros(3),
                      forearm=None)
    camera = plain_scene([hand], size).camera
    return place_hand(hand, camera, fraction * size[1], ((size[0] - 1) / 2, (size[1] - 1) / 2))


def test_pose_sampling_stays_within_limits():
    rng = np.random.default_rng(0)
    poses = np.stack([sample_pose(rng) for _ in range(200)])
    assert poses.shape == (200, NUM_DOFS)
    assert np.all(poses >= LIMITS[:, 0] - 1e-9) and np.all(poses <= LIMITS[:, 1] + 1e-9)
    assert poses.std(axis=0).min() > 1.0  # every degree of freedom actually varies


def test_keypoints_lie_on_the_rendered_hand():
    rendered = render_scene(plain_scene([hand_facing_camera('right', 'open_palm')]))
    hand = rendered.hands[0]
    assert hand.visible.all()  # an open palm facing the camera shows all 21 points
    columns, rows = np.round(hand.keypoints).astype(int).T
    inner = [k for k in range(NUM_KEYPOINTS) if k not in FINGERTIPS]
    assert hand.mask[rows[inner], columns[inner]].all()
    # Fingertips are the ends of the fingers (1 mm inside): on the silhouette, within a pixel.
    near_mask = cv2.dilate(hand.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert near_mask[rows, columns].all()
    assert not hand.mask[rows[8] - 3, columns[8]]  # nothing beyond the index tip (finger up)
    # The box is the tight box of the mask, in pixel edges.
    x0, y0, x1, y1 = hand.box
    assert hand.mask[:, int(x0 + 0.5)].any() and hand.mask[:, int(x1 - 0.5)].any()
    assert not hand.mask[:, :int(x0 + 0.5)].any() and not hand.mask[int(y1 + 0.5):].any()


@pytest.mark.parametrize('index', range(4))
def test_random_crops_put_wrist_and_visible_fingertips_on_the_hand(index):
    rendered = render_sample('crop', 11, index, SIZE)
    hand = rendered.hands[0]
    # The forearm starts inside the hand mesh to close its open wrist: the wrist may show the arm.
    hand_or_arm = np.isin(rendered.object_ids, [hand_object_id(0), hand_object_id(0) + 1])
    mask = cv2.dilate(hand.mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    points = np.round(hand.keypoints).astype(int)
    for keypoint in (0,) + FINGERTIPS:
        if hand.visible[keypoint]:
            column, row = points[keypoint]
            assert (hand_or_arm if keypoint == 0 else mask)[row, column], \
                f'visible keypoint {keypoint} is off the hand'
    assert hand.visible.sum() >= 5


def test_left_and_right_hands_mirror():
    right = hand_facing_camera('right', 'pointing', rotation=PALM_TO_CAMERA)
    left = HandParams(side='left', pose=right.pose,
                      rotation=CAMERA_MIRROR @ right.rotation @ HAND_MIRROR,
                      translation=CAMERA_MIRROR @ right.translation, forearm=None)
    rendered_right, rendered_left = (render_scene(plain_scene([hand])) for hand in (right, left))
    width = SIZE[0]
    mirrored = rendered_left.hands[0].keypoints * [-1, 1] + [width - 1, 0]
    hand_size = np.ptp(rendered_right.hands[0].keypoints, axis=0).max()
    # The two meshes are mirror images up to small modelling differences (about a millimetre).
    assert np.abs(mirrored - rendered_right.hands[0].keypoints).max() < 0.04 * hand_size
    mask_right = rendered_right.hands[0].mask
    mask_left = rendered_left.hands[0].mask[:, ::-1]
    assert (mask_right & mask_left).sum() / (mask_right | mask_left).sum() > 0.85


@pytest.mark.parametrize('side', ['right', 'left'])
def test_thumb_side_of_a_palm_facing_the_camera(side):
    # A right palm facing the viewer, fingers up, has its thumb on the viewer's right.
    hand = render_scene(plain_scene([hand_facing_camera(side, 'open_palm')])).hands[0]
    thumb_x, little_x = hand.keypoints[4, 0], hand.keypoints[20, 0]
    assert (thumb_x > little_x) == (side == 'right')
    assert hand.keypoints[12, 1] < hand.keypoints[0, 1]  # fingers up


def test_fist_seen_from_the_back_hides_the_fingertips():
    fist = render_scene(plain_scene([hand_facing_camera('right', 'fist', BACK_TO_CAMERA)])).hands[0]
    assert not fist.visible[list(FINGER_TIPS)].any()
    assert fist.visible[[0, 5, 9, 13, 17]].all()  # wrist and knuckles face the camera
    palm = render_scene(plain_scene([hand_facing_camera('right', 'fist', PALM_TO_CAMERA)])).hands[0]
    assert palm.visible[4] and not palm.visible[list(FINGER_TIPS)].any()  # tips under the fingers


def test_other_hand_in_front_hides_keypoints():
    back = hand_facing_camera('right', 'open_palm', fraction=0.45)
    # Nearer on the same line of sight: the same wrist pixel, 1/0.7 times as large.
    front = HandParams(side='left', pose=GESTURES['open_palm'], rotation=PALM_TO_CAMERA,
                       translation=back.translation * 0.7, forearm=None)
    hands = render_scene(plain_scene([back, front])).hands
    assert hands[1].visible.all()
    assert hands[0].visible.sum() < NUM_KEYPOINTS // 2
    assert not (hands[0].mask & hands[1].mask).any()


@pytest.mark.parametrize('kind', PRIMITIVES)
def test_primitives_are_closed_unit_meshes_wound_outwards(kind):
    vertices, normals, faces = primitive_mesh(kind)
    assert np.allclose(np.abs(vertices).max(axis=0), 1.0)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1.0)
    corners = vertices[faces]
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    centres = corners.mean(axis=1)
    assert ((cross * centres).sum(axis=1) > 0).all()  # convex around the origin: outward = away from it
    # Closed: the faces' area vectors cancel, as for any closed surface.
    assert np.allclose(cross.sum(axis=0), 0.0, atol=1e-9)
    with pytest.raises(ValueError, match='unknown primitive'):
        primitive_mesh('torus')


def test_an_object_in_front_of_a_hand_hides_its_keypoints_and_is_lit():
    hand = hand_facing_camera('right', 'open_palm', fraction=0.5)
    camera = plain_scene([hand]).camera
    palm = camera.project(hand.translation[None])[0]  # the wrist, lower middle of the hand
    # A skin-coloured box halfway to the camera, over the wrist and palm.
    box = ObjectParams('box', np.array([0.03, 0.03, 0.01]) * 0.5, np.eye(3), hand.translation * 0.5,
                       (0.85, 0.65, 0.52))
    clear = render_scene(plain_scene([hand]))
    hidden = render_scene(replace(plain_scene([hand]), objects=(box,)))
    assert clear.hands[0].visible.all()
    assert not hidden.hands[0].visible[0] and hidden.hands[0].visible[list(FINGER_TIPS)].all()
    row, column = int(round(palm[1])), int(round(palm[0]))
    assert hidden.object_ids[row, column] == OBJECT_ID
    box_pixels = hidden.image_bgr[hidden.object_ids == OBJECT_ID].astype(float)
    assert box_pixels.mean(axis=0)[2] > box_pixels.mean(axis=0)[0] + 20   # skin: redder than blue
    with pytest.raises(ValueError, match='at most 30 objects'):
        render_scene(replace(plain_scene([hand]), objects=(box,) * 31))


@pytest.mark.parametrize('sampler', [sample_frame_scene, sample_crop_scene])
def test_objects_are_drawn_after_everything_else(sampler):
    # Adding objects keeps the rest of each scene (hands, layers) and adds lit solids behind the
    # hands or in front of part of one.
    with_objects = 0
    for index in range(8):
        plain = sampler(sample_rng(9, index))
        rich = sampler(sample_rng(9, index), max_objects=4)
        assert _same_scene(rich, plain)
        assert plain.objects == () and len(rich.objects) <= 4
        with_objects += bool(rich.objects)
    assert with_objects >= 4


def _same_scene(first: SceneParams, second: SceneParams) -> bool:
    return (len(first.hands) == len(second.hands)
            and all(np.array_equal(a.translation, b.translation) and np.array_equal(a.pose, b.pose)
                    for a, b in zip(first.hands, second.hands))
            and first.background_seed == second.background_seed and first.effects_seed == second.effects_seed)


def test_same_seed_same_image_other_seed_differs():
    first = render_sample('frame', 4, 2, (160, 120))
    again = render_sample('frame', 4, 2, (160, 120))
    other = render_sample('frame', 5, 2, (160, 120))
    assert np.array_equal(first.image_bgr, again.image_bgr)
    assert first.frame_annotation() == again.frame_annotation()
    assert not np.array_equal(first.image_bgr, other.image_bgr)


def test_a_larger_max_hand_size_brings_the_same_hands_closer():
    # Same seed, same draws: only the hands' distance changes, so the scene's content is kept and
    # each independently placed hand ends up nearer the camera (larger in the image).
    compared = 0
    for index in range(12):
        default = sample_frame_scene(sample_rng(3, index))
        close = sample_frame_scene(sample_rng(3, index), max_hand_size=1.6)
        assert len(default.hands) == len(close.hands)
        assert default.background_seed == close.background_seed
        if default.hands:
            first, near = default.hands[0], close.hands[0]
            assert np.array_equal(first.pose, near.pose) and np.allclose(first.rotation, near.rotation)
            assert near.translation[2] < first.translation[2]
            compared += 1
    assert compared >= 8
    with pytest.raises(ValueError, match='max_hand_size'):
        sample_frame_scene(sample_rng(3, 0), max_hand_size=0.04)


def run_cli(*argv) -> int:
    return main([str(arg) for arg in argv])


def test_cli_crop_format_and_determinism(tmp_path):
    assert run_cli('--out', tmp_path / 'a', '--count', 3, '--seed', 7, '--size', 96) == 0
    assert run_cli('--out', tmp_path / 'b', '--count', 3, '--seed', 7, '--size', 96) == 0
    assert run_cli('--out', tmp_path / 'c', '--count', 3, '--seed', 8, '--size', 96) == 0
    names = sorted(path.name for path in (tmp_path / 'a').iterdir())
    assert names == [f'{index:08d}.{ext}' for index in range(3) for ext in ('jpg', 'json')] + [SETTINGS_FILE]
    assert yaml.safe_load((tmp_path / 'a' / SETTINGS_FILE).read_text()) == {
        'scene': 'crop', 'seed': 7, 'size': [96, 96], 'max_hand_size': 0.8, 'objects': 0}
    for name in names:
        assert (tmp_path / 'a' / name).read_bytes() == (tmp_path / 'b' / name).read_bytes()
    assert (tmp_path / 'a' / '00000000.jpg').read_bytes() != (tmp_path / 'c' / '00000000.jpg').read_bytes()
    annotation = json.loads((tmp_path / 'a' / '00000001.json').read_text())
    assert set(annotation) == {'hand_pts', 'is_left'} and annotation['is_left'] in (0, 1)
    points = np.array(annotation['hand_pts'])
    assert points.shape == (NUM_KEYPOINTS, 3) and set(points[:, 2]) <= {0, 1}
    assert cv2.imread(str(tmp_path / 'a' / '00000001.jpg')).shape == (96, 96, 3)
    # The JSON is the renderer's annotation of that image.
    expected = render_sample('crop', 7, 1, (96, 96)).crop_annotation()
    assert annotation == expected


def test_cli_frame_format_and_preview(tmp_path):
    preview = tmp_path / 'preview.png'
    assert run_cli('--out', tmp_path / 'f', '--count', 4, '--seed', 2, '--scene', 'frame',
                   '--size', '160x120', '--preview', preview) == 0
    hands_seen = 0
    for index in range(4):
        annotation = json.loads((tmp_path / 'f' / f'{index:08d}.json').read_text())
        assert (annotation['width'], annotation['height']) == (160, 120)
        for hand in annotation['hands']:
            hands_seen += 1
            x0, y0, x1, y1 = hand['box']
            assert -0.5 <= x0 < x1 <= 159.5 and -0.5 <= y0 < y1 <= 119.5
            assert len(hand['hand_pts']) == NUM_KEYPOINTS and hand['is_left'] in (0, 1)
            visible = np.array([p for p in hand['hand_pts'] if p[2]])
            if len(visible):
                assert np.all((visible[:, 0] >= x0 - 2) & (visible[:, 0] <= x1 + 2))
    assert hands_seen >= 1
    sheet = cv2.imread(str(preview))
    assert sheet is not None and sheet.shape == (240, 4 * 320, 3)


def test_sequence_moves_smoothly():
    frames = list(render_sequence(4, 2, seed=3, size=(160, 120), frames_per_key=8))
    assert len(frames) == 4 and frames[0][0].shape == (120, 160, 3)
    wrists = [np.array([hand['hand_pts'][0][:2] for hand in annotation['hands']])
              for _, annotation in frames]
    assert all(len(wrist) == 2 for wrist in wrists)
    steps = [np.abs(later - earlier).max() for earlier, later in zip(wrists, wrists[1:])]
    assert max(steps) < 12 and sum(steps) > 0  # pixels per frame at 160x120


@pytest.mark.parametrize('argv, message', [
    (['--count', '0'], '--count must be positive'),
    (['--count', '2', '--scene', 'beach'], "unknown --scene 'beach'"),
    (['--count', '2', '--size', '12x'], 'bad --size'),
    (['--count', '2', '--scene', 'frame', '--max-hand-size', '2.5'], '--max-hand-size must be above'),
    (['--count', '2', '--max-hand-size', '1.2'], '--max-hand-size is for --scene frame'),
    (['--count', '2', '--objects', '31'], '--objects must be 0..30'),
])
def test_cli_rejects_bad_requests(tmp_path, capsys, argv, message):
    assert run_cli('--out', tmp_path / 'out', *argv) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def test_cli_rejects_unwritable_and_existing_output(tmp_path, capsys):
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    assert run_cli('--out', blocker / 'out', '--count', 1) == 2
    assert 'cannot create --out' in capsys.readouterr().err
    assert run_cli('--out', tmp_path / 'd', '--count', 1, '--size', 64) == 0
    before = (tmp_path / 'd' / '00000000.jpg').read_bytes()
    assert run_cli('--out', tmp_path / 'd', '--count', 1, '--size', 64, '--seed', 9) == 2
    assert '--overwrite' in capsys.readouterr().err
    assert (tmp_path / 'd' / '00000000.jpg').read_bytes() == before
    assert run_cli('--out', tmp_path / 'd', '--count', 1, '--size', 64, '--seed', 9,
                   '--overwrite') == 0
    assert (tmp_path / 'd' / '00000000.jpg').read_bytes() != before


def test_an_interrupted_render_resumes_to_the_same_files(tmp_path, capsys):
    """What a kill leaves (a sample without its .json, one not begun, write_atomic's temporary
    file) is completed by --resume with the recorded settings, to the files of an uninterrupted
    render."""
    whole, cut = tmp_path / 'whole', tmp_path / 'cut'
    assert run_cli('--out', whole, '--count', 4, '--seed', 3, '--size', 64) == 0
    shutil.copytree(whole, cut)
    for name in ('00000002.json', '00000003.jpg', '00000003.json'):
        (cut / name).unlink()
    (cut / '.00000003.jpg.x1y2.tmp').write_bytes(b'half a JPEG')
    assert run_cli('--out', cut, '--count', 4, '--seed', 3, '--size', 64) == 2
    assert '--resume to go on with an interrupted render' in capsys.readouterr().err
    assert run_cli('--out', cut, '--count', 4, '--seed', 4, '--size', 64, '--resume') == 2
    assert 'seed differs from' in capsys.readouterr().err
    assert run_cli('--out', cut, '--count', 4, '--seed', 3, '--size', 64, '--resume', '--overwrite') == 2
    capsys.readouterr()
    assert run_cli('--out', cut, '--count', 4, '--seed', 3, '--size', 64, '--resume') == 0
    assert '2 of 4 samples already in' in capsys.readouterr().out
    assert sorted(path.name for path in cut.iterdir()) == sorted(path.name for path in whole.iterdir())
    for path in whole.iterdir():
        assert (cut / path.name).read_bytes() == path.read_bytes(), path.name
    (cut / SETTINGS_FILE).unlink()
    assert run_cli('--out', cut, '--count', 4, '--seed', 3, '--size', 64, '--resume') == 2
    assert f'has no {SETTINGS_FILE}' in capsys.readouterr().err
    # Nothing rendered yet: --resume simply starts, so one command serves both.
    assert run_cli('--out', tmp_path / 'fresh', '--count', 4, '--seed', 3, '--size', 64, '--resume') == 0
    assert all((tmp_path / 'fresh' / path.name).read_bytes() == path.read_bytes() for path in whole.iterdir())


def test_missing_asset_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(asset.ASSET_ENV_VAR, str(tmp_path / 'nowhere'))
    assert run_cli('--out', tmp_path / 'out', '--count', 1) == 2
    error = capsys.readouterr().err
    assert 'scripts/setup.sh' in error and 'npm pack @webxr-input-profiles/assets@1.0.20' in error


def test_hand_object_ids_are_distinct_from_arms():
    assert len({hand_object_id(index) for index in range(2)} |
               {hand_object_id(index) + 1 for index in range(2)}) == 4
