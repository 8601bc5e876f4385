"""Orbax checkpoints of the train state in `<workdir>/checkpoints`."""

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


def make_manager(workdir: str, *, keep: int) -> ocp.CheckpointManager:
  """A manager that saves asynchronously and keeps the newest `keep`.

  The trainer decides when to save (periodically and at the last step).
  """
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
      options=ocp.CheckpointManagerOptions(max_to_keep=keep,
                                           enable_async_checkpointing=True))


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
  return manager.restore(step, args=ocp.args.StandardRestore(abstract_state))


def save(manager: ocp.CheckpointManager, step: int, state: Any) -> None:
  """Starts an asynchronous save of `state` as `step`.

  Errors of the previous asynchronous save surface here rather than being
  lost: orbax re-raises them on the next save or wait.
  """
  manager.save(step, args=ocp.args.StandardSave(state), force=True)
