"""The trainer: `train_and_evaluate(config, workdir)` and `evaluate_checkpoint`.

Library functions, callable from `main`, a test or a notebook. The steps in
`steps.py` are jitted here once, with explicit shardings and the state donated.
"""

import concurrent.futures
import contextlib
import dataclasses
import functools
import json
import math
import os
import re
import time
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from clu import metric_writers
from clu import periodic_actions
from tensorflow.io import gfile

from airstreams_jax import errors
from airstreams_jax.training import evaluation as eval_lib
from airstreams_jax import mesh as mesh_lib
from airstreams_jax.training import metrics as metrics_lib
from airstreams_jax import sharding as sharding_lib
from airstreams_jax.plotting import images
from airstreams_jax.data import dataset_from_config
from airstreams_jax.data import pipeline
from airstreams_jax.models import airstreams
from airstreams_jax.models import tvn
from airstreams_jax.training import checkpointing
from airstreams_jax.training import config_checks
from airstreams_jax.training import losses
from airstreams_jax.training import optim
from airstreams_jax.training import steps
from airstreams_jax.training import train_state as state_lib


# Class names of the labels and the teacher, beside config.json in a workdir.
CLASSES_FILE = 'classes.json'


def read_loss_weights(config) -> np.ndarray:
  """The five λ from `loss_weights` or `loss_weights_file`, checked.

  Raises:
    errors.ConfigError: a missing or malformed weights file, a bad weight.
  """
  if config.loss_weights_file and not gfile.exists(config.loss_weights_file):
    raise errors.ConfigError(
        f'config.loss_weights_file={config.loss_weights_file!r} does not '
        'exist; give the path of a JSON file with the five loss weights.')
  try:
    return losses.loss_weights_vector(config.loss_weights,
                                      config.loss_weights_file)
  except json.JSONDecodeError as e:
    raise errors.ConfigError(
        f'config.loss_weights_file={config.loss_weights_file!r} is not JSON '
        f'({e}); write e.g. {{"rgb": 1, "flow": 0, "semantic": 0, '
        '"merged": 1, "interm": 1}.') from None
  except ValueError as e:
    raise errors.ConfigError(
        f'config.loss_weights{"_file" if config.loss_weights_file else ""}: '
        f'{e}') from None


def validate_config(config, mesh: jax.sharding.Mesh) -> None:
  """Checks what would otherwise fail late, after data building or compiling.

  Raises:
    errors.ConfigError: with a one-line message naming the problem and the fix.
  """
  data_size = mesh.shape[mesh_lib.DATA_AXIS]
  for key in ('batch_size', 'eval_batch_size'):
    value = config[key]
    if value <= 0 or value % data_size or value % jax.process_count():
      raise errors.ConfigError(
          f'config.{key}={value} is not divisible by the {data_size} devices '
          f'of the data axis ({jax.process_count()} processes); use a '
          f'multiple of {data_size}, e.g. --config.{key}='
          f'{max(data_size, value // data_size * data_size)}.')
  if config.num_train_steps < 0:
    raise errors.ConfigError('config.num_train_steps must be >= 0.')
  for key in ('log_every_steps', 'eval_every_steps', 'checkpoint_every_steps'):
    if config[key] <= 0:
      raise errors.ConfigError(
          f'config.{key} must be positive, got {config[key]}.')
  unknown = sorted(set(config.model.streams) - set(airstreams.STREAMS))
  if not config.model.streams or unknown:
    raise errors.ConfigError(
        f'config.model.streams={tuple(config.model.streams)} must be a '
        f'non-empty subset of {airstreams.STREAMS}.')
  grad_scale = config.model.get('grad_scale', 1.0)
  if not (math.isfinite(grad_scale) and grad_scale >= 0.0):
    raise errors.ConfigError(
        f'config.model.grad_scale={grad_scale} must be a finite value >= 0 '
        '(1 propagates the action gradients into the representations, 0 '
        'stops them).')
  unknown = sorted(set(config.model.stop_gradient_at) - {'flow', 'semantic'})
  if unknown:
    raise errors.ConfigError(
        f'config.model.stop_gradient_at has {unknown}; use a subset of '
        "('flow', 'semantic').")
  try:  # Tower specs, before any data work.
    for spec in config.model.tower:
      tvn.BlockSpec.from_config(spec)
  except (ValueError, TypeError) as e:
    raise errors.ConfigError(f'config.model.tower: {e}') from None
  try:
    sharding_lib.check_rules(config.sharding_rules, mesh)
  except ValueError as e:
    raise errors.ConfigError(str(e)) from None
  except TypeError:
    raise errors.ConfigError(
        f'config.sharding_rules={config.sharding_rules!r} is not (regex, '
        "mesh axes) pairs; use e.g. \"(('kernel$', ('model',)),)\".") from None
  if config.init_from and not gfile.isdir(
      os.path.join(config.init_from, 'checkpoints')):
    raise errors.ConfigError(
        f'config.init_from={config.init_from!r} has no checkpoints/ folder; '
        'give the workdir of a finished run (or --config.init_from=).')
  if not 1 <= config.model.merge_after < len(config.model.tower):
    raise errors.ConfigError(
        f'config.model.merge_after={config.model.merge_after} must be in '
        f'[1, {len(config.model.tower) - 1}].')


@dataclasses.dataclass(frozen=True)
class Setup:
  """Everything derived from the config that the loops share."""
  config: Any
  mesh: jax.sharding.Mesh
  builder: Any
  meta: dataset_from_config.DatasetMeta
  model: airstreams.AIRStreams
  tx: Any
  schedule: Any
  state_shapes: Any
  state_sharding: Any
  loss_weights: np.ndarray  # The five λ, in losses.LOSS_NAMES order.

  @property
  def batch_sharding(self):
    return mesh_lib.data_sharding(self.mesh)

  @property
  def replicated(self):
    return mesh_lib.replicated(self.mesh)


def _sample_video(config) -> jax.ShapeDtypeStruct:
  d = config.dataset
  return jax.ShapeDtypeStruct(
      (1, d.num_frames, d.image_size, d.image_size, 3), jnp.uint8)


@dataclasses.dataclass(frozen=True)
class CheckedConfig:
  """What `check_config` derived on the way."""
  mesh: jax.sharding.Mesh
  loss_weights: np.ndarray
  tx: Any
  schedule: Any
  builder: Any  # Made, not prepared.


def check_config(config, mesh: Optional[jax.sharding.Mesh] = None,
                 make_builder: bool = True) -> CheckedConfig:
  """Every check of `config` that needs no data and no compiling.

  `make_builder=False` leaves the dataset's builder out (`builder` None): a
  real dataset's builder needs its files, which a benchmark of the model
  does not have.

  Raises:
    errors.ConfigError: one line naming the key and what it accepts.
  """
  config_checks.check_values(config)
  if mesh is None:
    try:
      mesh = mesh_lib.make_mesh(config.mesh)
    except ValueError as e:
      raise errors.ConfigError(str(e)) from None
    except TypeError:
      raise errors.ConfigError(
          f'config.mesh={config.mesh!r} is not (axis name, size) pairs; use '
          "e.g. --config.mesh=\"(('data', -1),)\".") from None
  validate_config(config, mesh)
  loss_weights = read_loss_weights(config)
  try:  # Optimiser names and schedules, also before any data work.
    tx = optim.make_optimizer(config.optimizer, config.num_train_steps)
    schedule = optim.make_schedule(config.optimizer, config.num_train_steps)
  except ValueError as e:
    raise errors.ConfigError(str(e)) from None
  return CheckedConfig(mesh, loss_weights, tx, schedule,
                       dataset_from_config.make_builder(config.dataset)
                       if make_builder else None)


def setup(config, mesh: Optional[jax.sharding.Mesh] = None) -> Setup:
  """Validates the config, prepares the dataset, builds model and optimiser."""
  checked = check_config(config, mesh)
  mesh, builder = checked.mesh, checked.builder
  # Logged once the config is known to be good: a config error stays the
  # only line on the console.
  logging.info('JAX devices: %d (%d per process), %d processes; mesh %s.',
               jax.device_count(), jax.local_device_count(),
               jax.process_count(), dict(mesh.shape))
  dataset_from_config.prepare(builder)
  meta = dataset_from_config.dataset_meta(builder)
  if meta.multi_label != config.model.multi_label:
    raise errors.ConfigError(
        f'Dataset {builder.info.full_name} is '
        f'{"multi" if meta.multi_label else "single"}-label; set '
        f'--config.model.multi_label={meta.multi_label}.')
  _check_best_metric(config.best_metric, meta)
  warning = flip_warning(config.dataset.random_flip, meta.class_names)
  if warning:
    logging.warning(warning)
  return model_setup(config, checked, meta)


def model_setup(config, checked: CheckedConfig,
                meta: dataset_from_config.DatasetMeta) -> Setup:
  """The model, optimiser and state layout for a dataset that `meta`
  describes; reads no data (`setup` prepares the dataset first; benchmarks
  call this directly with the class counts of a dataset they do not have)."""
  mesh, loss_weights = checked.mesh, checked.loss_weights
  tx, schedule, builder = checked.tx, checked.schedule, checked.builder
  model = airstreams.build_model(config.model, num_classes=meta.num_classes,
                                 num_seg_classes=meta.num_seg_classes)
  init = functools.partial(state_lib.init_state, model=model, tx=tx)
  state_shapes = jax.eval_shape(init, config.seed,
                                _sample_video(config))
  # Replicated (data parallelism) unless a sharding rule says otherwise.
  state_sharding = sharding_lib.state_shardings(
      state_shapes, mesh, config.sharding_rules)
  return Setup(config, mesh, builder, meta, model, tx, schedule, state_shapes,
               state_sharding, loss_weights)


# Class-name words whose meaning a left-right flip of the clip reverses.
_MIRRORED_WORDS = ('left', 'right')


def flip_warning(random_flip: bool, class_names) -> str:
  """A warning when training flips clips whose class names say left or
  right (a flipped clip then shows the opposite motion under the same
  label, and the direction cannot be learned); '' otherwise."""
  if not random_flip:
    return ''
  named = [n for n in class_names
           if set(re.split(r'[^a-z]+', str(n).lower())) & set(_MIRRORED_WORDS)]
  if not named:
    return ''
  return (f'config.dataset.random_flip is on, but class names say left or '
          f'right ({", ".join(named[:3])}{", ..." if len(named) > 3 else ""})'
          ': a flipped clip shows the opposite direction under the same '
          'label; set --config.dataset.random_flip=false if direction '
          'matters.')


def _check_best_metric(metric: str, meta: dataset_from_config.DatasetMeta) -> None:
  if meta.multi_label:
    valid = ('mAP',)
  else:
    valid = ('top1', 'mean_class_accuracy') + (
        ('top5',) if meta.num_classes >= 5 else ())
  if metric and metric not in valid:
    raise errors.ConfigError(
        f'config.best_metric={metric!r} is not computed for this dataset; '
        f'use one of {valid} (or \'\' to keep only the latest checkpoints).')


def create_state(s: Setup) -> state_lib.TrainState:
  """Initialises the state directly into its shardings."""
  init = functools.partial(state_lib.init_state, model=s.model, tx=s.tx)
  sample = jnp.zeros(_sample_video(s.config).shape, jnp.uint8)
  return jax.jit(init, out_shardings=s.state_sharding)(
      jnp.int32(s.config.seed), sample)


def initialise_from(s: Setup, state: state_lib.TrainState,
                    workdir: str) -> state_lib.TrainState:
  """Replaces parameters and batch statistics by those of another run.

  Arrays are matched by path and shape; the others (the heads, when the
  class count differs, as from Moments in Time to Charades) keep their fresh
  initialisation. The optimiser state and step start afresh.
  """
  step, pretrained = checkpointing.restore_variables(workdir, s.replicated)
  fresh = {'params': state.params, 'batch_stats': state.batch_stats}
  merged, kept = checkpointing.merge_matching(fresh, pretrained)
  total = len(jax.tree.leaves(fresh))
  if len(kept) == total:
    raise errors.ConfigError(
        f'config.init_from={workdir!r}: none of its arrays fits this model; '
        'was it trained with another model config?')
  checkpointing.log_merge(workdir, step, kept, total)
  merged = jax.device_put(merged, {'params': s.state_sharding.params,
                                   'batch_stats': s.state_sharding.batch_stats})
  return state.replace(params=merged['params'],
                       batch_stats=merged['batch_stats'])


def train_step_fn(s: Setup, weights_fixed: bool = False
                  ) -> Callable[..., Any]:
  """`steps.train_step` bound to the setup's model, optimiser and metrics.

  With `weights_fixed`, every call must pass `s.loss_weights` (the trainer
  does): the losses whose λ is 0 there are then not differentiated (see
  `losses.total_loss`), which under the paper's weights skips the flow and
  semantic streams' upper towers and heads in the backward pass. Without it
  any weights may be passed (the evolution's candidates).
  """
  return functools.partial(
      steps.train_step, model=s.model, tx=s.tx, schedule=s.schedule,
      metrics_cls=metrics_lib.train_metrics(),
      multi_label=s.meta.multi_label,
      untrained_losses=(losses.untrained_losses(s.loss_weights)
                        if weights_fixed else ()))


def jit_train_step(s: Setup, weights_fixed: bool = False
                   ) -> Callable[..., Any]:
  """The train step, compiled once: state donated, batch split on 'data';
  `weights_fixed` as in `train_step_fn`."""
  return jax.jit(train_step_fn(s, weights_fixed),
                 in_shardings=(s.state_sharding, s.batch_sharding,
                               s.replicated),
                 out_shardings=(s.state_sharding, s.replicated),
                 donate_argnums=0)


def jit_eval_step(s: Setup) -> Callable[..., Any]:
  """The eval step: per-video scores, replicated so every host has them."""
  step = functools.partial(steps.eval_step, model=s.model,
                           multi_label=s.meta.multi_label)
  return jax.jit(step, in_shardings=(s.state_sharding, s.batch_sharding),
                 out_shardings=s.replicated)


def jit_sample_step(s: Setup, num_clips: int = 2) -> Callable[..., Any]:
  """Flow and segmentation of a few training clips, for TensorBoard."""
  step = functools.partial(steps.sample_step, model=s.model,
                           num_clips=num_clips)
  return jax.jit(step, in_shardings=(s.state_sharding, s.batch_sharding),
                 out_shardings=s.replicated)


def _log_samples(writer, step: int, samples: Dict[str, Any]) -> None:
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


def run_evaluation(s: Setup, state: Any, eval_fn: Callable[..., Any],
                   writer: Optional[Any] = None) -> Dict[str, Any]:
  """Evaluates `state` on the eval split; adds the step and params hash.

  With a `writer`, also writes the scalars and the confusion-matrix image.
  """
  step = int(eval_lib.to_host(state.step))
  logging.info('Evaluating step %d on %s.', step, s.builder.info.full_name)
  ds, _ = pipeline.make_eval_dataset(
      s.builder, s.config.dataset,
      local_batch_size=pipeline.local_batch_size(s.config.eval_batch_size),
      process_index=jax.process_index(), process_count=jax.process_count())
  heads = tuple(s.config.model.streams) + ('merged',)
  results, merged = eval_lib.evaluate(
      eval_fn, state, pipeline.global_batches(ds, s.batch_sharding),
      metrics_lib.eval_metrics(s.meta.num_classes, heads, s.meta.multi_label,
                               s.meta.mask_class_names))
  collapse = metrics_lib.segmentation_collapse(
      results.get('representations', {}))
  if collapse:
    logging.warning('Step %d: %s', step, collapse)
  results['step'] = step
  results['params_sha256'] = eval_lib.params_sha256(state.params)
  results['num_classes'] = s.meta.num_classes
  if writer is not None:
    _log_eval(writer, step, results)
    if hasattr(merged, 'mean_class_accuracy'):
      writer.write_images(step, {
          'eval/confusion_matrix': images.confusion_matrix_image(
              merged.mean_class_accuracy.matrix)[None]})
  return results


def _write_run_info(config, meta: dataset_from_config.DatasetMeta, workdir: str) -> None:
  """config.json and classes.json: what `predict` needs besides checkpoints."""
  if jax.process_index() == 0:
    with gfile.GFile(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    with gfile.GFile(os.path.join(workdir, CLASSES_FILE), 'w') as f:
      json.dump(dataclasses.asdict(meta), f, indent=2)


def load_run(workdir: str) -> Tuple[ml_collections.ConfigDict, Dict[str, Any]]:
  """The config and class names a training run wrote into its workdir."""
  paths = [os.path.join(workdir, name)
           for name in ('config.json', CLASSES_FILE)]
  missing = [p for p in paths if not gfile.exists(p)]
  if missing:
    raise errors.ConfigError(
        f'{missing[0]} is missing; --workdir must be the workdir of a '
        'training run (python -m airstreams_jax.main).')
  with gfile.GFile(paths[0]) as f:
    config = ml_collections.ConfigDict(json.load(f))
  with gfile.GFile(paths[1]) as f:
    classes = json.load(f)
  return config, classes


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


def _losses_line(step: int, num_steps: int, values: Dict[str, float]) -> str:
  """'step 200/600: loss 3.214 (rgb 1.792, merged 1.205, interm 0.421),
  train top-1 0.547' for the console (TensorBoard has every scalar)."""
  terms = ', '.join(f'{k[len("loss_"):]} {v:.3f}' for k, v in values.items()
                    if k.startswith('loss_'))
  line = f'step {step}/{num_steps}: loss {values["loss"]:.3f} ({terms})'
  if 'accuracy_merged' in values:
    line += f', train top-1 {values["accuracy_merged"]:.3f}'
  return line


def _log_eval(writer, step: int, results: Dict[str, Any]) -> None:
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


@contextlib.contextmanager
def _compile_worker() -> Iterator[concurrent.futures.Executor]:
  """One thread that compiles steps ahead of their first call."""
  executor = concurrent.futures.ThreadPoolExecutor(
      1, thread_name_prefix='compile_ahead')
  try:
    yield executor
  finally:
    # When training stops early, a compile not yet started is dropped
    # rather than waited for (one under way ends on its own).
    executor.shutdown(wait=False, cancel_futures=True)


def _compile_ahead(s: Setup, executor: concurrent.futures.Executor,
                   train_fn: mesh_lib.CompiledTogether,
                   eval_fn: mesh_lib.CompiledTogether,
                   state_spec: Any, loss_weights: jax.Array,
                   latest_step: Optional[int]) -> None:
  """Queues the compile the run needs first on `executor`: the train step,
  or the eval step when the latest checkpoint is already the last step. The
  batch shapes come from the pipelines' element specs (building a tf.data
  pipeline reads nothing). The eval and sample steps of a training run
  compile at their first call: a compile still under way when training
  fails (a full disk) would keep the process alive past its one-line error
  while Orbax's failed background writes print theirs."""
  config = s.config
  if (latest_step or 0) < config.num_train_steps:
    train_spec = pipeline.global_batch_spec(
        pipeline.make_train_dataset(
            s.builder, config.dataset,
            local_batch_size=pipeline.local_batch_size(config.batch_size),
            seed=config.seed, process_index=jax.process_index(),
            process_count=jax.process_count()),
        config.batch_size, s.batch_sharding)
    train_fn.compile_ahead(executor, state_spec, train_spec, loss_weights)
  else:
    eval_ds, _ = pipeline.make_eval_dataset(
        s.builder, config.dataset,
        local_batch_size=pipeline.local_batch_size(config.eval_batch_size),
        process_index=jax.process_index(),
        process_count=jax.process_count())
    eval_fn.compile_ahead(executor, state_spec, pipeline.global_batch_spec(
        eval_ds, config.eval_batch_size, s.batch_sharding))


def train_and_evaluate(config, workdir: str,
                       mesh: Optional[jax.sharding.Mesh] = None
                       ) -> Dict[str, Any]:
  """Trains, evaluates periodically and at the end, resumes from `workdir`.

  Args:
    config: the (locked) experiment ConfigDict.
    workdir: where checkpoints, TensorBoard events, `config.json` and
      `eval_results.json` go. Training resumes from its latest checkpoint.
    mesh: optional device mesh; by default built from `config.mesh`.

  Returns:
    The final evaluation results (also written to `eval_results.json`).
  """
  s = setup(config, mesh)
  gfile.makedirs(workdir)
  _write_run_info(config, s.meta, workdir)
  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)
  manager = checkpointing.make_manager(workdir, keep=config.keep_checkpoints,
                                       best_metric=config.best_metric)

  state_spec = checkpointing.abstract_like(s.state_shapes, s.state_sharding)
  loss_weights = jax.device_put(s.loss_weights, s.replicated)
  # Compiled by every process before any runs them (multi-host runs).
  train_fn = mesh_lib.CompiledTogether(
      jit_train_step(s, weights_fixed=True), 'train step')
  eval_fn = mesh_lib.CompiledTogether(jit_eval_step(s), 'eval step')
  sample_fn = mesh_lib.CompiledTogether(jit_sample_step(s), 'sample step')
  # However training ends (finished, a non-finite step, an exception), the
  # asynchronous save in flight completes before the function returns.
  with metric_writers.ensure_flushes(writer), contextlib.closing(manager), \
      _compile_worker() as compiler:
    # The first step compiles on a worker thread while the state is
    # initialised or restored.
    _compile_ahead(s, compiler, train_fn, eval_fn, state_spec, loss_weights,
                   latest_step=manager.latest_step())
    state = checkpointing.restore_latest(manager, state_spec)
    if state is None:
      state = create_state(s)
      logging.info(
          'Initialised a new state: %d parameters.',
          sum(x.size for x in jax.tree.leaves(s.state_shapes.params)))
      if config.init_from:
        state = initialise_from(s, state, config.init_from)
    start_step = int(eval_lib.to_host(state.step))
    if start_step:
      logging.info('Resumed from the checkpoint of step %d in %s.',
                   start_step, workdir)

    train_ds = pipeline.make_train_dataset(
        s.builder, config.dataset,
        local_batch_size=pipeline.local_batch_size(config.batch_size),
        # A resumed run continues the stream exactly where it stopped.
        seed=config.seed, start_step=start_step,
        process_index=jax.process_index(),
        process_count=jax.process_count())
    train_iter = pipeline.global_batches(train_ds, s.batch_sharding)

    report = periodic_actions.ReportProgress(
        num_train_steps=config.num_train_steps, writer=writer,
        every_steps=config.log_every_steps, every_secs=None)
    results, accumulated, unchecked = None, None, None
    if start_step < config.num_train_steps:
      logging.info('Training steps %d-%d; the first waits for the train step '
                   'to compile.',
                   start_step + 1, config.num_train_steps)
    # Share of the training wall time spent waiting for the input pipeline,
    # per logging interval (TensorBoard's train/data_wait_fraction).
    data_wait, interval_start = 0.0, time.monotonic()
    for step in range(start_step + 1, config.num_train_steps + 1):
      with report.timed('data', wait_jax_async_dispatch=False):
        waited_from = time.monotonic()
        batch = next(train_iter)
        data_wait += time.monotonic() - waited_from
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        state, step_metrics = train_fn(state, batch, loss_weights)
      # Every step is checked, one step late so that one stays queued on the
      # devices; and before anything is logged, evaluated or saved.
      if unchecked is not None:
        check_step_finite(*unchecked, manager.latest_step)
      unchecked = (step, step_metrics)
      accumulated = (step_metrics if accumulated is None
                     else accumulated.merge(step_metrics))
      report(step, time.time())
      is_last = step == config.num_train_steps
      evaluated = step % config.eval_every_steps == 0 or is_last
      saved = (step % config.checkpoint_every_steps == 0 or is_last or
               (evaluated and config.best_metric))
      logged = step % config.log_every_steps == 0 or is_last
      if logged or evaluated or saved:
        check_step_finite(*unchecked, manager.latest_step)
        unchecked = None
      if logged:
        values = {k: float(v) for k, v in
                  eval_lib.to_host(accumulated).compute().items()}
        values.update(flow_layer_scalars(state.params))
        values['data_wait_fraction'] = data_wait / max(
            time.monotonic() - interval_start, 1e-9)
        writer.write_scalars(step,
                             {f'train/{k}': v for k, v in values.items()})
        logging.info('%s', _losses_line(step, config.num_train_steps, values))
        accumulated = None
      if evaluated:
        with report.timed('eval'):
          results = run_evaluation(s, state, eval_fn, writer)
          _log_samples(writer, step, sample_fn(state, batch))
      if saved:  # Evaluated states are saved too when the best one is kept.
        checkpointing.save(
            manager, step, state,
            {k: v for k, v in results.items() if isinstance(v, float)}
            if evaluated else None)
      if step % config.log_every_steps == 0:  # Evaluation and saving excluded.
        data_wait, interval_start = 0.0, time.monotonic()
    if results is None:  # Nothing left to train: evaluate what was restored.
      results = run_evaluation(s, state, eval_fn)
  eval_lib.write_results(workdir, results)
  return results


def evaluate_checkpoint(config, workdir: str,
                        mesh: Optional[jax.sharding.Mesh] = None
                        ) -> Dict[str, Any]:
  """Evaluates the latest checkpoint in `workdir` and writes the results."""
  s = setup(config, mesh)
  manager = checkpointing.make_manager(workdir, keep=config.keep_checkpoints,
                                       best_metric=config.best_metric)
  state = checkpointing.restore_latest(
      manager, checkpointing.abstract_like(s.state_shapes, s.state_sharding))
  if state is None:
    raise errors.ConfigError(f'No checkpoint in {workdir}/checkpoints; train '
                            'first with --mode=train_and_eval.')
  results = run_evaluation(
      s, state, mesh_lib.CompiledTogether(jit_eval_step(s), 'eval step'))
  eval_lib.write_results(workdir, results)
  logging.info('Evaluation: %s', json.dumps(results))
  return results
