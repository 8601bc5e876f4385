"""What a training run reports: the console's loss line, TensorBoard's
scalars and images (samples, evaluations, the flow layer's θ, λ, τ), and the
guard that stops training at a non-finite step."""

import dataclasses
from typing import Any, Callable, Dict, Optional

import jax
import numpy as np

from airstreams_jax.plotting import images
from airstreams_jax.training import evaluation as eval_lib


def log_samples(writer, step: int, samples: Dict[str, Any]) -> None:
  """One image per clip: frames, flow colours, predicted and teacher masks."""
  samples = eval_lib.to_host(samples)
  grids = {}
  for i, video in enumerate(samples['video']):
    rows = {}
    if 'flow' in samples:
      # The first reduced channel's (u1, u2); see rep_flow's channel order.
      flow = samples['flow'][i]
      k = flow.shape[-1] // 2
      rows['flow'] = images.flow_to_rgb(flow[..., ::k][..., :2])
    if 'segmentation' in samples:
      rows['segmentation'] = images.segmentation_to_rgb(
          samples['segmentation'][i])
      rows['teacher'] = images.segmentation_to_rgb(samples['masks'][i])
    grids[f'samples/clip{i}_{"_".join(["rgb", *rows])}'] = (
        images.sample_grid(video, rows)[None])
  writer.write_images(step, grids)


def _term_name(metric: str) -> str:
  return {'loss': 'the total loss', 'grad_norm': 'the gradients'}.get(
      metric, f"the {metric[len('loss_'):]} loss" if metric.startswith('loss_')
      else metric)


def check_step_finite(step: int, step_metrics,
                      latest_checkpoint: Callable[[], Optional[int]]) -> None:
  """Raises FloatingPointError, in one line, if step `step`'s loss terms or
  gradients were not finite (the step itself then left the state unchanged).

  Args:
    step: the step the metrics belong to.
    step_metrics: that step's metrics collection (`steps.train_step`).
    latest_checkpoint: gives the newest saved step (or None) for the
      message; called only then (it lists the checkpoint directory).
  """
  totals = eval_lib.to_host({
      f.name: getattr(step_metrics, f.name).total
      for f in dataclasses.fields(step_metrics)
      if f.name.startswith('loss') or f.name == 'grad_norm'})
  bad = {k: float(v) for k, v in totals.items() if not np.isfinite(v)}
  if not bad:
    return
  latest = latest_checkpoint()
  where = (f'the newest checkpoint (step {latest}) is intact; '
           'rerun the same command to resume from it' if latest
           else 'no checkpoint had been saved yet; rerun to start again')
  raise FloatingPointError(
      f'Step {step}: not finite: ' + ', '.join(
          f'{_term_name(k)} ({v})' for k, v in sorted(bad.items())) +
      '. Training stopped with that update skipped, nothing non-finite '
      f'saved; {where} after lowering the learning rate or checking the '
      'input data.')


def losses_line(step: int, num_steps: int, values: Dict[str, float]) -> str:
  """'step 200/600: loss 3.214 (rgb 1.792, merged 1.205, interm 0.421),
  train top-1 0.547' for the console (TensorBoard has every scalar)."""
  terms = ', '.join(f'{k[len("loss_"):]} {v:.3f}' for k, v in values.items()
                    if k.startswith('loss_'))
  line = f'step {step}/{num_steps}: loss {values["loss"]:.3f} ({terms})'
  if 'accuracy_merged' in values:
    line += f', train top-1 {values["accuracy_merged"]:.3f}'
  return line


def log_eval(writer, step: int, results: Dict[str, Any]) -> None:
  scalars = {f'eval/{k}': v for k, v in results.items()
             if isinstance(v, float)}
  metric = 'mAP' if 'mAP' in results else 'accuracy'
  scalars.update({f'eval/{metric}_{k}': v
                  for k, v in results['per_stream'].items()})
  # Representations: flat figures, and per-class dicts as one scalar each.
  for key, value in results.get('representations', {}).items():
    if isinstance(value, dict):
      scalars.update({f'representations/{key}/{name}': v
                      for name, v in value.items()})
    else:
      scalars[f'representations/{key}'] = value
  writer.write_scalars(step, scalars)


def flow_layer_scalars(params: Any) -> Dict[str, float]:
  """The flow layers' learned θ, λ and τ, e.g. {'flow_layer/theta': 0.3}.

  TV-L1's hyper-parameters are what the action losses can reshape in the
  flow layer; watching them shows whether it still computes a flow.
  """
  scalars = {}
  for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
    names = [getattr(k, 'key', str(k)) for k in path]
    if names[-1] in ('theta', 'lambda', 'tau') and 'flow_layer' in names:
      scalars['/'.join(names)] = float(eval_lib.to_host(leaf))
  return scalars


def _representation_summary(representations: Dict[str, Any]) -> str:
  """'; learned segmentation mIoU 0.61 against the teacher; learned flow
  direction accuracy 0.85' for what the run measured."""
  parts = []
  if 'seg_miou' in representations:
    parts.append(f"learned segmentation mIoU {representations['seg_miou']:.3f}"
                 ' against the teacher')
  if 'flow_direction_accuracy' in representations:
    parts.append('learned flow direction accuracy '
                 f"{representations['flow_direction_accuracy']:.3f}")
  return ''.join(f'; {p}' for p in parts)


def evaluation_line(results: Dict[str, Any]) -> str:
  """One evaluation in a line for the console: 'Step 600: merged top-1
  0.8906 on 256 held-out clips (chance 0.1667; single-stream heads: rgb
  0.1914, ...); learned segmentation mIoU ...' (mAP for multi-label data)."""
  streams = ', '.join(f'{k} {v:.4f}' for k, v in results['per_stream'].items()
                      if k != 'merged')
  if 'mAP' in results:
    head = (f"merged mAP {results['mAP']:.4f} on {results['num_examples']} "
            f'held-out videos (single-stream heads: {streams})')
  else:
    head = (f"merged top-1 {results['top1']:.4f} on "
            f"{results['num_examples']} held-out clips (chance "
            f"{1 / results['num_classes']:.4f}; single-stream heads: "
            f'{streams})')
  return (f"Step {results['step']}: {head}"
          f"{_representation_summary(results.get('representations', {}))}")
