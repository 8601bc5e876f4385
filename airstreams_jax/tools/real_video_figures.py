r"""Draws every real-video figure of docs/real_video.md into one folder.

  python -m airstreams_jax.tools.real_video_figures \
      --realdata=../shared/realdata --run=/tmp/ucf3_run --out=/tmp/realfig \
      [--run=/tmp/another_run ...] [--only=teachers,runs,flow,timeline]

From the real clips, read in place (their terms: REALDATA/PROVENANCE.md;
neither they nor any figure of them go into the repository, so --out must be
outside it):
  teachers/<clip>.png  per UCF101 clip (actions/), 8 frames evenly spread with
                       the selfie teacher's mask (red) and the pose teacher's
                       (green) tinted over them, each with the share of
                       pixels masked (frames at 15/s, native size).
  run_<name>/          per --run (trained on the UCF101 folder, e.g. as
                       docs/real_video.md says): visualize's figures on its
                       test clips: flow.png (the learned flow), segmentation.png
                       (learned vs teacher), confusion.png.
  flow_comparison.png  one test clip per class, a frame pair as the real-video
                       config sees it (15 stored frames/s, one in 2, centre
                       square of short side 112): the layer's flow at its
                       initial TV-L1 values, single scale (the paper's) and 3
                       levels at step 0.5, beside OpenCV's DualTVL1 defaults;
                       one colour scale per row (OpenCV's largest motion).
  timeline.png         predict's windows over the 139-s clip with the first
                       --run: the top label of each window, darker when surer.
Prints, per --run, its learned flow's agreement with OpenCV's defaults on
its test clips (the pixels moving > 1 px: mean end-point error, direction
within 45 degrees, median magnitude ratio). OpenCV comes from
`pip install -e '.[opencv]'`; without it the flow figures are skipped in one
line.
"""

if __name__ == '__main__':
  # Before any other import: see cli.start.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.start()

import glob
import os
from typing import Dict, List, Mapping, Sequence, Tuple

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from airstreams_jax import cli
from airstreams_jax import errors
from airstreams_jax import video_predictor
from airstreams_jax.data import video_io
from airstreams_jax.models import rep_flow
from airstreams_jax.plotting import figures
from airstreams_jax.plotting import images
from airstreams_jax.plotting import montage
from airstreams_jax.plotting import timeline
from airstreams_jax.teachers import factory
from airstreams_jax.training import trained_run
from airstreams_jax.visualize import run_figures

SECTIONS = ('teachers', 'runs', 'flow', 'timeline')
TEACHER_COLOURS = {'selfie': (255, 40, 40), 'pose': (40, 230, 40)}
LONG_CLIP = 'videos/intel__one-by-one-person-detection.mp4'
# Frames as the real-video config stores them (configs/video_folder.py: 15
# per second); the flow comparison's pair is one the model sees (frames one
# in 2), larger than the model's input.
FPS, FLOW_STRIDE, FLOW_SIDE, FLOW_ITERATIONS = 15.0, 2, 112, 20
FLOW_SETTINGS = (('ours: single scale\n(the paper)', dict(pyramid_levels=1)),
                 ('ours: 3 levels,\nstep 0.5',
                  dict(pyramid_levels=3, scale_step=0.5)))
OPENCV = 'OpenCV DualTVL1\ndefaults'


def check_paths(realdata: str, out: str) -> None:
  """One-line errors: no real clips, or an --out inside the repository."""
  if not os.path.isdir(os.path.join(realdata, 'actions')):
    raise errors.ConfigError(
        f'--realdata={realdata}: no actions/ folder there; give the folder '
        'of the real clips (../shared/realdata beside the repository).')
  repo = os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))
  out = os.path.abspath(out)
  if out == repo or out.startswith(repo + os.sep):
    raise errors.ConfigError(
        f'--out={out} is inside the repository, and figures of the real '
        'clips must never be committed; write them elsewhere (e.g. '
        '/tmp/realfig).')


def action_clips(realdata: str) -> List[str]:
  """The UCF101 clips, actions/<class>/*, sorted."""
  return sorted(glob.glob(os.path.join(realdata, 'actions', '*', '*')))


def held_out_clips(realdata: str) -> List[str]:
  """One held-out clip per class: the 4th (docs/real_video.md trains on
  clips 1-3 and tests on 4-5)."""
  return [sorted(glob.glob(os.path.join(folder, '*')))[3]
          for folder in sorted(glob.glob(os.path.join(realdata, 'actions',
                                                      '*')))]


# --------------------------------------------------------------------------
# The teachers.


def teacher_montage(frames: np.ndarray, indices: np.ndarray,
                    masks: Mapping[str, np.ndarray],
                    rois: Mapping[str, Sequence], shown: Sequence[int],
                    columns: int = 4):
  """Rows of `columns` frames, one row per teacher for the same frames:
  each frame with that teacher's mask tinted over it."""
  rows = []
  for first in range(0, len(shown), columns):
    for name, mask in masks.items():
      row = []
      for i in shown[first:first + columns]:
        caption = (f'{name} frame {indices[i]}: {100 * mask[i].mean():.0f}% '
                   'masked')
        row.append(montage.panel(
            montage.overlay(frames[i], mask[i],
                            TEACHER_COLOURS.get(name, (40, 40, 255))),
            caption, rois[name][i] if name in rois else ()))
      rows.append(row)
  return montage.montage(rows)


def draw_teachers(realdata: str, out: str, num_shown: int = 8,
                  names: Sequence[str] = ('selfie', 'pose')) -> List[str]:
  """teachers/<clip>.png for every UCF101 clip: every frame of the clip at
  the real-video config's rate (`FPS`, native size) labelled, as a
  dataset build labels them (the pose teacher tracks people from frame to
  frame), `num_shown` of them drawn. (experiments/teacher_montage.py also
  outlines the pose teacher's regions, at the cost of a second pass.)"""
  teachers = {n: factory.make_teacher(n) for n in names}
  folder = os.path.join(out, 'teachers')
  os.makedirs(folder, exist_ok=True)
  written = []
  for path in action_clips(realdata):
    video = video_io.decode(path, fps=FPS)
    masks = {name: teacher(video.frames) for name, teacher in teachers.items()}
    shown = np.unique(np.linspace(0, len(video.frames) - 1, num_shown)
                      .round().astype(int))
    target = os.path.join(folder, os.path.splitext(os.path.basename(path))[0]
                          + '.png')
    teacher_montage(video.frames, video.indices, masks, {}, shown).save(target)
    written.append(target)
  return written


# --------------------------------------------------------------------------
# The flow layer against OpenCV.


def grey_pair(path: str, fraction: float = 0.5) -> np.ndarray:
  """[2, S, S] float32: the layer's grey (channel mean) of a frame pair
  `FLOW_STRIDE` stored frames apart at `fraction` of the video, stored as
  the real-video config stores frames, centre square."""
  video = video_io.decode(path, fps=FPS, short_side=FLOW_SIDE)
  first = min(int(fraction * len(video.frames)),
              len(video.frames) - 1 - FLOW_STRIDE)
  pair = video.frames[[first, first + FLOW_STRIDE]].astype(np.float32)
  h, w = pair.shape[1:3]
  top, left = (h - FLOW_SIDE) // 2, (w - FLOW_SIDE) // 2
  return pair[:, top:top + FLOW_SIDE, left:left + FLOW_SIDE].mean(-1)


def layer_flows(pairs: np.ndarray, **options) -> np.ndarray:
  """The layer's flow (initial TV-L1 values, K = 1) of grey pairs
  [N, 2, H, W] -> [N, H, W, 2]: each pair a 2-frame clip, normalised on its
  own as the layer does."""
  model = rep_flow.RepresentationFlow(num_iter=FLOW_ITERATIONS, bottleneck=1,
                                      **options)
  x = jnp.asarray(pairs[..., None])
  params = model.init(jax.random.PRNGKey(0), x[:1])
  return np.asarray(jax.jit(lambda v: model.apply(params, v)[:, 0])(x))


def draw_flow_comparison(realdata: str, out: str
                         ) -> Tuple[str, Dict[str, Dict[str, float]]]:
  """flow_comparison.png, and each of our settings' agreement with
  OpenCV's defaults on its pairs (`opencv_flow.agreement`)."""
  from airstreams_jax.tools import opencv_flow  # pylint: disable=g-import-not-at-top
  paths = held_out_clips(realdata)
  pairs = np.stack([opencv_flow.normalise(grey_pair(p)) for p in paths])
  columns = {name: layer_flows(pairs, **kw) for name, kw in FLOW_SETTINGS}
  columns[OPENCV] = opencv_flow.reference_flows(pairs)
  rows, labels = [], []
  for i, path in enumerate(paths):
    reference = columns[OPENCV][i]
    scale = float(np.linalg.norm(reference, axis=-1).max()) or 1.0
    grey = np.repeat(pairs[i, 0, ..., None], 3, -1).astype(np.uint8)
    rows.append([grey] + [images.flow_to_rgb(f[i], scale)
                          for f in columns.values()])
    labels.append(f'{os.path.basename(os.path.dirname(path))}\n'
                  f'max {scale:.1f} px')
  image = figures.panel_grid(
      rows, labels, ['frame t'] + list(columns),
      'Flow of a real frame pair: the layer (initial values) and OpenCV',
      160, figures.wheel_legend())
  target = os.path.join(out, 'flow_comparison.png')
  image.save(target)
  return target, {name: opencv_flow.agreement(columns[name],
                                              columns[OPENCV])
                  for name, _ in FLOW_SETTINGS}


def learned_flow_agreement(run: trained_run.TrainedRun,
                           num_clips: int = 64) -> Dict[str, float]:
  """The run's learned flow on (up to `num_clips`) clips of its evaluation
  split, first view, against OpenCV's defaults on the same frames (the
  layer's grey and per-clip normalisation): `opencv_flow.agreement` over
  every consecutive pair, and a zero flow's end-point error beside it."""
  from airstreams_jax.tools import opencv_flow  # pylint: disable=g-import-not-at-top
  view, outputs = run_figures.representations(run, '', num_clips)
  ours = np.asarray(rep_flow.mean_flow(outputs['flow']))[:, :-1]
  grey = np.stack([opencv_flow.normalise(v.astype(np.float32).mean(-1))
                   for v in view['video']])  # [N, T, H, W], per clip.
  pairs = np.stack([grey[:, :-1], grey[:, 1:]], 2).reshape(
      (-1, 2) + grey.shape[2:])
  reference = opencv_flow.reference_flows(pairs)
  result = opencv_flow.agreement(ours.reshape(reference.shape), reference)
  result['zero_flow_epe'] = opencv_flow.agreement(
      np.zeros_like(reference), reference)['epe']
  result['clips'] = len(view['video'])
  return result


# --------------------------------------------------------------------------
# A trained run on the real clips.


def draw_run(workdir: str, out: str) -> Dict[str, str]:
  """visualize's figures of the run, on all its test clips."""
  name = os.path.basename(os.path.normpath(workdir))
  return run_figures.write_run_figures(
      trained_run.TrainedRun.load(workdir), os.path.join(out, f'run_{name}'),
      num_clips=6)


def draw_timeline(workdir: str, realdata: str, out: str) -> str:
  """predict's windows over the 139-s clip, as a timeline."""
  predictor = video_predictor.VideoPredictor(workdir)
  path = os.path.join(realdata, LONG_CLIP)
  prediction = predictor.predict(path)
  (best, score), = prediction.top(1)
  title = (f'{os.path.basename(path)}: {len(prediction.windows)} windows; '
           f'video-level {best} {score:.2f}')
  image = timeline.timeline_figure(
      [(w.start_seconds, w.end_seconds, w.scores) for w in prediction.windows],
      prediction.class_names, title)
  target = os.path.join(out, 'timeline.png')
  image.save(target)
  return target


def _opencv_missing() -> str:
  try:
    from airstreams_jax.tools import opencv_flow  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError as e:
    return str(e)
  return ''


def draw_all(realdata: str, runs: Sequence[str], out: str,
             sections: Sequence[str] = SECTIONS) -> List[str]:
  """Draws the `sections`; returns the lines to print (what was written,
  what was skipped and why, the learned flows' agreement)."""
  check_paths(realdata, out)
  os.makedirs(out, exist_ok=True)
  lines = []
  missing = _opencv_missing()
  if 'teachers' in sections:
    written = draw_teachers(realdata, out)
    lines.append(f'{len(written)} teacher montages in '
                 f'{os.path.join(out, "teachers")}')
  if 'runs' in sections:
    for workdir in runs:
      lines += [f'{workdir}: {path}'
                for path in draw_run(workdir, out).values()]
      if missing:
        lines.append(f'{workdir}: learned flow against OpenCV skipped: '
                     f'{missing}')
      else:
        a = learned_flow_agreement(trained_run.TrainedRun.load(workdir))
        lines.append(
            f'{workdir}: learned flow against OpenCV defaults on '
            f'{a["clips"]} test clips, pixels moving > 1 px '
            f'({100 * a["moving"]:.1f}%): EPE {a["epe"]:.2f} px (zero flow '
            f'{a["zero_flow_epe"]:.2f}), direction within 45 deg '
            f'{100 * a["direction_45"]:.1f}%, median magnitude ratio '
            f'{a["magnitude_ratio"]:.2f}')
  if 'flow' in sections and missing:
    lines.append(f'flow comparison skipped: {missing}')
  elif 'flow' in sections:
    path, agreements = draw_flow_comparison(realdata, out)
    lines.append(path)
    for name, a in agreements.items():
      lines.append(
          f'  {name.replace(chr(10), " ")} against OpenCV on these pairs: '
          f'EPE {a["epe"]:.2f} px, direction within 45 deg '
          f'{100 * a["direction_45"]:.1f}%, median magnitude ratio '
          f'{a["magnitude_ratio"]:.2f}')
  if 'timeline' in sections:
    lines.append(draw_timeline(runs[0], realdata, out) if runs else
                 'timeline skipped: it needs a trained run (--run)')
  return lines


def define_flags() -> None:
  """The command's flags (defined by `cli.run`)."""
  flags.DEFINE_string('realdata', '../shared/realdata',
                      'The real clips (see its PROVENANCE.md).')
  flags.DEFINE_multi_string('run', [], 'Workdir of a run trained on the '
                            'UCF101 folder (repeatable; the first draws the '
                            'timeline).')
  flags.DEFINE_string('out', None, 'Folder for the PNGs, outside the '
                      'repository.')
  flags.DEFINE_list('only', list(SECTIONS), f'Sections: {", ".join(SECTIONS)}.')
  flags.mark_flags_as_required(['out'])


def main() -> None:
  args = flags.FLAGS
  unknown = sorted(set(args.only) - set(SECTIONS))
  if unknown:
    raise errors.ConfigError(f'--only={",".join(args.only)}: {unknown} '
                             f'unknown; use some of {", ".join(SECTIONS)}.')
  for line in draw_all(args.realdata, args.run, args.out, args.only):
    print(line, flush=True)


if __name__ == '__main__':
  cli.run(main, define_flags, one_line_errors=(errors.ConfigError,))
