"""Export's one-line errors, and the flow pyramid through both formats. The
round trip of a trained run (SavedModel and TFLite against the JAX logits
and predict's scores) runs in tests/test_train.py's end-to-end test, on its
trained smoke run."""

import functools
import json
import os
import subprocess
import sys

from ai_edge_litert import interpreter
import jax
import jax.numpy as jnp
from flax import traverse_util
import numpy as np
import pytest
import tensorflow as tf

from airstreams_jax import errors
from airstreams_jax import export
from airstreams_jax.models import airstreams
from airstreams_jax.training import trained_run
from configs import synthetic

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


def _untrained_run(**flow) -> trained_run.TrainedRun:
  """The smoke config's model with `flow` options, initialised (not
  trained): what export reads of a run, without a training run's cost."""
  config = synthetic.get_config('smoke')
  config.model.flow.update(**flow)
  classes = {'class_names': ['a', 'b', 'c'], 'multi_label': False}
  model = airstreams.build_model(config.model, num_classes=3,
                                 num_seg_classes=4)
  d = config.dataset
  clip = jnp.zeros((1, d.num_frames, d.image_size, d.image_size, 3),
                   jnp.uint8)
  variables = jax.jit(functools.partial(model.init, train=False))(
      jax.random.PRNGKey(0), clip)
  # The zero-initialised batch-norm scales (the last of each residual
  # branch) set to one: at zero they would hide from the logits most of what
  # the flow stream computes.
  params = traverse_util.flatten_dict(variables['params'])
  params = {k: jnp.ones_like(v) if k[-1] == 'scale' and not v.any() else v
            for k, v in params.items()}
  variables = {**variables, 'params': traverse_util.unflatten_dict(params)}
  return trained_run.TrainedRun(config, classes, model, 0, variables)


@pytest.mark.slow  # Converts a whole model twice: 78 s of CPU, 229 s at load 8.
def test_export_runs_the_flow_pyramid(tmp_path):
  """The coarse-to-fine flow (2 levels x 2 warps, bicubic warping: gathers
  and resize matrices) converts to a SavedModel and to TFLite and gives the
  JAX logits; the single-scale layer on the same parameters does not, so
  the agreement is the pyramid's."""
  run = _untrained_run(pyramid_levels=2, warps=2, scale_step=0.5)
  d = run.config.dataset
  clips = np.random.default_rng(0).integers(
      0, 256, (2, d.num_frames, d.image_size, d.image_size, 3), np.uint8)

  def logits(model):
    return np.asarray(jax.jit(lambda v, x: model.apply(
        v, x, train=False, stream_heads=False)['logits']['merged'])(
            run.variables, clips))
  expected = logits(run.model)
  single = logits(_untrained_run().model)
  assert np.abs(expected - single).max() > 1e-3  # The pyramid counts.

  saved = export.export_saved_model(run, str(tmp_path / 'model'), ('cpu',))
  serve = tf.saved_model.load(saved).signatures['serving_default']
  flat = export.export_tflite(run, str(tmp_path / 'model.tflite'))
  runner = interpreter.Interpreter(model_path=flat).get_signature_runner()
  for i in range(2):
    np.testing.assert_allclose(
        serve(clip=tf.constant(clips[i:i + 1]))['logits'].numpy()[0],
        expected[i], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(runner(clip=clips[i:i + 1])['logits'][0],
                               expected[i], rtol=1e-5, atol=1e-4)
