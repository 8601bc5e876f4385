"""Orbax checkpoints of the train state in `<workdir>/checkpoints`."""

import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from tensorflow.io import gfile

from airstreams_jax import errors
from airstreams_jax import user_paths

_policies = ocp.checkpoint_managers


def _directory(workdir: str) -> str:
  # Absolute (orbax wants it so) for a local workdir; gs:// kept as it is.
  return os.path.join(user_paths.absolute(workdir), 'checkpoints')


def make_manager(workdir: str, *, keep: int,
                 best_metric: str = '') -> ocp.CheckpointManager:
  """A manager that saves asynchronously and keeps the newest `keep`.

  With `best_metric`, the checkpoint with the highest value of that
  evaluation metric (given to `save`) is kept as well, however old, and
  `manager.best_step()` names it. The trainer decides when to save.
  """
  latest = _policies.LatestN(n=keep)
  best_fn = (lambda metrics: metrics[best_metric]) if best_metric else None
  policy = latest
  if best_metric:
    policy = _policies.AnyPreservationPolicy([
        latest,
        _policies.BestN(get_metric_fn=best_fn, n=1,
                        keep_checkpoints_without_metrics=False)])
  return ocp.CheckpointManager(
      _directory(workdir), item_handlers=_state_handler(),
      options=ocp.CheckpointManagerOptions(
          enable_async_checkpointing=True, best_fn=best_fn, best_mode='max',
          preservation_policy=policy,
          # A save cut short (a killed or preempted process) leaves a
          # temporary directory that is never restored from; remove it.
          cleanup_tmp_directories=True))


def _state_handler() -> ocp.PyTreeCheckpointHandler:
  """Orbax's standard handler, with replica-parallel saving off on CPU.

  Replica-parallel saving cuts every replicated array into one slice per
  device, so that each device writes a part. CPU devices share the host's
  memory, so there it only adds an eager slice per array and device: 14,000
  of them for the smoke state on 8 CPU devices, 7 s a save. Accelerators keep
  orbax's default.
  """
  handlers = ocp.type_handlers
  registry = handlers.create_type_handler_registry(
      (int, handlers.ScalarHandler()), (float, handlers.ScalarHandler()),
      (bytes, handlers.ScalarHandler()), (np.number, handlers.ScalarHandler()),
      (np.ndarray, handlers.NumpyHandler()),
      (jax.Array, handlers.ArrayHandler(
          use_replica_parallel=False if jax.default_backend() == 'cpu'
          else None)),
      (str, handlers.StringHandler()))
  return ocp.PyTreeCheckpointHandler(type_handler_registry=registry)


def abstract_like(shapes: Any, shardings: Any) -> Any:
  """ShapeDtypeStructs carrying the shardings to restore into."""
  return jax.tree.map(
      lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
      shapes, shardings)


def restore_latest(manager: ocp.CheckpointManager,
                   abstract_state: Any) -> Optional[Any]:
  """The newest saved state, placed with the given shardings, or None."""
  step = manager.latest_step()
  if step is None:
    return None
  return manager.restore(step, args=ocp.args.PyTreeRestore(
      abstract_state,
      restore_args=ocp.checkpoint_utils.construct_restore_args(
          abstract_state)))


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         metrics: Optional[Mapping[str, float]] = None) -> None:
  """Starts an asynchronous save of `state` as `step`.

  Errors of the previous asynchronous save surface here rather than being
  lost: orbax re-raises them on the next save or wait.

  Args:
    manager: from `make_manager`.
    step: the training step.
    state: the train state.
    metrics: evaluation results of this state (numbers only), which rank the
      checkpoint when the manager keeps the best one.
  """
  manager.save(step, args=ocp.args.PyTreeSave(state), force=True,
               metrics=dict(metrics) if metrics else None)


def restore_variables(workdir: str, sharding: jax.sharding.Sharding
                      ) -> Tuple[int, Dict[str, Any]]:
  """The parameters and batch statistics of another run's latest checkpoint.

  Shapes come from the checkpoint itself, not from the current model, so a
  run with another class count (or another device count) can read it.

  Args:
    workdir: the other run's workdir.
    sharding: where to place the restored arrays (e.g. replicated).

  Returns:
    (step, {'params': ..., 'batch_stats': ...}).

  Raises:
    errors.ConfigError: if `workdir` holds no checkpoint.
  """
  directory = _directory(workdir)
  if not gfile.isdir(directory):
    raise errors.ConfigError(
        f'{workdir} has no checkpoints/ folder; give the workdir of a '
        'training run that has saved a checkpoint.')
  manager = ocp.CheckpointManager(
      directory, item_handlers=ocp.StandardCheckpointHandler(),
      options=ocp.CheckpointManagerOptions(read_only=True))
  step = manager.latest_step()
  if step is None:
    raise errors.ConfigError(
        f'{workdir}: no checkpoint in {directory} yet; give the workdir of a '
        'training run that has saved a checkpoint.')
  abstract = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
      manager.item_metadata(step))
  restored = manager.restore(step, args=ocp.args.StandardRestore(abstract))
  manager.close()
  return step, {k: restored[k] for k in ('params', 'batch_stats')}


def merge_matching(fresh: Any, pretrained: Any) -> Tuple[Any, List[str]]:
  """Takes each array of `pretrained` whose path and shape `fresh` has.

  Args:
    fresh: the new model's freshly initialised variables (a nested dict).
    pretrained: variables of another run.

  Returns:
    The merged tree (the structure of `fresh`) and the paths kept from
    `fresh`: those missing in `pretrained` or of another shape, such as the
    heads when the class count differs.
  """
  flat_pretrained = {jax.tree_util.keystr(path): leaf for path, leaf in
                     jax.tree_util.tree_flatten_with_path(pretrained)[0]}
  kept = []

  def pick(path, leaf):
    key = jax.tree_util.keystr(path)
    other = flat_pretrained.get(key)
    if other is None or np.shape(other) != np.shape(leaf):
      kept.append(key)
      return leaf
    return other.astype(leaf.dtype)
  merged = jax.tree_util.tree_map_with_path(pick, fresh)
  return merged, kept


def log_merge(workdir: str, step: int, kept: List[str], total: int) -> None:
  logging.info('init_from %s (step %d): %d of %d arrays restored; '
               're-initialised: %s', workdir, step, total - len(kept), total,
               ', '.join(kept) or 'none')
