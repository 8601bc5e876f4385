r"""Exports a trained run's RGB-only model for deployment.

  python -m airstreams_jax.export --workdir=workdirs/synthetic \
      --out=exported/synthetic [--format=saved_model|tflite]

What is exported is inference as the paper defines it: RGB in, the merged
head's prediction out; the flow layer and the segmentation net run inside
the network, the single-stream heads are pruned. The model goes through
jax2tf (StableHLO inside an XlaCallModule op), its parameters as variables.

saved_model: a TensorFlow SavedModel directory at --out with
  serving_default(clip)   uint8 [1, T, S, S, 3] (the run's
                          `dataset.num_frames` x `image_size`) -> 'logits'
                          and 'probabilities' [1, C], 'class_names' [C].
  classify_video(frames)  uint8 [N, H, W, 3], a whole decoded video at the
                          dataset's frame rate, frame limit and short side
                          (`fps`, `max_frames`, `short_side` in
                          assets/classes.json; what `predict.decode_frames`
                          gives) -> 'probabilities' [C] and
                          'class_names': the run's evaluation views
                          (`eval_clips` x `eval_crops`, the same TensorFlow
                          preprocessing as evaluation) averaged, as
                          `python -m airstreams_jax.predict` does.
  assets/classes.json     the run's class names.
  The XLA module is lowered for CPU, CUDA and TPU.
tflite: a TFLite flatbuffer at --out (the clip signature, CPU), with
  `<out>.classes.json` beside it; runs with ai-edge-litert's Interpreter.
"""

if __name__ == '__main__':
  # Before any other import: see cli.start.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.start()

import json
import os
import shutil
import tempfile
from typing import Any, Dict, Sequence

from absl import flags
from absl import logging
import jax
import numpy as np
import tensorflow as tf
from tensorflow.io import gfile

from airstreams_jax import atomic_write
from airstreams_jax import cli
from airstreams_jax import errors
from airstreams_jax import user_paths
from airstreams_jax.data import pipeline
from airstreams_jax.training import trained_run

FORMATS = ('saved_model', 'tflite')
SAVED_MODEL_PLATFORMS = ('cpu', 'cuda', 'tpu')
CLASSES_ASSET = 'classes.json'


def _merged_logits(run: trained_run.TrainedRun):
  """JAX function (params, batch_stats, clips uint8 [B, T, S, S, 3]) ->
  merged-head logits [B, C]: the pruned RGB-only network."""
  def fn(params, batch_stats, clips):
    outputs = run.model.apply({'params': params, 'batch_stats': batch_stats},
                              clips, train=False, stream_heads=False)
    return outputs['logits']['merged']
  return fn


class ExportedModel(tf.Module):
  """The tf.Module that is saved: variables, the converted network and the
  two signatures."""

  def __init__(self, run: trained_run.TrainedRun,
               platforms: Sequence[str], any_batch: bool = True):
    super().__init__()
    host = jax.tree.map(np.asarray, run.variables)
    self.params = tf.nest.map_structure(
        lambda a: tf.Variable(a, trainable=False), host['params'])
    self.batch_stats = tf.nest.map_structure(
        lambda a: tf.Variable(a, trainable=False), host['batch_stats'])
    self.logits_fn = jax2tf_convert(_merged_logits(run), platforms,
                                    any_batch)
    self.dataset_config = run.config.dataset
    self.class_names = tf.constant(run.classes['class_names'])
    self.multi_label = bool(run.classes['multi_label'])
    d = run.config.dataset
    clip = tf.TensorSpec([1, d.num_frames, d.image_size, d.image_size, 3],
                         tf.uint8, name='clip')
    self.serve = tf.function(self._serve, input_signature=[clip],
                             autograph=False)
    self.classify_video = tf.function(
        self._classify_video, autograph=False,
        input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8,
                                       name='frames')])

  def _scores(self, logits):
    return tf.sigmoid(logits) if self.multi_label else tf.nn.softmax(logits)

  def _serve(self, clip):
    logits = self.logits_fn(self.params, self.batch_stats, clip)
    return {'logits': logits, 'probabilities': self._scores(logits),
            'class_names': self.class_names}

  def _classify_video(self, frames):
    views = pipeline.preprocess_eval(
        {'video': frames, 'label': tf.constant(-1)},
        dataset_config=self.dataset_config)['video']
    scores = self._scores(self.logits_fn(self.params, self.batch_stats,
                                         views))
    # Views aggregate as in evaluation: mean of softmaxes, max of sigmoids.
    probabilities = (tf.reduce_max(scores, 0) if self.multi_label
                     else tf.reduce_mean(scores, 0))
    return {'probabilities': probabilities, 'class_names': self.class_names}


def jax2tf_convert(fn, platforms: Sequence[str], any_batch: bool):
  """`fn` as a TensorFlow function; with `any_batch` the clips' batch is a
  symbolic dimension (classify_video's views). TFLite needs static shapes
  (a symbolic batch leaves dynamic slices it cannot legalise)."""
  from jax.experimental import jax2tf  # pylint: disable=g-import-not-at-top
  return jax2tf.convert(
      fn, with_gradient=False,
      polymorphic_shapes=[None, None, '(b, ...)'] if any_batch else None,
      native_serialization_platforms=tuple(platforms))


def check_args(workdir: str, out: str, fmt: str) -> None:
  """One-line errors for what is wrong before anything is loaded."""
  if fmt not in FORMATS:
    raise errors.ConfigError(f'--format={fmt!r} is unknown; use one of '
                             f'{", ".join(FORMATS)}.')
  if not gfile.isdir(workdir):
    raise errors.ConfigError(f'--workdir={workdir} does not exist; give the '
                             'workdir of a training run.')
  if fmt == 'saved_model' and user_paths.is_remote(out):
    raise errors.ConfigError(f'--out={out}: a SavedModel is written to a '
                             'local directory; export there, then copy it '
                             '(gsutil cp -r).')
  parent = os.path.dirname(user_paths.absolute(out))
  if not gfile.isdir(parent):
    raise errors.ConfigError(f'--out={out}: its directory {parent} does not '
                             'exist; create it first.')


def _classes_and_decoding(run: trained_run.TrainedRun) -> Dict[str, Any]:
  """classes.json of the run, plus how to decode a video for the model."""
  d = run.config.dataset
  return {**run.classes, 'fps': d.get('fps', 0.0),
          'max_frames': d.get('max_frames', 0),
          'short_side': d.get('short_side', 0),
          'num_frames': d.num_frames, 'image_size': d.image_size}


def export_saved_model(run: trained_run.TrainedRun, out: str,
                       platforms: Sequence[str] = SAVED_MODEL_PLATFORMS
                       ) -> str:
  module = ExportedModel(run, platforms)
  # Written beside, then moved into place: a failed export leaves no
  # half-written model at --out.
  staging = tempfile.mkdtemp(prefix='.export-', dir=os.path.dirname(
      os.path.abspath(out)))
  try:
    assets = os.path.join(staging, 'extra')
    os.makedirs(assets)
    with open(os.path.join(assets, CLASSES_ASSET), 'w') as f:
      json.dump(_classes_and_decoding(run), f, indent=2)
    module.classes_file = tf.saved_model.Asset(
        os.path.join(assets, CLASSES_ASSET))
    model_dir = os.path.join(staging, 'model')
    tf.saved_model.save(
        module, model_dir,
        signatures={'serving_default': module.serve.get_concrete_function(),
                    'classify_video':
                        module.classify_video.get_concrete_function()})
    if os.path.exists(out):
      shutil.rmtree(out)
    os.replace(model_dir, out)
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return out


def export_tflite(run: trained_run.TrainedRun, out: str) -> str:
  module = ExportedModel(run, ('cpu',), any_batch=False)
  converter = tf.lite.TFLiteConverter.from_concrete_functions(
      [module.serve.get_concrete_function()], module)
  flatbuffer = converter.convert()
  atomic_write.write_whole(out, flatbuffer)
  atomic_write.write_whole(out + '.classes.json', json.dumps(
      _classes_and_decoding(run), indent=2))
  return out


def export(workdir: str, out: str, fmt: str = 'saved_model') -> str:
  """Exports the run; returns the path written."""
  check_args(workdir, out, fmt)
  run = trained_run.TrainedRun.load(workdir)
  if fmt == 'saved_model':
    return export_saved_model(run, out)
  return export_tflite(run, out)


def load_classes(path: str) -> Dict[str, Any]:
  """classes.json of an exported SavedModel directory or TFLite file."""
  candidates = [os.path.join(path, 'assets', CLASSES_ASSET),
                path + '.classes.json']
  for candidate in candidates:
    if gfile.exists(candidate):
      with gfile.GFile(candidate) as f:
        return json.load(f)
  raise errors.ConfigError(f'{path}: no {CLASSES_ASSET} beside it; was it '
                           'written by airstreams_jax.export?')


def define_flags() -> None:
  """The command's flags (defined by `cli.run`: importing this module, as a
  notebook or a test does, defines none)."""
  flags.DEFINE_string('workdir', None, "A training run's workdir.")
  flags.DEFINE_string('out', None, 'The SavedModel directory or the .tflite '
                      'file to write.')
  flags.DEFINE_string('format', 'saved_model',
                      f'One of {", ".join(FORMATS)}.')
  flags.mark_flags_as_required(['workdir', 'out'])


def main() -> None:
  args = flags.FLAGS
  path = export(args.workdir, args.out, args.format)
  logging.info('Exported %s as %s', args.workdir, args.format)
  print(f'Wrote {path}')


if __name__ == '__main__':
  cli.run(main, define_flags, one_line_errors=(errors.ConfigError,))
