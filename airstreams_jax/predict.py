r"""Predicts the actions in video files with a trained run (RGB only).

  python -m airstreams_jax.predict --workdir=workdirs/synthetic \
      --video=clip.mp4 [--video=FOLDER ...] [--window_stride=SECONDS] \
      [--top_k=5] [--format=text|json|csv] [--views=windows|eval] \
      [--output_json=prediction.json]

Reads the run's `config.json`, `classes.json` and latest checkpoint once,
decodes each video with PyAV as the dataset builders do, and judges the
whole video: windows of the model's clip slide over it (side by side by
default, or every `--window_stride` seconds), each scored on the evaluation
protocol's crops; the video's answer is the mean over its windows. Text
output gives each video's top classes and a timeline (time ranges and their
top label); several videos or folders (searched recursively) run in one
process with a progress bar and end with a table. `--views=eval` scores the
evaluation protocol's views instead (`dataset.eval_clips` clips x
`eval_crops` crops, as the test-set evaluation and the exported model do).
A video shorter than the model's clip is warned about, once per video.

Only the RGB path to the merged head runs: the flow layer and the
segmentation net are computed inside the network, the single-stream heads
are skipped.
"""

if __name__ == '__main__':
  # Before any other import: see cli.start.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.start()

import csv
import io
import json
import os
import sys
from typing import Any, Dict, Iterable, List, Tuple

import numpy as np
from absl import flags
from absl import logging
from tensorflow.io import gfile
import tqdm

from airstreams_jax import cli
from airstreams_jax import errors
from airstreams_jax import video_predictor
from airstreams_jax.data import video_io

# Files that a folder given to --video contributes.
VIDEO_EXTENSIONS = ('.mp4', '.avi', '.mkv', '.mov', '.webm', '.m4v', '.mpg',
                    '.mpeg', '.wmv', '.flv', '.3gp')
FORMATS = ('text', 'json', 'csv')


def decode_frames(path: str, dataset_config) -> np.ndarray:
  """A video file's frames as the dataset stored them (its frame rate,
  frame limit and short side): uint8 [N, H, W, 3]."""
  return video_predictor.decode_as_stored(path, dataset_config).frames


def predict(workdir: str, video_path: str, views: str = 'windows'
            ) -> List[Tuple[str, float]]:
  """(class name, score) of every class for one video, best first."""
  prediction = video_predictor.VideoPredictor(workdir, views=views).predict(
      video_path)
  return prediction.top(len(prediction.class_names))


def video_files(paths: Iterable[str]) -> List[str]:
  """The files named, and the video files under the folders named (sorted).

  Raises:
    errors.ConfigError: a path that does not exist, or a folder without
      videos.
  """
  found = []
  for path in paths:
    if gfile.isdir(path):
      inside = sorted(
          os.path.join(folder, name)
          for folder, _, names in gfile.walk(path) for name in names
          if name.lower().endswith(VIDEO_EXTENSIONS))
      if not inside:
        raise errors.ConfigError(
            f'--video={path}: no video files in this folder (looked for '
            f'{", ".join(VIDEO_EXTENSIONS)}).')
      found.extend(inside)
    else:
      found.append(path)
  return found


def _seconds(value: float) -> str:
  return f'{value:.1f}'


def timeline(prediction: video_predictor.VideoPrediction
             ) -> List[Tuple[float, float, str, float]]:
  """Consecutive windows with the same top label merged: (start s, end s,
  label, mean of its windows' top scores)."""
  segments = []
  for start, end, label, score in prediction.window_top():
    if segments and segments[-1][2] == label:
      first, _, _, scores = segments[-1]
      segments[-1] = (first, end, label, scores + [score])
    else:
      segments.append((start, end, label, [score]))
  return [(s, e, label, float(np.mean(scores)))
          for s, e, label, scores in segments]


def text_report(prediction: video_predictor.VideoPrediction,
                top_k: int) -> str:
  """A video's top classes, then its timeline (windows mode)."""
  head = (f'{prediction.path}: {len(prediction.windows)} windows over '
          f'{_seconds(prediction.windows[-1].end_seconds)} s'
          if prediction.windows else f'{prediction.path}:')
  lines = [head] + [f'  {score:.4f}  {name}'
                    for name, score in prediction.top(top_k)]
  if prediction.windows:
    lines.append('  timeline:')
    lines += [f'    {_seconds(s)}-{_seconds(e)} s  {label} ({score:.2f})'
              for s, e, label, score in timeline(prediction)]
  return '\n'.join(lines)


def summary_table(predictions: List[video_predictor.VideoPrediction]) -> str:
  """One line per video: its top class and score, windows, shortness."""
  width = max(len(p.path) for p in predictions)
  lines = [f'{"video":<{width}}  {"top class":<24} score   windows  '
           'repeated frames']
  for p in predictions:
    name, score = p.top(1)[0]
    lines.append(f'{p.path:<{width}}  {name:<24} {score:.4f}  '
                 f'{len(p.windows):>7}  {p.repeated_frames:>15}')
  return '\n'.join(lines)


def as_json(prediction: video_predictor.VideoPrediction) -> Dict[str, Any]:
  """Every class score of the video, and each window's top label."""
  return {
      'video': prediction.path,
      'scores': dict(prediction.top(len(prediction.class_names))),
      'repeated_frames': prediction.repeated_frames,
      'num_stored_frames': prediction.num_stored_frames,
      'windows': [dict(start_seconds=s, end_seconds=e, top_label=label,
                       top_score=score)
                  for s, e, label, score in prediction.window_top()],
  }


def csv_rows(prediction: video_predictor.VideoPrediction) -> List[List[Any]]:
  """One row per window, then the video's row (window 'video')."""
  rows = [[prediction.path, i, f'{s:.3f}', f'{e:.3f}', label, f'{score:.6f}']
          for i, (s, e, label, score) in enumerate(prediction.window_top())]
  name, score = prediction.top(1)[0]
  # --views=eval has no windows, so no time span.
  span = (['0.000', f'{prediction.windows[-1].end_seconds:.3f}']
          if prediction.windows else ['', ''])
  rows.append([prediction.path, 'video', *span, name, f'{score:.6f}'])
  return rows


def define_flags() -> None:
  """The command's flags (defined by `cli.run`: importing this module, as a
  notebook or export does, defines none)."""
  flags.DEFINE_string('workdir', None, "A training run's workdir.")
  flags.DEFINE_multi_string(
      'video', None, 'A video file, or a folder searched recursively for '
      'videos; repeat the flag for more.')
  flags.DEFINE_float(
      'window_stride', None, 'Seconds between the starts of windows (default: '
      "one clip's duration, windows side by side).", lower_bound=1e-6)
  flags.DEFINE_integer('batch_size', 8, 'Windows scored at once.',
                       lower_bound=1)
  flags.DEFINE_enum('views', 'windows', list(video_predictor.VIEWS),
                    'windows: the whole video, window by window (a timeline); '
                    "eval: the evaluation protocol's clips x crops.")
  flags.DEFINE_integer('top_k', 5, 'How many classes to print.',
                       lower_bound=1)
  flags.DEFINE_enum('format', 'text', list(FORMATS),
                    'text for people; json or csv for scripts (on stdout).')
  flags.DEFINE_string('output_json', '',
                      'Also write every video\'s scores and windows to this '
                      'JSON file.')
  flags.mark_flags_as_required(['workdir', 'video'])


def main() -> int:
  args = flags.FLAGS
  paths = video_files(args.video)  # Before the model loads.
  predictor = video_predictor.VideoPredictor(
      args.workdir, window_stride_seconds=args.window_stride,
      batch_size=args.batch_size, views=args.views)
  if args.format == 'text':
    print(f'Scored: {predictor.views_description()}.')
  else:  # On stderr, beside the data on stdout.
    logging.info('Scoring %s.', predictor.views_description())
  predictions, failed = [], []
  several = len(paths) > 1
  for path in tqdm.tqdm(paths, unit='video', disable=not several,
                        file=sys.stderr, dynamic_ncols=True):
    try:
      prediction = predictor.predict(path)
    except video_io.VideoDecodeError as e:  # Its reason; the file named.
      if not several:
        sys.exit(f'error: --video={path}: {cli.one_line(e)}')
      tqdm.tqdm.write(f'skipped {path}: {cli.one_line(e)}', file=sys.stderr)
      failed.append(path)
      continue
    predictions.append(prediction)
    if args.format == 'text':
      tqdm.tqdm.write(text_report(prediction, args.top_k), file=sys.stdout)
  if args.format == 'text' and several and predictions:
    print(summary_table(predictions))
  elif args.format == 'json':
    print(json.dumps({'views': predictor.views_description(),
                      'videos': [as_json(p) for p in predictions],
                      'failed': failed}, indent=1))
  elif args.format == 'csv':
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(['video', 'window', 'start_seconds', 'end_seconds',
                     'top_label', 'top_score'])
    for p in predictions:
      writer.writerows(csv_rows(p))
    sys.stdout.write(out.getvalue())
  if args.output_json:
    with gfile.GFile(args.output_json, 'w') as f:
      if len(predictions) == 1 and not several:
        json.dump(as_json(predictions[0]), f, indent=2)
      else:
        json.dump({'videos': [as_json(p) for p in predictions]}, f, indent=2)
  if failed:
    print(f'{len(failed)} of {len(paths)} videos could not be decoded '
          '(named above).', file=sys.stderr)
  return 1 if failed and not predictions else 0


if __name__ == '__main__':
  cli.run(main, define_flags, one_line_errors=(errors.ConfigError,))
