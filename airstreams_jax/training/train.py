"""The trainer: `train_and_evaluate(config, workdir)` and `evaluate_checkpoint`.

Library functions, callable from `main`, a test or a notebook. `setup.py`
turns the config into the model, state and jitted steps; this file runs them:
the loop, periodic evaluation and checkpoints, resuming from the workdir.
"""

import concurrent.futures
import contextlib
import json
import time
from typing import Any, Callable, Dict, Iterator, Optional

import jax
from absl import logging
from clu import metric_writers
from clu import periodic_actions
from tensorflow.io import gfile

from airstreams_jax import errors
from airstreams_jax import mesh as mesh_lib
from airstreams_jax.data import pipeline
from airstreams_jax.plotting import images
from airstreams_jax.training import checkpointing
from airstreams_jax.training import evaluation as eval_lib
from airstreams_jax.training import metrics as metrics_lib
from airstreams_jax.training import preemption
from airstreams_jax.training import reporting
from airstreams_jax.training import run_files
from airstreams_jax.training import setup as setup_lib


def run_evaluation(s: setup_lib.Setup, state: Any, eval_fn: Callable[..., Any],
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
    reporting.log_eval(writer, step, results)
    if hasattr(merged, 'mean_class_accuracy'):
      writer.write_images(step, {
          'eval/confusion_matrix': images.confusion_matrix_image(
              merged.mean_class_accuracy.matrix)[None]})
  return results


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


def _compile_ahead(s: setup_lib.Setup, executor: concurrent.futures.Executor,
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

  Raises:
    preemption.Preempted: on SIGTERM (or JAX's preemption notice), after
      saving the step every process reached; rerunning resumes from it.
  """
  with preemption.PreemptionWatch() as watch:
    return _train_and_evaluate(config, workdir, mesh, watch)


def _train_and_evaluate(config, workdir: str,
                        mesh: Optional[jax.sharding.Mesh],
                        watch: preemption.PreemptionWatch) -> Dict[str, Any]:
  s = setup_lib.setup(config, mesh)
  gfile.makedirs(workdir)
  run_files.write_run_info(config, s.meta, workdir)
  writer = metric_writers.create_default_writer(
      workdir, just_logging=jax.process_index() > 0)
  manager = checkpointing.make_manager(workdir, keep=config.keep_checkpoints,
                                       best_metric=config.best_metric)

  state_spec = checkpointing.abstract_like(s.state_shapes, s.state_sharding)
  loss_weights = jax.device_put(s.loss_weights, s.replicated)
  # Compiled by every process before any runs them (multi-host runs).
  train_fn = mesh_lib.CompiledTogether(
      setup_lib.jit_train_step(s, weights_fixed=True), 'train step')
  eval_fn = mesh_lib.CompiledTogether(setup_lib.jit_eval_step(s), 'eval step')
  sample_fn = mesh_lib.CompiledTogether(setup_lib.jit_sample_step(s),
                                        'sample step')
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
      state = setup_lib.create_state(s)
      logging.info(
          'Initialised a new state: %d parameters.',
          sum(x.size for x in jax.tree.leaves(s.state_shapes.params)))
      if config.init_from:
        state = setup_lib.initialise_from(s, state, config.init_from)
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
        reporting.check_step_finite(*unchecked, manager.latest_step)
      unchecked = (step, step_metrics)
      accumulated = (step_metrics if accumulated is None
                     else accumulated.merge(step_metrics))
      report(step, time.time())
      is_last = step == config.num_train_steps
      # Every process, every step (JAX's preemption protocol needs both).
      stop = watch.reached(step)
      # A preemption leaves little time: the evaluation due now is skipped
      # (the resumed run evaluates as usual).
      evaluated = (step % config.eval_every_steps == 0 or is_last) and not stop
      saved = (step % config.checkpoint_every_steps == 0 or is_last or
               (evaluated and config.best_metric) or stop)
      logged = step % config.log_every_steps == 0 or is_last
      if logged or evaluated or saved:
        reporting.check_step_finite(*unchecked, manager.latest_step)
        unchecked = None
      if logged:
        values = {k: float(v) for k, v in
                  eval_lib.to_host(accumulated).compute().items()}
        values.update(reporting.flow_layer_scalars(state.params))
        values['data_wait_fraction'] = data_wait / max(
            time.monotonic() - interval_start, 1e-9)
        writer.write_scalars(step,
                             {f'train/{k}': v for k, v in values.items()})
        logging.info('%s', reporting.losses_line(
            step, config.num_train_steps, values))
        accumulated = None
      if evaluated:
        with report.timed('eval'):
          results = run_evaluation(s, state, eval_fn, writer)
          if not is_last:  # main prints the last one with its file.
            logging.info('%s.', reporting.evaluation_line(results))
          reporting.log_samples(writer, step, sample_fn(state, batch))
      if saved:  # Evaluated states are saved too when the best one is kept.
        checkpointing.save(
            manager, step, state,
            {k: v for k, v in results.items() if isinstance(v, float)}
            if evaluated else None)
      if stop:  # Leaving closes the manager: the save completes first.
        raise preemption.Preempted(step)
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
  s = setup_lib.setup(config, mesh)
  manager = checkpointing.make_manager(workdir, keep=config.keep_checkpoints,
                                       best_metric=config.best_metric)
  state = checkpointing.restore_latest(
      manager, checkpointing.abstract_like(s.state_shapes, s.state_sharding))
  if state is None:
    raise errors.ConfigError(f'No checkpoint in {workdir}/checkpoints; train '
                            'first with --mode=train_and_eval.')
  results = run_evaluation(
      s, state,
      mesh_lib.CompiledTogether(setup_lib.jit_eval_step(s), 'eval step'))
  eval_lib.write_results(workdir, results)
  logging.info('Evaluation: %s', json.dumps(results))
  return results
