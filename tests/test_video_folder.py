"""The shared real-video builder through `video_folder`, and its errors.

A tiny folder of real videos (mp4 and avi, written with PyAV) plus three bad
files is built once per module with the `files` teacher (precomputed masks
beside each video) in two worker processes, from `config.dataset` as `main`
does.
"""

import ctypes
import importlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import textwrap

import av
import numpy as np
import pytest
import tensorflow_datasets as tfds

from airstreams_jax import errors
from airstreams_jax.data import dataset_from_config
from airstreams_jax.data import video_dataset_builder
from airstreams_jax.data import video_folder
from airstreams_jax.data import video_processing
from airstreams_jax.data.video_entries import ActionInterval
from airstreams_jax.data.video_entries import VideoEntry
from configs import video_folder as video_folder_config
import fake_datasets
from test_video_io import frame_index
from test_video_io import write_video

# split -> class -> [(file name, frames)]; 'wave' has no test folder.
_GOOD = {
    'train': {'jump': [('a.mp4', 8), ('b.avi', 10)],
              'run': [('c.MP4', 9), ('d.avi', 6)],
              'wave': [('e.mp4', 12)]},
    'test': {'jump': [('f.avi', 7)], 'run': [('g.mp4', 11)]},
}
_CLASSES = ['jump', 'run', 'wave']
_MASK_CLASSES = ['background', 'person', 'ball', 'box']
_BAD = ['train/jump/corrupt.mp4', 'train/run/empty.mp4',
        'test/jump/notes.mp4']
_SHORT_SIDE, _MASK_SIZE = 24, 12
# Entries of the large-folder test (a tenth bad).
_LARGE_FOLDER_ENTRIES = 2000
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mask_value(label: int, frame: int) -> int:
  """The teacher class of the right half of a frame (left half: 0)."""
  return 1 + (label + frame) % 3


def _write_good_video(path: str, label: int, num_frames: int) -> None:
  write_video(path, num_frames)  # 36x48, 10 fps.
  # The `files` teacher's masks at 18x24: left half background, right half
  # a class that encodes the video's label and the frame index.
  masks = np.zeros((num_frames, 18, 24), np.uint8)
  for t in range(num_frames):
    masks[t, :, 12:] = _mask_value(label, t)
  np.savez_compressed(os.path.splitext(path)[0] + '.masks.npz', masks=masks)


@pytest.fixture(scope='module')
def root(tmp_path_factory):
  root = tmp_path_factory.mktemp('video_folder')
  for split, classes in _GOOD.items():
    for name, videos in classes.items():
      os.makedirs(root / split / name)
      for file_name, num_frames in videos:
        _write_good_video(str(root / split / name / file_name),
                          _CLASSES.index(name), num_frames)
  with open(root / 'classes.txt', 'w') as f:
    f.write('\n'.join(_MASK_CLASSES) + '\n')
  with open(root / 'train' / 'jump' / 'a.mp4', 'rb') as f:
    header = f.read(64)
  with open(root / _BAD[0], 'wb') as f:
    f.write(header + np.random.default_rng(0).bytes(3000))
  open(root / _BAD[1], 'wb').close()
  with open(root / _BAD[2], 'w') as f:
    f.write('meeting notes, saved with the wrong extension\n')
  with open(root / 'train' / 'jump' / 'readme.txt', 'w') as f:
    f.write('not a video: ignored\n')
  return str(root)


def _dataset_config(root, data_dir, **overrides):
  config = video_folder_config.get_config('smoke')
  with config.unlocked():
    config.dataset.update(dict(
        dict(manual_dir=root, data_dir=data_dir, teacher='files',
             short_side=_SHORT_SIDE, mask_size=_MASK_SIZE, build_workers=2),
        **overrides))
  return config.dataset


@pytest.fixture(scope='module')
def built(root, tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp('tfds'))
  builder = dataset_from_config.make_builder(_dataset_config(root, data_dir))
  dataset_from_config.prepare(builder)
  examples = {split: list(tfds.as_numpy(builder.as_dataset(split=split)))
              for split in ('train', 'test')}
  return builder, examples, data_dir


def _entries(split):
  return {f'{name}/{file_name}': (_CLASSES.index(name), num_frames)
          for name, videos in _GOOD[split].items()
          for file_name, num_frames in videos}


def test_the_dataset_holds_exactly_the_good_videos(built):
  builder, examples, _ = built
  for split in ('train', 'test'):
    ids = sorted(ex['video_id'].decode() for ex in examples[split])
    assert ids == sorted(_entries(split))
  assert builder.info.features['label'].names == _CLASSES


def test_the_report_names_the_three_bad_files(built, root):
  builder, _, _ = built
  with open(os.path.join(builder.data_dir, 'bad_inputs.json')) as f:
    report = json.load(f)
  assert report['num_bad_inputs'] == 3
  bad = {os.path.relpath(b['path'], root): b for b in report['bad_inputs']}
  assert sorted(bad) == sorted(_BAD)
  assert bad['train/run/empty.mp4']['reason'] == 'empty file (0 bytes)'
  assert 'not a readable video' in bad['test/jump/notes.mp4']['reason']
  assert bad['test/jump/notes.mp4']['split'] == 'test'
  assert builder.info.metadata['num_bad_inputs'] == 3


def test_frames_masks_and_labels(built):
  _, examples, _ = built
  for split in ('train', 'test'):
    expected = _entries(split)
    for ex in examples[split]:
      label, num_frames = expected[ex['video_id'].decode()]
      assert ex['label'] == label
      video, masks = ex['video'], ex['masks']
      # 36x48 frames stored with short side 24; masks with short side 12.
      assert video.shape == (num_frames, 24, 32, 3)
      assert masks.shape == (num_frames, 12, 16)
      assert [frame_index(f) for f in video] == list(range(num_frames))
      for t in range(num_frames):
        assert (masks[t, :, :8] == 0).all()
        assert (masks[t, :, 8:] == _mask_value(label, t)).all()


def test_dataset_meta(built):
  builder, _, _ = built
  meta = dataset_from_config.dataset_meta(builder)
  assert meta == dataset_from_config.DatasetMeta(
      num_classes=3, class_names=tuple(_CLASSES),
      mask_class_names=tuple(_MASK_CLASSES), multi_label=False)


def test_rebuilding_reuses_the_dataset_and_checks_its_source(built, root,
                                                            tmp_path):
  builder, _, data_dir = built
  again = dataset_from_config.make_builder(_dataset_config(root, data_dir))
  assert again.data_dir == builder.data_dir
  assert again.info.splits['train'].num_examples == 5
  other = tmp_path / 'other'
  (other / 'train' / 'x').mkdir(parents=True)
  (other / 'classes.txt').write_text(
      open(os.path.join(root, 'classes.txt')).read())  # The files teacher's.
  with pytest.raises(errors.ConfigError, match='built from'):
    dataset_from_config.make_builder(_dataset_config(str(other), data_dir))


def test_config_name_encodes_every_option():
  make = video_folder.VideoFolder.make_config
  names = {
      make().name,
      make(teacher='files').name,
      make(teacher='tflite', teacher_options={'model_path': '/a.tflite'}).name,
      make(teacher='tflite', teacher_options={'model_path': '/b.tflite'}).name,
      make(short_side=96).name,
      make(fps=7.5).name,
      make(max_frames=32).name,
      make(mask_size=32).name,
  }
  assert len(names) == 8
  assert make(fps=7.5, max_frames=32).name == 'selfie_s128_fps7p5_max32_m64'
  # Speed-only options and unset (None) ones do not change the data.
  assert make(teacher_options={'num_threads': 1,
                               'model_path': None}).name == make().name
  # The predefined default config is handed back itself (tfds insists).
  assert make() is video_folder.VideoFolder.BUILDER_CONFIGS[0]
  with pytest.raises(ValueError, match='mask_size'):
    make(short_side=32, mask_size=64)


@pytest.mark.parametrize('setup,message', [
    (lambda root: None, 'is not a directory'),
    (lambda root: root.mkdir(), 'has no split folders'),
    (lambda root: (root / 'train' / 'jump').mkdir(parents=True),
     'holds no videos'),
    (lambda root: (root / 'my-split').mkdir(parents=True),
     'letters, digits and _'),
])
def test_bad_layouts_give_one_line_errors(tmp_path, setup, message):
  root = tmp_path / 'root'
  setup(root)
  with pytest.raises(errors.ConfigError) as e:
    video_folder.list_videos(str(root))
  text = str(e.value)
  assert message in text and 'ROOT/<split>/<class>/<video>' in text
  assert '\n' not in text


@pytest.mark.parametrize('overrides,message', [
    (dict(manual_dir=''), 'set --config.dataset.manual_dir'),
    (dict(manual_dir='/nonexistent/videos'), 'no such directory'),
    (dict(teacher='oracle'), 'cannot label real videos'),
    (dict(mask_size=64), 'mask_size must be in'),
    (dict(fps=-1.0), 'fps must be >= 0'),
])
def test_make_builder_rejects_bad_config_before_any_work(root, tmp_path,
                                                         overrides, message):
  data_dir = tmp_path / 'never_built'
  with pytest.raises(errors.ConfigError, match=message):
    dataset_from_config.make_builder(_dataset_config(root, str(data_dir), **overrides))
  assert not data_dir.exists()


def test_a_split_without_good_videos_is_an_error(tmp_path):
  root = tmp_path / 'root'
  (root / 'train' / 'jump').mkdir(parents=True)
  _write_good_video(str(root / 'train' / 'jump' / 'a.mp4'), 0, 4)
  (root / 'test' / 'jump').mkdir(parents=True)
  open(root / 'test' / 'jump' / 'empty.mp4', 'wb').close()
  with open(root / 'classes.txt', 'w') as f:
    f.write('background\nperson\n')
  data_dir = tmp_path / 'tfds'
  builder = dataset_from_config.make_builder(
      _dataset_config(str(root), str(data_dir), build_workers=1))
  with pytest.raises(errors.ConfigError,
                     match="split 'test' has no good video"):
    builder.download_and_prepare()
  report = os.path.join(os.path.dirname(builder.data_dir), 'bad_inputs.json')
  with open(report) as f:
    assert json.load(f)['bad_inputs'][0]['path'].endswith('empty.mp4')


class _MultiLabelClips(video_dataset_builder.VideoDatasetBuilder):
  """Two videos with action intervals (a multi-label listing)."""

  # tfds looks for a builder's data files beside its module, which must be
  # inside a package; tests/ is not one.
  __module__ = video_dataset_builder.__name__
  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Test.'}
  BUILDER_CONFIGS = [video_dataset_builder.VideoBuilderConfig(teacher='files',
                                                      short_side=24,
                                                      mask_size=12)]
  MANUAL_DOWNLOAD_INSTRUCTIONS = 'Written by the test.'
  DESCRIPTION = 'Test clips.'
  MULTI_LABEL = True

  def _list_videos(self, manual_dir):
    path = os.path.join(manual_dir, 'clip.mp4')
    return video_dataset_builder.VideoListing(
        class_names=['open', 'close', 'sit'],
        splits={'train': [
            VideoEntry('clip', path, intervals=(
                ActionInterval(0, 0.0, 0.45), ActionInterval(2, 0.3, 5.0))),
            VideoEntry('idle', path)]})


def test_multi_label_frame_labels_from_intervals(tmp_path):
  manual_dir = tmp_path / 'clips'
  manual_dir.mkdir()
  _write_good_video(str(manual_dir / 'clip.mp4'), 0, 10)  # 10 fps: 0-0.9 s.
  with open(manual_dir / 'classes.txt', 'w') as f:
    f.write('\n'.join(_MASK_CLASSES) + '\n')
  builder = _MultiLabelClips(data_dir=str(tmp_path / 'tfds'),
                             manual_dir=str(manual_dir), num_workers=1)
  builder.download_and_prepare()
  examples = {ex['video_id'].decode(): ex
              for ex in tfds.as_numpy(builder.as_dataset(split='train'))}
  labels = examples['clip']['frame_labels']
  assert labels.dtype == np.uint8 and labels.shape == (10, 3)
  t = np.arange(10) / 10
  np.testing.assert_array_equal(labels[:, 0], t <= 0.45)
  np.testing.assert_array_equal(labels[:, 1], 0)
  np.testing.assert_array_equal(labels[:, 2], t >= 0.3)
  assert not examples['idle']['frame_labels'].any()
  assert 'label' not in builder.info.features
  meta = dataset_from_config.dataset_meta(builder)
  assert meta.multi_label and meta.class_names == ('open', 'close', 'sit')
  assert meta.mask_class_names == tuple(_MASK_CLASSES)


def test_resize_masks_is_nearest_neighbour():
  masks = np.arange(6, dtype=np.uint8).reshape(1, 2, 3)
  np.testing.assert_array_equal(
      video_processing.resize_masks(masks, 4, 6)[0],
      [[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2],
       [3, 3, 4, 4, 5, 5], [3, 3, 4, 4, 5, 5]])
  np.testing.assert_array_equal(
      video_processing.resize_masks(np.arange(16, dtype=np.uint8)
                                    .reshape(1, 4, 4), 2, 2)[0],
      [[5, 7], [13, 15]])


def test_the_log_counts_the_bad_inputs(built, root, tmp_path, caplog):
  # In this process (build_workers=1), with fps and max_frames options: a
  # new config, so a new build.
  builder = dataset_from_config.make_builder(_dataset_config(
      root, str(tmp_path / 'tfds'), build_workers=1, fps=5.0, max_frames=3))
  # absl's logger may have a level of its own (set by an earlier test).
  with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO,
                                                      logger='absl'):
    builder.download_and_prepare()
  assert '3 bad inputs skipped' in caplog.text
  assert 'train: 5 videos, 2 skipped' in caplog.text
  examples = list(tfds.as_numpy(builder.as_dataset(split='train')))
  # 5 fps of a 10 fps video, then at most 3 frames spread over it.
  assert [len(ex['video']) for ex in examples] == [3] * 5
  # The stored order depends on the video ids only, not on the options or
  # the number of worker processes.
  assert ([ex['video_id'] for ex in examples] ==
          [ex['video_id'] for ex in built[1]['train']])


@pytest.mark.slow
def test_tfds_build_command(root, tmp_path):
  # tfds's build code (flags of `tfds build`), run through the module.
  data_dir = tmp_path / 'tfds'
  options = {'teacher': 'files', 'short_side': 16, 'mask_size': 8}
  proc = subprocess.run(
      [sys.executable, '-m', 'airstreams_jax.data.video_folder',
       f'--manual_dir={root}', f'--data_dir={data_dir}',
       f'--config={json.dumps(options)}'],
      cwd=_REPO, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
  assert proc.returncode == 0, proc.stderr[-3000:]
  builder = video_folder.VideoFolder(
      config=video_folder.VideoFolder.make_config(**options),
      data_dir=str(data_dir))
  assert builder.info.splits['train'].num_examples == 5
  assert builder.info.metadata['num_bad_inputs'] == 3
  assert os.path.exists(os.path.join(builder.data_dir, 'bad_inputs.json'))


@pytest.mark.parametrize('config_file,arg,config_name', [
    ('hmdb51', 'split=2', 'split2_selfie_s128_fpsall_maxall_m64'),
    ('toyota_smarthome', None, 'cross_subject_selfie_s128_fpsall_maxall_m64'),
    ('charades', None, 'selfie_s128_fpsall_maxall_m64'),
    ('mit', None, 'selfie_s128_fpsall_maxall_m64'),
])
def test_make_builder_for_each_real_dataset_config(tmp_path, config_file, arg,
                                                   config_name):
  module = importlib.import_module(f'configs.{config_file}')
  config = module.get_config(arg)
  config.dataset.update(dict(manual_dir=str(tmp_path),
                             data_dir=str(tmp_path / 'tfds')))
  builder = dataset_from_config.make_builder(config.dataset)
  assert builder.name == config.dataset.name
  assert builder.builder_config.name == config_name
  config.dataset.builder_config = 'split4'
  with pytest.raises(errors.ConfigError, match='not a config of'):
    dataset_from_config.make_builder(config.dataset)


with tfds.core.registered.skip_registration():

  class CrashProneVideoFolder(video_folder.VideoFolder):
    """VideoFolder whose decoder crashes its process on '*crash*' files."""
    decode = staticmethod(fake_datasets.decode_or_crash)
    # tfds looks for a builder's metadata beside its module (a package).
    pkg_dir_path = video_folder.VideoFolder._get_pkg_dir_path()  # pylint: disable=protected-access


# Bad entries of every kind the builder meets, and the reason each gets.
_BAD_KINDS = {
    'corrupt': r'not a readable video|corrupt',
    'truncated': r'corrupt|not a readable video|no frames',
    'zero_byte': r'empty file \(0 bytes\)',
    'text': r'not a readable video',
    'no_frames': r'no frames|no video stream',
    'no_masks': r'^teacher: ',
    'directory': r'^a directory named like a video$',
    'loop': r'^a symlink that leads nowhere',
    'dangling': r'^a symlink that leads nowhere',
    'crash': r'^its build worker crashed on it',
}


def _write_bad(path: str, kind: str, good: str) -> None:
  with open(good, 'rb') as f:
    data = f.read()
  if kind == 'corrupt':
    with open(path, 'wb') as f:
      f.write(data[:64] + np.random.default_rng(len(path)).bytes(3000))
  elif kind == 'truncated':
    with open(path, 'wb') as f:
      f.write(data[:len(data) * 2 // 5])
  elif kind == 'zero_byte':
    open(path, 'wb').close()
  elif kind == 'text':
    with open(path, 'w') as f:
      f.write('meeting notes, saved with the wrong extension\n')
  elif kind == 'no_frames':
    with av.open(path, 'w') as container:
      stream = container.add_stream('libx264', rate=10)
      stream.width, stream.height, stream.pix_fmt = 48, 36, 'yuv420p'
      container.start_encoding()  # The header, then no frame at all.
  elif kind == 'no_masks':  # A good video; the `files` teacher has nothing.
    shutil.copyfile(good, path)
  elif kind == 'directory':
    os.makedirs(path)
  elif kind == 'loop':
    os.symlink(os.path.basename(path), path)  # Points at itself.
  elif kind == 'dangling':
    os.symlink(path + '.gone', path)
  elif kind == 'crash':  # Good, with masks: only the decoder fails on it.
    shutil.copyfile(good, path)
    shutil.copyfile(os.path.splitext(good)[0] + '.masks.npz',
                    os.path.splitext(path)[0] + '.masks.npz')


@pytest.mark.slow
def test_a_large_folder_with_every_kind_of_bad_entry(tmp_path):
  """Hundreds of entries, a tenth of them bad in every way: each bad one is
  named with its reason, no good one is lost, the build finishes, and a
  worker killed by a video costs only that video."""
  root = tmp_path / 'videos'
  source = str(tmp_path / 'source.mp4')
  _write_good_video(source, 0, 6)
  good, bad = set(), {}
  rng = np.random.default_rng(0)
  kinds = list(_BAD_KINDS)
  for i in range(_LARGE_FOLDER_ENTRIES):
    split = 'test' if i % 5 == 0 else 'train'
    name = _CLASSES[i % len(_CLASSES)]
    folder = root / split / name
    folder.mkdir(parents=True, exist_ok=True)
    if i % 10 == 3:  # A tenth bad; crashes only every 16th of those.
      kind = kinds[int(rng.integers(len(kinds) - 1))]
      if (i // 10) % 16 == 7:
        kind = 'crash'
      path = str(folder / f'{i:05d}_{kind}.mp4')
      _write_bad(path, kind, source)
      bad[path] = kind
    else:
      path = str(folder / f'{i:05d}.mp4')
      shutil.copyfile(source, path)
      shutil.copyfile(os.path.splitext(source)[0] + '.masks.npz',
                      os.path.splitext(path)[0] + '.masks.npz')
      good.add(f'{name}/{os.path.basename(path)}')
  with open(root / 'classes.txt', 'w') as f:
    f.write('\n'.join(_MASK_CLASSES) + '\n')
  assert set(bad.values()) == set(_BAD_KINDS)  # Every kind is there.

  builder = CrashProneVideoFolder(
      config=video_folder.VideoFolder.make_config(
          teacher='files', short_side=_SHORT_SIDE, mask_size=_MASK_SIZE),
      data_dir=str(tmp_path / 'tfds'), manual_dir=str(root), num_workers=2)
  builder.download_and_prepare()

  kept = {example['video_id'].decode()
          for split in ('train', 'test')
          for example in tfds.as_numpy(builder.as_dataset(split=split))}
  assert kept == good  # Every good video, and nothing else.
  with open(os.path.join(builder.data_dir,
                         video_dataset_builder.REPORT_FILENAME)) as f:
    report = json.load(f)
  reasons = {b['path']: b['reason'] for b in report['bad_inputs']}
  missing = {kind for path, kind in bad.items() if path not in reasons}
  assert sorted(reasons) == sorted(bad), missing  # Every bad one, named.
  for path, kind in bad.items():
    assert re.search(_BAD_KINDS[kind], reasons[path]), (kind, reasons[path])


def _without_permission_override() -> None:
  """In the child before exec: drop CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
  from the bounding set, so that even root obeys the permission bits (the
  tests run as root, which reads a mode-000 file anyway)."""
  libc = ctypes.CDLL(None, use_errno=True)
  pr_capbset_drop, cap_dac_override, cap_dac_read_search = 24, 1, 2
  for capability in (cap_dac_override, cap_dac_read_search):
    if libc.prctl(pr_capbset_drop, capability, 0, 0, 0):
      raise OSError(ctypes.get_errno(), 'prctl(PR_CAPBSET_DROP)')


@pytest.mark.slow
def test_unreadable_videos_masks_and_folders_are_named(tmp_path):
  root = tmp_path / 'videos'
  for split in ('train', 'test'):
    for label, name in enumerate(_CLASSES[:2]):
      os.makedirs(root / split / name)
      for k in range(2):
        _write_good_video(str(root / split / name / f'{k}.mp4'), label, 6)
  os.makedirs(root / 'train' / 'wave')
  _write_good_video(str(root / 'train' / 'wave' / '0.mp4'), 2, 6)
  with open(root / 'classes.txt', 'w') as f:
    f.write('\n'.join(_MASK_CLASSES) + '\n')
  unreadable = {  # Made mode 000: (the entry reported for it, the reason).
      str(root / 'train' / 'jump' / '1.mp4'): (
          str(root / 'train' / 'jump' / '1.mp4'),
          r'^not a readable video \(Permission denied\)$'),
      str(root / 'train' / 'run' / '1.masks.npz'): (
          str(root / 'train' / 'run' / '1.mp4'),  # Reported by its video.
          r'^teacher: .*1\.masks\.npz: not a readable \.npz file .*'
          r'Permission denied'),
      str(root / 'train' / 'wave'): (
          str(root / 'train' / 'wave'),
          r'^unreadable class folder \(Permission denied\)$'),
  }
  for path in unreadable:
    os.chmod(path, 0)
  build = textwrap.dedent(f"""
      import json, os
      from airstreams_jax.data import video_dataset_builder, video_folder
      builder = video_folder.VideoFolder(
          config=video_folder.VideoFolder.make_config(
              teacher='files', short_side={_SHORT_SIDE},
              mask_size={_MASK_SIZE}),
          data_dir={str(tmp_path / 'tfds')!r}, manual_dir={str(root)!r},
          num_workers=2)
      builder.download_and_prepare()
      kept = sorted(
          example['video_id'].decode() for split in ('train', 'test')
          for example in builder.as_dataset(split=split).as_numpy_iterator())
      with open(os.path.join(builder.data_dir,
                             video_dataset_builder.REPORT_FILENAME)) as f:
        print(json.dumps(dict(kept=kept, bad=json.load(f)['bad_inputs'])))
      """)
  try:
    proc = subprocess.run(
        [sys.executable, '-c', build], cwd=_REPO, capture_output=True,
        text=True, timeout=600, check=False,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'),
        preexec_fn=_without_permission_override if os.geteuid() == 0 else None)
  except subprocess.SubprocessError as e:  # prctl refused: no CAP_SETPCAP.
    pytest.skip(f'cannot drop the permission override as root: {e}')
  finally:
    for path in unreadable:  # So that pytest can remove them.
      os.chmod(path, 0o755)
  assert proc.returncode == 0, proc.stderr[-3000:]
  result = json.loads(proc.stdout.strip().splitlines()[-1])
  reasons = {b['path']: b['reason'] for b in result['bad']}
  assert sorted(reasons) == sorted(entry for entry, _ in unreadable.values())
  for entry, reason in unreadable.values():
    assert re.search(reason, reasons[entry]), (entry, reasons[entry])
  assert result['kept'] == sorted(  # Every readable video, only those.
      f'{name}/{k}.mp4' for split in ('train', 'test') for name in _CLASSES[:2]
      for k in range(2)
      if (split, name, k) not in {('train', 'jump', 1), ('train', 'run', 1)})
