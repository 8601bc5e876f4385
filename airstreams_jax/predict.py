r"""Predicts the actions in a video file with a trained run (RGB only).

  python -m airstreams_jax.predict --workdir=workdirs/synthetic \
      --video=clip.mp4 [--top_k=5] [--output_json=prediction.json]

Reads the run's `config.json`, `classes.json` and latest checkpoint, decodes
the video with PyAV as the dataset builders do, takes the evaluation views
(`dataset.eval_clips` x `dataset.eval_crops`) and prints the top classes of
the merged head. Only the RGB path to the merged head runs: the flow layer and
the segmentation net are computed inside the network, the single-stream
heads are skipped.
"""

import functools
import json
import sys
from typing import List, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from tensorflow.io import gfile

from airstreams_jax import cli
from airstreams_jax import errors
from airstreams_jax import mesh as mesh_lib
from airstreams_jax.data import pipeline
from airstreams_jax.data import video_io
from airstreams_jax.models import airstreams
from airstreams_jax.training import checkpointing
from airstreams_jax.training import steps
from airstreams_jax.training import train
from airstreams_jax.training import train_state


def video_views(path: str, dataset_config) -> np.ndarray:
  """The evaluation views of a video file: uint8 [V, T, S, S, 3]."""
  video = video_io.decode(
      path, fps=dataset_config.get('fps', 0.0),
      max_frames=dataset_config.get('max_frames', 0),
      short_side=dataset_config.get('short_side', 0))
  # The label is unknown; preprocess_eval only passes it through.
  example = {'video': tf.constant(video.frames), 'label': tf.constant(-1)}
  return pipeline.preprocess_eval(example,
                                  dataset_config=dataset_config)['video'].numpy()


def predict(workdir: str, video_path: str) -> List[Tuple[str, float]]:
  """(class name, score) of every class, best first."""
  config, classes = train.load_run(workdir)
  views = video_views(video_path, config.dataset)  # Before any compile.
  model = airstreams.build_model(
      config.model, num_classes=classes['num_classes'],
      num_seg_classes=len(classes['mask_class_names']))
  mesh = mesh_lib.make_mesh((('data', -1),))
  step, variables = checkpointing.restore_variables(
      workdir, mesh_lib.replicated(mesh))
  state = train_state.TrainState(
      step=jnp.int32(step), params=variables['params'],
      batch_stats=variables['batch_stats'], opt_state=(), rng=None)
  score_fn = jax.jit(functools.partial(
      steps.video_scores, model=model, multi_label=classes['multi_label'],
      stream_heads=False))
  scores = np.asarray(score_fn(state, jnp.asarray(views[None]))['merged'][0])
  order = np.argsort(-scores, kind='stable')
  return [(classes['class_names'][i], float(scores[i])) for i in order]


_WORKDIR = flags.DEFINE_string('workdir', None, 'A training run\'s workdir.')
_VIDEO = flags.DEFINE_string('video', None, 'The video file.')
_TOP_K = flags.DEFINE_integer('top_k', 5, 'How many classes to print.',
                              lower_bound=1)
_OUTPUT_JSON = flags.DEFINE_string(
    'output_json', '', 'Also write every class score to this JSON file.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  try:
    ranked = predict(_WORKDIR.value, _VIDEO.value)
  except (errors.ConfigError, video_io.VideoDecodeError) as e:
    sys.exit(f'error: {cli.one_line(e)}')
  for name, score in ranked[:_TOP_K.value]:
    print(f'{score:.4f}  {name}')
  if _OUTPUT_JSON.value:
    with gfile.GFile(_OUTPUT_JSON.value, 'w') as f:
      json.dump({'video': _VIDEO.value, 'scores': dict(ranked)}, f, indent=2)


if __name__ == '__main__':
  flags.mark_flags_as_required(['workdir', 'video'])
  app.run(main)
