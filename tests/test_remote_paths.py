"""The package's own reads and writes of user paths work on a file system
that is not this machine's: TensorFlow's in-memory ram://, reached through
gfile as gs:// is (no GCS emulator can stand in: docs/clusters.md says why).

A video folder listed and decoded, a loss-weights file read, the build lock
skipped with its reason, and a gs:// workdir's checkpoint directory kept on
gs://. tfds and Orbax refuse ram:// themselves (tfds knows only gs, s3, az
and hf URIs; Orbax only absolute local or gs:// paths), so a whole `main`
run on a non-local data_dir and workdir is not run here.
"""

import json
import os

import numpy as np
import pytest
from absl import logging
from tensorflow.io import gfile

from airstreams_jax.data import dataset_from_config
from airstreams_jax.data import video_folder
from airstreams_jax.data import video_io
from airstreams_jax.tools import video_files
from airstreams_jax.training import checkpointing
from airstreams_jax.training import losses


def _upload(local: str, remote: str) -> None:
  gfile.makedirs(os.path.dirname(remote))
  gfile.copy(local, remote, overwrite=True)


def test_a_remote_video_folder_is_listed_and_decoded(tmp_path):
  root = 'ram://test_remote_paths/videos'
  local = str(tmp_path / 'clip.mp4')
  # Frame k is grey level 20k: the decoded frames say which they are.
  video = np.repeat(np.arange(6, dtype=np.uint8)[:, None, None, None] * 20,
                    32 * 32 * 3).reshape(6, 32, 32, 3)
  video_files.write_mp4(local, video, fps=6)
  for split, name in (('train', 'jump/a.mp4'), ('train', 'run/b.mp4'),
                      ('test', 'jump/c.mp4')):
    _upload(local, f'{root}/{split}/{name}')
  gfile.makedirs(f'{root}/train/run/notes.mp4')  # A folder named like one.
  listing = video_folder.list_videos(root)
  assert listing.class_names == ['jump', 'run']
  assert [e.path for e in listing.splits['train']] == [
      f'{root}/train/jump/a.mp4', f'{root}/train/run/b.mp4']
  assert [(b.path, b.reason) for b in listing.bad_inputs] == [
      (f'{root}/train/run/notes.mp4', 'a directory named like a video')]
  decoded = video_io.decode(f'{root}/train/run/b.mp4')
  assert len(decoded.frames) == 6
  assert np.abs(decoded.frames.mean(axis=(1, 2, 3)) -
                np.arange(6) * 20).max() < 4
  with pytest.raises(video_io.VideoDecodeError, match='file not found'):
    video_io.decode(f'{root}/train/run/missing.mp4')


def test_a_remote_loss_weights_file_is_read():
  path = 'ram://test_remote_paths/best_weights.json'
  weights = dict(zip(losses.LOSS_NAMES, (1., .5, .25, .125, 2.)))
  with gfile.GFile(path, 'w') as f:
    json.dump(weights, f)
  np.testing.assert_array_equal(
      losses.loss_weights_vector({}, path), [1., .5, .25, .125, 2.])


def test_a_remote_data_dir_is_built_without_the_local_lock(tmp_path,
                                                           monkeypatch):
  monkeypatch.chdir(tmp_path)  # Where a mistaken local lock would land.
  logged = []
  monkeypatch.setattr(logging, 'info',
                      lambda message, *args: logged.append(message % args))
  with dataset_from_config.build_lock('gs://bucket/tfds/synthetic/1.0.0'):
    pass
  assert logged == [
      'Not locking the build of gs://bucket/tfds/synthetic/1.0.0: a remote '
      'data_dir has no shared lock; build it once before parallel runs use '
      'it.']
  assert not os.listdir(tmp_path)


def test_a_remote_workdir_keeps_its_checkpoints_remote(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  # os.path.abspath made this <cwd>/gs:/bucket/run/checkpoints.
  assert checkpointing._directory('gs://bucket/run') == (  # pylint: disable=protected-access
      'gs://bucket/run/checkpoints')
  assert checkpointing._directory('run') == str(tmp_path / 'run' /  # pylint: disable=protected-access
                                                'checkpoints')
