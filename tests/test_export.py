"""Export's one-line errors. The round trip (SavedModel and TFLite against
the JAX logits and predict's scores) runs in tests/test_train.py's
end-to-end test, on its trained smoke run."""

import json
import os
import subprocess
import sys

import pytest

from airstreams_jax import errors
from airstreams_jax import export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def run_without_checkpoint(tmp_path):
  workdir = tmp_path / 'run'
  workdir.mkdir()
  (workdir / 'config.json').write_text(json.dumps({}))
  (workdir / 'classes.json').write_text(json.dumps({}))
  return str(workdir)


@pytest.mark.parametrize('fmt,workdir,out,message', [
    ('onnx', 'RUN', 'OUT/m', "--format='onnx' is unknown; use one of "
                               'saved_model, tflite.'),
    ('saved_model', 'OUT/missing', 'OUT/m', 'missing does not exist'),
    ('tflite', 'RUN', 'OUT/no/such/dir/m.tflite', 'does not exist; create'),
    ('saved_model', 'RUN', 'OUT/m', 'has no checkpoints/ folder'),
])
def test_errors_name_the_problem(run_without_checkpoint, tmp_path, fmt,
                                 workdir, out, message):
  workdir = workdir.replace('RUN', run_without_checkpoint).replace(
      'OUT', str(tmp_path))
  out = out.replace('OUT', str(tmp_path))
  with pytest.raises(errors.ConfigError, match=message.replace(
      '(', r'\(').replace(')', r'\)')):
    export.export(workdir, out, fmt)
  assert not os.path.exists(out)


@pytest.mark.slow
def test_cli_error_is_one_line(run_without_checkpoint, tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'airstreams_jax.export',
       f'--workdir={run_without_checkpoint}', f'--out={tmp_path / "m"}',
       '--format=onnx'],
      capture_output=True, text=True, cwd=ROOT, check=False)
  assert proc.returncode == 1
  assert proc.stderr.strip() == (  # The only line.
      "error: --format='onnx' is unknown; use one of saved_model, tflite.")


def test_load_classes_of_something_else(tmp_path):
  with pytest.raises(errors.ConfigError, match='written by airstreams_jax'):
    export.load_classes(str(tmp_path))
