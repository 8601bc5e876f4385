"""HMDB51, Charades, Toyota Smarthome and Moments in Time on tiny fake copies.

The copies (tests/fake_datasets.py) have the real layouts, file names and
split/annotation formats. The listing tests check counts, labels, intervals
and the errors for malformed or missing files; the build tests turn each copy
into a tfds dataset with the `files` teacher and read it back.
"""

import json
import os
import shutil

import numpy as np
import pytest
import tensorflow_datasets as tfds

from airstreams_jax import errors
from airstreams_jax.data import charades
from airstreams_jax.data import hmdb51
from airstreams_jax.data import moments_in_time
from airstreams_jax.data import toyota_smarthome
from airstreams_jax.data import video_dataset_builder
from airstreams_jax.data.video_entries import ActionInterval

import fake_datasets


@pytest.fixture(scope='module')
def copies(tmp_path_factory):
  """One fake copy of each dataset, with `files` teacher masks."""
  root = tmp_path_factory.mktemp('real_datasets')
  return {
      'hmdb51': fake_datasets.make_hmdb51(str(root / 'hmdb51'), masks=True),
      'charades': fake_datasets.make_charades(str(root / 'charades'),
                                              masks=True),
      'toyota_smarthome': fake_datasets.make_toyota_smarthome(
          str(root / 'toyota'), masks=True),
      'moments_in_time': fake_datasets.make_moments_in_time(
          str(root / 'mit'), masks=True),
  }


@pytest.fixture
def copy_of(copies, tmp_path):
  """A fresh, modifiable copy of one fake dataset."""
  def make(name):
    target = str(tmp_path / name)
    shutil.copytree(copies[name], target)
    return target
  return make


def _raises(fn, *args, match):
  """Calls fn(*args), which must raise a one-line ConfigError matching."""
  with pytest.raises(errors.ConfigError, match=match) as info:
    fn(*args)
  assert '\n' not in str(info.value)
  return str(info.value)


def _ids(entries):
  return [e.video_id for e in entries]


# HMDB51.


@pytest.mark.parametrize('split, test_video', [
    (1, 'Prelinger_HabitPat1954'), (2, 'THE_PROTECTOR'), (3, 'April_09')])
def test_hmdb51_official_splits(copies, split, test_video):
  listing = hmdb51.list_videos(copies['hmdb51'], split)
  class_names, splits = listing.class_names, listing.splits
  assert not listing.bad_inputs
  assert class_names == ('brush_hair', 'cartwheel', 'climb_stairs')
  assert sorted(splits) == ['test', 'train']
  assert len(splits['train']) == 6 and len(splits['test']) == 3
  assert [e.label for e in splits['test']] == [0, 1, 2]
  assert [e.label for e in splits['train']] == [0, 0, 1, 1, 2, 2]
  # Each class's test video is the one with id 2 in this split's file.
  for entry, class_name in zip(splits['test'], class_names):
    assert entry.video_id.startswith(f'{class_name}/{test_video}_')
    assert entry.path == os.path.join(
        copies['hmdb51'], class_name, entry.video_id.split('/')[1] + '.avi')
    assert os.path.isfile(entry.path)
  # Train and test never share a video; the unused one (id 0) is in neither.
  train_ids = set(_ids(splits['train']))
  assert not train_ids & set(_ids(splits['test']))
  assert len(train_ids) == 6


def test_hmdb51_split_file_whitespace(copy_of):
  """Trailing spaces, tabs, CRLF and blank lines lose no video."""
  root = copy_of('hmdb51')
  path = os.path.join(root, hmdb51.SPLIT_DIR, 'cartwheel_test_split1.txt')
  videos = fake_datasets.HMDB_VIDEOS['cartwheel']
  with open(path, 'w', newline='') as f:
    f.write(f'{videos[0]} 1  \r\n\r\n  {videos[1]}\t1\t\r\n'
            f'{videos[2]} 2\n\n{videos[3]} 0')  # No final newline.
  splits = hmdb51.list_videos(root, 1).splits
  assert len(splits['train']) == 6 and len(splits['test']) == 3


def test_hmdb51_read_split_file_keeps_spaces_in_names(tmp_path):
  path = tmp_path / 'x_test_split1.txt'
  path.write_text('a video (1).avi 1 \nb.avi 2 \n\nc.avi 0\n')
  assert hmdb51.read_split_file(str(path)) == [
      ('a video (1).avi', '1'), ('b.avi', '2'), ('c.avi', '0')]


@pytest.mark.parametrize('bad_line', ['broken_video.avi', 'video.avi 3',
                                      'video.avi one'])
def test_hmdb51_malformed_line_names_file_and_line(copy_of, bad_line):
  root = copy_of('hmdb51')
  path = os.path.join(root, hmdb51.SPLIT_DIR, 'climb_stairs_test_split2.txt')
  with open(path, 'a') as f:
    f.write(bad_line + '\n')
  message = _raises(hmdb51.list_videos, root, 2, match='expected')
  assert f'{path}:5' in message and repr(bad_line) in message


def test_hmdb51_repeated_video_is_an_error(copy_of):
  root = copy_of('hmdb51')
  path = os.path.join(root, hmdb51.SPLIT_DIR, 'brush_hair_test_split3.txt')
  with open(path, 'a') as f:
    f.write(fake_datasets.HMDB_VIDEOS['brush_hair'][1] + ' 2 \n')
  _raises(hmdb51.list_videos, root, 3, match=f'{path}:5: .* line 2')


def test_hmdb51_missing_files(copy_of, tmp_path):
  root = copy_of('hmdb51')
  _raises(hmdb51.list_videos, root, 4, match='split must be 1, 2 or 3')
  _raises(hmdb51.list_videos, str(tmp_path / 'nowhere'), 1,
          match='not a directory')
  shutil.rmtree(os.path.join(root, 'cartwheel'))
  message = _raises(hmdb51.list_videos, root, 1,
                    match='class folder.* missing: cartwheel')
  assert 'testTrainMulti_7030_splits' in message and hmdb51.URL in message
  shutil.rmtree(os.path.join(root, hmdb51.SPLIT_DIR))
  _raises(hmdb51.list_videos, root, 1, match='no split folder')


def test_hmdb51_missing_videos(copy_of):
  """Missing videos go to the builder's report; none on disk is an error."""
  root = copy_of('hmdb51')
  train = hmdb51.list_videos(root, 1).splits['train']
  os.remove(train[0].path)
  listing = hmdb51.list_videos(root, 1)
  assert listing.splits['train'] == train[1:]
  split_file = os.path.join(root, hmdb51.SPLIT_DIR,
                            'brush_hair_test_split1.txt')
  assert [(b.path, b.reason, b.split) for b in listing.bad_inputs] == [
      (train[0].path, f'listed in {split_file} but not on disk', 'train')]
  for class_name in fake_datasets.HMDB_CLASSES:
    for name in os.listdir(os.path.join(root, class_name)):
      os.remove(os.path.join(root, class_name, name))
  _raises(hmdb51.list_videos, root, 1,
          match='split 1 lists no train video on disk .6 listed')


# Charades.


def test_charades_listing(copies):
  listing = charades.list_videos(copies['charades'])
  class_names, splits = listing.class_names, listing.splits
  assert not listing.bad_inputs
  assert class_names == tuple(n for _, n in fake_datasets.CHARADES_CLASSES)
  # Train leaves out 0IH69 (no action); test keeps TQ5Q6 (no action).
  assert _ids(splits['train']) == ['46GP8', 'N11GT', 'KRF68']
  assert _ids(splits['test']) == ['YSKX3', 'TQ5Q6', 'ZS9XR']
  first = splits['train'][0]
  assert first.path == os.path.join(copies['charades'], 'Charades_v1_480',
                                    '46GP8.mp4')
  assert first.label == -1
  assert first.intervals == (ActionInterval(1, 0.0, 1.0),
                             ActionInterval(3, 0.5, 2.0))
  assert splits['test'][1].intervals == ()
  assert splits['test'][2].intervals == (ActionInterval(3, 1.2, 1.9),
                                         ActionInterval(1, 0.0, 0.6))


def test_charades_alternative_layout(copy_of):
  """Annotations directly in manual_dir and videos in Charades_v1/."""
  root = copy_of('charades')
  for name in os.listdir(os.path.join(root, 'Charades')):
    shutil.move(os.path.join(root, 'Charades', name), root)
  os.rename(os.path.join(root, 'Charades_v1_480'),
            os.path.join(root, 'Charades_v1'))
  splits = charades.list_videos(root).splits
  assert splits['test'][0].path == os.path.join(root, 'Charades_v1',
                                                'YSKX3.mp4')


def test_charades_missing_files(copy_of):
  root = copy_of('charades')
  shutil.rmtree(os.path.join(root, 'Charades_v1_480'))
  _raises(charades.list_videos, root, match='no video folder')
  os.remove(os.path.join(root, 'Charades', 'Charades_v1_test.csv'))
  message = _raises(charades.list_videos, root,
                    match='missing: Charades_v1_test.csv')
  assert charades.URL in message and 'Charades_v1_480.zip' in message


@pytest.mark.parametrize('actions, match', [
    ('c001 0.00', 'is not "c<NNN> <start> <end>"'),
    ('c001 zero 1.0', 'is not "c<NNN> <start> <end>"'),
    ('c157 0.00 1.00', 'class c157 is not in'),
])
def test_charades_bad_action_names_file_and_line(copy_of, actions, match):
  root = copy_of('charades')
  path = os.path.join(root, 'Charades', 'Charades_v1_test.csv')
  with open(path, 'a') as f:
    f.write(f'XXXXX,HR1,Hallway,5,5,Yes,"a script",,,{actions},2.0\n')
  message = _raises(charades.list_videos, root, match=match)
  assert f'{path}:5' in message


def test_charades_bad_classes_and_columns(copy_of):
  root = copy_of('charades')
  classes = os.path.join(root, 'Charades', 'Charades_v1_classes.txt')
  with open(classes, 'a') as f:
    f.write('Holding a phone\n')
  _raises(charades.list_videos, root, match=f'{classes}:6: expected')
  fake_datasets.make_charades(root)  # Rewrites the good files.
  train = os.path.join(root, 'Charades', 'Charades_v1_train.csv')
  with open(train) as f:
    text = f.read()
  with open(train, 'w') as f:
    f.write(text.replace('actions', 'action', 1))
  _raises(charades.list_videos, root, match='no column actions')


# Toyota Smarthome.


def test_toyota_cross_subject(copies):
  listing = toyota_smarthome.list_videos(copies['toyota_smarthome'])
  class_names, splits = listing.class_names, listing.splits
  assert class_names == ('Cook.Cleandishes', 'Drink.Fromcup', 'Walk')
  assert _ids(splits['train']) == [
      'Cook.Cleandishes_p03_r00_v14_c03', 'Drink.Fromcup_p25_r02_v01_c01',
      'Walk_p03_r01_v05_c07', 'Walk_p25_r03_v11_c02']
  assert [e.label for e in splits['train']] == [0, 1, 2, 2]
  assert _ids(splits['test']) == [
      'Cook.Cleandishes_p02_r00_v02_c03', 'Drink.Fromcup_p10_r05_v07_c04',
      'Walk_p10_r00_v03_c06']
  assert [e.label for e in splits['test']] == [0, 1, 2]
  assert splits['test'][0].path == os.path.join(
      copies['toyota_smarthome'], 'mp4',
      'Cook.Cleandishes_p02_r00_v02_c03.mp4')


def test_toyota_parse_name():
  assert toyota_smarthome.parse_name(
      'Cook.Cleandishes_p02_r00_v02_c03.mp4') == ('Cook.Cleandishes', 2)
  assert toyota_smarthome.parse_name('WatchTV_p25_r12_v01_c07.mp4') == (
      'WatchTV', 25)
  _raises(toyota_smarthome.parse_name, 'Walk_03_r01.mp4',
          match="cannot parse the video name 'Walk_03_r01.mp4'")


def test_toyota_errors(copy_of, tmp_path):
  root = copy_of('toyota_smarthome')
  shutil.copy(os.path.join(root, 'mp4', fake_datasets.TOYOTA_VIDEOS[0]),
              os.path.join(root, 'mp4', 'Walk copy.mp4'))
  _raises(toyota_smarthome.list_videos, root, match="'Walk copy.mp4'")
  for name in os.listdir(os.path.join(root, 'mp4')):
    if '_p03_' in name or '_p25_' in name or 'copy' in name:
      os.remove(os.path.join(root, 'mp4', name))
  _raises(toyota_smarthome.list_videos, root, match='no train video')
  message = _raises(toyota_smarthome.list_videos, str(tmp_path),
                    match='no folder')
  assert '<Activity>_p<SS>_r<RR>_v<VV>_c<CC>.mp4' in message
  assert toyota_smarthome.URL in message


# Moments in Time.


def test_moments_in_time_listing(copies):
  for manual_dir in (copies['moments_in_time'],
                     os.path.join(copies['moments_in_time'],
                                  'Moments_in_Time_Raw')):
    listing = moments_in_time.list_videos(manual_dir)
    class_names, splits = listing.class_names, listing.splits
    # Ordered by the categories file's index column.
    assert class_names == ('applauding', 'arresting', 'aiming')
    assert sorted(splits) == ['train', 'validation']
    assert [e.label for e in splits['train']] == [2, 2, 0, 1, 1]
    assert [e.label for e in splits['validation']] == [2, 0]
    assert splits['validation'][0].video_id == (
        'validation/aiming/yt-Gq1Q3cZ1b8w_27')
    assert splits['validation'][0].path == os.path.join(
        copies['moments_in_time'], 'Moments_in_Time_Raw', 'validation',
        'aiming', 'yt-Gq1Q3cZ1b8w_27.mp4')


def test_moments_in_time_errors(copy_of):
  root = copy_of('moments_in_time')
  base = os.path.join(root, 'Moments_in_Time_Raw')
  validation_csv = os.path.join(base, 'validationSet.csv')
  with open(validation_csv, 'a') as f:
    f.write('hugging/yt-abc_1.mp4,hugging,3,0\n')
  _raises(moments_in_time.list_videos, root,
          match=f"{validation_csv}:3: label 'hugging' is not in")
  with open(os.path.join(base, 'moments_categories.txt'), 'a') as f:
    f.write('hugging,4\n')  # Index 3 is missing.
  _raises(moments_in_time.list_videos, root, match='indices must be 0..N-1')
  shutil.rmtree(os.path.join(base, 'validation'))
  message = _raises(moments_in_time.list_videos, root,
                    match='missing in .*: validation/')
  assert moments_in_time.URL in message


def test_missing_videos_are_bad_inputs(copy_of):
  """Charades and MiT: a listed video not on disk is named, not built."""
  root = copy_of('charades')
  os.remove(os.path.join(root, 'Charades_v1_480', 'ZS9XR.mp4'))
  listing = charades.list_videos(root)
  assert _ids(listing.splits['test']) == ['YSKX3', 'TQ5Q6']
  assert [(os.path.basename(b.path), b.split) for b in listing.bad_inputs
          ] == [('ZS9XR.mp4', 'test')]
  for video_id in ('46GP8', 'N11GT', 'KRF68'):
    os.remove(os.path.join(root, 'Charades_v1_480', video_id + '.mp4'))
  _raises(charades.list_videos, root,
          match='none of the 3 train videos listed in Charades_v1_train.csv')

  root = copy_of('moments_in_time')
  validation = os.path.join(root, 'Moments_in_Time_Raw', 'validation')
  os.remove(os.path.join(validation, 'aiming', 'yt-Gq1Q3cZ1b8w_27.mp4'))
  listing = moments_in_time.list_videos(root)
  assert len(listing.splits['validation']) == 1
  assert [b.reason for b in listing.bad_inputs] == [
      'listed in ' + os.path.join(root, 'Moments_in_Time_Raw',
                                  'validationSet.csv') + ' but not on disk']


# Builds: each fake copy becomes a tfds dataset with the `files` teacher.

_STORAGE = dict(teacher='files', short_side=32, mask_size=8)


def _build(builder_cls, manual_dir, data_dir, **options):
  builder = builder_cls(config=builder_cls.make_config(**_STORAGE, **options),
                        data_dir=data_dir, manual_dir=manual_dir,
                        num_workers=1)
  builder.download_and_prepare()
  with open(os.path.join(builder.data_dir,
                         video_dataset_builder.REPORT_FILENAME)) as f:
    assert json.load(f)['num_bad_inputs'] == 0
  examples = {
      split: {ex['video_id'].decode(): ex
              for ex in tfds.as_numpy(builder.as_dataset(split=split))}
      for split in builder.info.splits}
  return builder, examples


def _check_video(example):
  video, masks = example['video'], example['masks']
  assert video.shape == (fake_datasets.NUM_FRAMES, 32, 48, 3)
  assert masks.shape == (fake_datasets.NUM_FRAMES, 8, 12)
  # The `files` teacher's masks: the bar's columns t, t + 1 are 'person'.
  for t in range(fake_datasets.NUM_FRAMES):
    assert np.array_equal(np.flatnonzero(masks[t].max(0)), [t, t + 1])


def test_build_hmdb51(copies, tmp_path):
  builder, examples = _build(hmdb51.Hmdb51, copies['hmdb51'], str(tmp_path),
                             split=2)
  assert builder.builder_config.name == 'split2_files_s32_fpsall_maxall_m8'
  assert builder.info.features['label'].names == list(
      fake_datasets.HMDB_CLASSES)
  assert builder.info.metadata['mask_class_names'] == ['background', 'person']
  assert {s: len(e) for s, e in examples.items()} == {'train': 6, 'test': 3}
  for video_id, example in examples['test'].items():
    assert video_id.split('/')[1].startswith('THE_PROTECTOR_')
    assert example['label'] == fake_datasets.HMDB_CLASSES.index(
        video_id.split('/')[0])
    _check_video(example)


def test_build_charades(copies, tmp_path):
  builder, examples = _build(charades.Charades, copies['charades'],
                             str(tmp_path))
  assert 'label' not in builder.info.features
  assert builder.info.metadata['multi_label']
  assert builder.info.metadata['class_names'] == [
      n for _, n in fake_datasets.CHARADES_CLASSES]
  assert sorted(examples['train']) == ['46GP8', 'KRF68', 'N11GT']
  assert sorted(examples['test']) == ['TQ5Q6', 'YSKX3', 'ZS9XR']
  # Frames at 4 fps: t = 0, 0.25, ..., 1.75 s. 46GP8 has c001 over
  # [0, 1] s (frames 0-4) and c003 over [0.5, 2] s (frames 2-7).
  labels = examples['train']['46GP8']['frame_labels']
  expected = np.zeros((8, 5), np.uint8)
  expected[0:5, 1] = 1
  expected[2:8, 3] = 1
  np.testing.assert_array_equal(labels, expected)
  assert not examples['test']['TQ5Q6']['frame_labels'].any()
  _check_video(examples['test']['TQ5Q6'])


def test_build_toyota_smarthome(copies, tmp_path):
  builder, examples = _build(toyota_smarthome.ToyotaSmarthome,
                             copies['toyota_smarthome'], str(tmp_path))
  assert builder.builder_config.name.startswith('cross_subject_files_')
  assert builder.info.features['label'].names == [
      'Cook.Cleandishes', 'Drink.Fromcup', 'Walk']
  assert {v: e['label'] for v, e in examples['test'].items()} == {
      'Cook.Cleandishes_p02_r00_v02_c03': 0,
      'Drink.Fromcup_p10_r05_v07_c04': 1, 'Walk_p10_r00_v03_c06': 2}
  assert len(examples['train']) == 4
  _check_video(examples['train']['Walk_p25_r03_v11_c02'])


def test_build_moments_in_time(copies, tmp_path):
  builder, examples = _build(moments_in_time.MomentsInTime,
                             copies['moments_in_time'], str(tmp_path))
  assert builder.info.features['label'].names == [
      'applauding', 'arresting', 'aiming']
  assert {v: e['label'] for v, e in examples['validation'].items()} == {
      'validation/aiming/yt-Gq1Q3cZ1b8w_27': 2,
      'validation/applauding/yt-1hX3sHkaa7E_95': 0}
  assert len(examples['train']) == 5
  _check_video(examples['train']['training/arresting/yt-8RJeMhyqXz4_12'])


def test_build_reports_missing_and_corrupt_videos(copy_of, tmp_path):
  """Listed-but-missing and undecodable videos are named, the rest built."""
  root = copy_of('hmdb51')
  train = hmdb51.list_videos(root, 1).splits['train']
  os.remove(train[0].path)
  with open(train[1].path, 'r+b') as f:  # Truncated: the header only.
    f.truncate(200)
  builder = hmdb51.Hmdb51(
      config=hmdb51.Hmdb51.make_config(**_STORAGE, split=1),
      data_dir=str(tmp_path / 'tfds'), manual_dir=root, num_workers=1)
  builder.download_and_prepare()
  assert builder.info.splits['train'].num_examples == 4
  assert builder.info.splits['test'].num_examples == 3
  with open(os.path.join(builder.data_dir,
                         video_dataset_builder.REPORT_FILENAME)) as f:
    report = json.load(f)
  assert report['num_bad_inputs'] == 2
  bad = {b['path']: b for b in report['bad_inputs']}
  assert sorted(bad) == sorted([train[0].path, train[1].path])
  assert 'not on disk' in bad[train[0].path]['reason']
  assert bad[train[1].path]['split'] == 'train'


def test_builder_configs():
  """The split / protocol are config options and lead the config name."""
  assert [c.name for c in hmdb51.Hmdb51.BUILDER_CONFIGS] == [
      f'split{s}_selfie_s128_fpsall_maxall_m64' for s in (1, 2, 3)]
  config = hmdb51.Hmdb51.make_config(split=3)
  assert config is hmdb51.Hmdb51.BUILDER_CONFIGS[2]
  with pytest.raises(ValueError, match='split must be 1, 2 or 3, got 4'):
    hmdb51.Hmdb51.make_config(split=4)
  assert toyota_smarthome.ToyotaSmarthome.make_config(
      teacher='files', fps=8).name == 'cross_subject_files_s128_fps8_maxall_m64'
  with pytest.raises(ValueError, match="got 'cross_view'"):
    toyota_smarthome.ToyotaSmarthome.make_config(protocol='cross_view')
  assert charades.Charades.MULTI_LABEL
  assert not moments_in_time.MomentsInTime.MULTI_LABEL
