"""What `python -m airstreams_jax.visualize` draws: a trained run's learned
representations and confusion matrix, or an evolution's Figure 5.

Library functions, so that a notebook draws the same figures in-process.
"""

import functools
import json
import os
from typing import Any, Dict, List, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tensorflow.io import gfile

from airstreams_jax import errors
from airstreams_jax.data import dataset_from_config
from airstreams_jax.data import pipeline
from airstreams_jax.evolution import figure as evolution_figure
from airstreams_jax.evolution import candidates as candidates_lib
from airstreams_jax.models import rep_flow
from airstreams_jax.training import losses
from airstreams_jax.training import steps
from airstreams_jax.training import trained_run
from airstreams_jax.plotting import figures

FLOW_FILE = 'flow.png'
SEGMENTATION_FILE = 'segmentation.png'
CONFUSION_FILE = 'confusion.png'
EVOLUTION_FILE = 'evolution.png'


def _dataset_config(run: trained_run.TrainedRun, split: str
                    ) -> ml_collections.ConfigDict:
  """The run's dataset config, evaluated on `split` ('' = its own)."""
  dataset_config = ml_collections.ConfigDict(run.config.dataset.to_dict())
  if split:
    dataset_config.eval_split = split
  return dataset_config


def eval_batches(run: trained_run.TrainedRun, split: str, batch_size: int):
  """NumPy batches of `split` with the run's evaluation views."""
  dataset_config = _dataset_config(run, split)
  builder = dataset_from_config.make_builder(dataset_config)
  dataset_from_config.prepare(builder)
  splits = sorted(builder.info.splits)
  if dataset_config.eval_split not in splits:
    raise errors.ConfigError(
        f'--split={dataset_config.eval_split!r} is not a split of '
        f'{builder.info.full_name}; use one of {splits}.')
  ds, _ = pipeline.make_eval_dataset(builder, dataset_config,
                                     local_batch_size=batch_size)
  return ds.as_numpy_iterator()


def representations(run: trained_run.TrainedRun, split: str, num_clips: int
                    ) -> Tuple[Dict[str, np.ndarray], Dict[str, np.ndarray]]:
  """The first clips of `split` (view 0) and the model's outputs on them:
  'flow' [N, T, H, W, 2K] and 'seg_logits' for the streams present."""
  batch = next(eval_batches(run, split, num_clips))
  keep = batch['mask']
  view = {k: v[keep][:, 0] for k, v in batch.items()
          if k in ('video', 'masks', 'true_masks', 'true_flow')}
  view['label'] = batch['label'][keep]
  apply = jax.jit(functools.partial(run.model.apply, train=False,
                                    stream_heads=False))
  outputs = apply(run.variables, jnp.asarray(view['video']))
  return view, jax.tree.map(np.asarray, outputs)


def confusion_matrix(run: trained_run.TrainedRun, split: str) -> np.ndarray:
  """[true, predicted] counts of the merged head over the whole split."""
  n = run.classes['num_classes']
  scores = jax.jit(functools.partial(
      steps.video_scores, model=run.model, multi_label=False,
      stream_heads=False))
  state = run.state()
  matrix = np.zeros((n, n), np.int64)
  for batch in eval_batches(run, split, run.config.eval_batch_size):
    predicted = np.asarray(scores(state, jnp.asarray(batch['video']))
                           ['merged']).argmax(-1)
    keep = batch['mask']
    np.add.at(matrix, (batch['label'][keep], predicted[keep]), 1)
  return matrix


def _row_labels(labels, class_names) -> List[str]:
  return [f'clip {i}\n{class_names[int(label)]}'[:40]
          for i, label in enumerate(labels)]


def write_run_figures(run: trained_run.TrainedRun, out: str, *, num_clips: int,
                      split: str = '') -> Dict[str, str]:
  """Figures 3 and 4 and the confusion matrix of a trained run."""
  gfile.makedirs(out)
  view, outputs = representations(run, split, num_clips)
  multi_label = run.classes['multi_label']
  labels = (view['label'].argmax(-1) if multi_label else view['label'])
  rows = _row_labels(labels, run.classes['class_names'])
  written = {}
  frames = view['video']
  t = (frames.shape[1] - 1) // 2  # A middle pair: the flow between t, t+1.
  if 'flow' in outputs:
    flow = np.asarray(rep_flow.mean_flow(outputs['flow']))
    clips = []
    for i in range(len(frames)):
      clip = {'frames': frames[i, t:t + 2], 'flow': flow[i, t]}
      if 'true_flow' in view:
        clip['true_flow'] = view['true_flow'][i, t].astype(np.float32)
      clips.append(clip)
    written['flow'] = _save(figures.flow_figure(clips, rows),
                            os.path.join(out, FLOW_FILE))
  if 'seg_logits' in outputs:
    segmentation = outputs['seg_logits'].argmax(-1)
    clips = []
    for i in range(len(frames)):
      clip = {'frame': frames[i, t], 'segmentation': segmentation[i, t],
              'teacher': view['masks'][i, t]}
      if 'true_masks' in view:
        clip['truth'] = view['true_masks'][i, t]
      clips.append(clip)
    written['segmentation'] = _save(
        figures.segmentation_figure(clips, rows,
                                    run.classes['mask_class_names']),
        os.path.join(out, SEGMENTATION_FILE))
  if not multi_label:
    written['confusion'] = _save(
        figures.confusion_figure(confusion_matrix(run, split),
                                 run.classes['class_names']),
        os.path.join(out, CONFUSION_FILE))
  return written


def write_evolution_figure(workdir: str, out: str) -> Dict[str, str]:
  """Figure 5 of an evolution's workdir, redrawn from its history."""
  with gfile.GFile(os.path.join(workdir, candidates_lib.HISTORY_FILE)) as f:
    records = [json.loads(line) for line in f if line.strip()]
  if not records:
    raise errors.ConfigError(f'{workdir}: the evolution has not evaluated '
                             'any weighting yet; wait for its first group.')
  names = list(losses.LOSS_NAMES)
  metric = 'top1'
  config_path = os.path.join(workdir, 'config.json')
  if gfile.exists(config_path):
    with gfile.GFile(config_path) as f:
      metric = json.load(f).get('evolution', {}).get('metric', metric)
  finished = [r for r in records if r.get('fitness') is not None and
              np.isfinite(r['fitness'])]
  top = sorted(finished, key=lambda r: -r['fitness'])[:5]
  png = evolution_figure.png_bytes(
      [(r['id'], r['fitness'], [r['weights'][n] for n in names])
       for r in top], [r.get('fitness') for r in records], names, metric)
  gfile.makedirs(out)
  path = os.path.join(out, EVOLUTION_FILE)
  with gfile.GFile(path, 'wb') as f:
    f.write(png)
  return {'evolution': path}


def write_figures(workdir: str, out: str, *, num_clips: int = 4,
                  split: str = '') -> Dict[str, Any]:
  """Every figure a workdir can give; {figure name: PNG path}."""
  if not gfile.isdir(workdir):
    raise errors.ConfigError(f'--workdir={workdir} does not exist; give the '
                             'workdir of a training run or an evolution.')
  if gfile.exists(os.path.join(workdir, candidates_lib.HISTORY_FILE)):
    return write_evolution_figure(workdir, out)
  return write_run_figures(trained_run.TrainedRun.load(workdir), out, num_clips=num_clips,
                           split=split)


def _save(image, path: str) -> str:
  with gfile.GFile(path, 'wb') as f:
    image.save(f, format='PNG')
  return path
