"""Orbax checkpoints of the train state in `<workdir>/checkpoints`."""

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


def make_manager(workdir: str, *, save_every_steps: int,
                 keep: int) -> ocp.CheckpointManager:
  """A manager that saves asynchronously every `save_every_steps` steps."""
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
      options=ocp.CheckpointManagerOptions(
          save_interval_steps=save_every_steps, max_to_keep=keep,
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


def save(manager: ocp.CheckpointManager, step: int, state: Any,
         force: bool = False) -> None:
  """Starts an asynchronous save (if the interval or `force` asks for one).

  Errors of the previous asynchronous save surface here rather than being
  lost: orbax re-raises them on the next save or wait.
  """
  manager.save(step, args=ocp.args.StandardSave(state), force=force)
