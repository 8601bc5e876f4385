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

if __name__ == '__main__':
  # Before any other import: see cli.start.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.start()

import functools
import json
import sys
from typing import List, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
from absl import flags
from tensorflow.io import gfile

from airstreams_jax import cli
from airstreams_jax import errors
from airstreams_jax.data import pipeline
from airstreams_jax.data import video_io
from airstreams_jax.training import steps
from airstreams_jax.training import run_files
from airstreams_jax.training import trained_run


def decode_frames(path: str, dataset_config) -> np.ndarray:
  """A video file's frames as the dataset stored them (its frame rate,
  frame limit and short side): uint8 [N, H, W, 3]."""
  return video_io.decode(
      path, fps=dataset_config.get('fps', 0.0),
      max_frames=dataset_config.get('max_frames', 0),
      short_side=dataset_config.get('short_side', 0)).frames


def video_views(path: str, dataset_config) -> np.ndarray:
  """The evaluation views of a video file: uint8 [V, T, S, S, 3]."""
  frames = decode_frames(path, dataset_config)
  # The label is unknown; preprocess_eval only passes it through.
  example = {'video': tf.constant(frames), 'label': tf.constant(-1)}
  return pipeline.preprocess_eval(example,
                                  dataset_config=dataset_config)['video'].numpy()


def predict(workdir: str, video_path: str) -> List[Tuple[str, float]]:
  """(class name, score) of every class, best first."""
  config, _ = run_files.load_run(workdir)
  views = video_views(video_path, config.dataset)  # Before any compile.
  run = trained_run.TrainedRun.load(workdir)
  score_fn = jax.jit(functools.partial(
      steps.video_scores, model=run.model,
      multi_label=run.classes['multi_label'], stream_heads=False))
  scores = np.asarray(score_fn(run.state(),
                               jnp.asarray(views[None]))['merged'][0])
  order = np.argsort(-scores, kind='stable')
  return [(run.classes['class_names'][i], float(scores[i])) for i in order]


def define_flags() -> None:
  """The command's flags (defined by `cli.run`: importing this module, as a
  notebook or export does, defines none)."""
  flags.DEFINE_string('workdir', None, "A training run's workdir.")
  flags.DEFINE_string('video', None, 'The video file.')
  flags.DEFINE_integer('top_k', 5, 'How many classes to print.',
                       lower_bound=1)
  flags.DEFINE_string('output_json', '',
                      'Also write every class score to this JSON file.')
  flags.mark_flags_as_required(['workdir', 'video'])


def main() -> None:
  args = flags.FLAGS
  try:
    ranked = predict(args.workdir, args.video)
  except video_io.VideoDecodeError as e:  # Its reason; the file named here.
    sys.exit(f'error: --video={args.video}: {cli.one_line(e)}')
  for name, score in ranked[:args.top_k]:
    print(f'{score:.4f}  {name}')
  if args.output_json:
    with gfile.GFile(args.output_json, 'w') as f:
      json.dump({'video': args.video, 'scores': dict(ranked)}, f, indent=2)


if __name__ == '__main__':
  cli.run(main, define_flags, one_line_errors=(errors.ConfigError,))
