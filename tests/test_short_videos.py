"""Videos shorter than a clip are never padded silently: the dataset build
warns once per video and names each in its report (issue 31)."""

import json
import logging
import os

import numpy as np

from airstreams_jax.data import dataset_from_config
from airstreams_jax.data import video_windows
from configs import video_folder as video_folder_config
from test_video_io import write_video

# file -> stored frames (10 fps, every frame kept).
_VIDEOS = {'train/jump/short.mp4': 3, 'train/jump/long.mp4': 12,
           'train/run/edge.mp4': 7, 'test/jump/t.mp4': 9,
           'test/run/u.mp4': 5}
_NUM_FRAMES, _FRAME_STRIDE = 4, 2  # A clip spans 7 stored frames.


def _write_folder(root: str) -> None:
  for relative, num_frames in _VIDEOS.items():
    path = os.path.join(root, relative)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_video(path, num_frames)
    masks = np.zeros((num_frames, 18, 24), np.uint8)
    np.savez_compressed(os.path.splitext(path)[0] + '.masks.npz', masks=masks)
  with open(os.path.join(root, 'classes.txt'), 'w') as f:
    f.write('background\nperson\n')


def test_short_videos_are_warned_and_named_in_the_report(tmp_path, caplog):
  root = str(tmp_path / 'folder')
  _write_folder(root)
  config = video_folder_config.get_config('smoke')
  with config.unlocked():
    config.dataset.update(dict(
        manual_dir=root, data_dir=str(tmp_path / 'tfds'), teacher='files',
        short_side=24, mask_size=12, build_workers=1,
        num_frames=_NUM_FRAMES, frame_stride=_FRAME_STRIDE))
  builder = dataset_from_config.make_builder(config.dataset)
  # absl's logger too: a TFLite conversion earlier in the process (the
  # teacher tests, export) leaves it at WARNING.
  with caplog.at_level(logging.INFO), caplog.at_level(logging.INFO,
                                                      logger='absl'):
    dataset_from_config.prepare(builder)
  expected = {relative: video_windows.repeated_frames(
      n, _NUM_FRAMES, _FRAME_STRIDE) for relative, n in _VIDEOS.items()}
  expected = {k: v for k, v in expected.items() if v}
  assert expected == {'train/jump/short.mp4': 2, 'test/run/u.mp4': 1}
  with open(os.path.join(builder.data_dir, 'bad_inputs.json')) as f:
    report = json.load(f)
  assert report['clip'] == {'num_frames': 4, 'frame_stride': 2}
  assert report['num_short_videos'] == 2
  assert {os.path.relpath(v['path'], root): v['repeated']
          for v in report['short_videos']} == expected
  assert builder.info.metadata['num_short_videos'] == 2
  warnings = [r.getMessage() for r in caplog.records
              if 'shorter than a clip of 4 frames' in r.getMessage()]
  assert len(warnings) == 2 and any(
      'short.mp4: 3 stored frames' in w and '2 of its frames repeat' in w
      for w in warnings), warnings
  assert any('train: 3 videos, 0 skipped, 1 shorter than a clip' in
             r.getMessage() for r in caplog.records)
