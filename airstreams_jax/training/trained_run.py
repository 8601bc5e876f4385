"""A finished (or checkpointed) training run, loaded for inference: its
config, class names, model and latest parameters. What predict, visualize
and export start from."""

import dataclasses
from typing import Any, Dict

import jax.numpy as jnp
import ml_collections

from airstreams_jax import mesh as mesh_lib
from airstreams_jax.models import airstreams
from airstreams_jax.training import checkpointing
from airstreams_jax.training import run_files
from airstreams_jax.training import train_state


@dataclasses.dataclass(frozen=True)
class TrainedRun:
  config: ml_collections.ConfigDict
  classes: Dict[str, Any]  # classes.json: class_names, mask_class_names, ...
  model: airstreams.AIRStreams
  step: int
  variables: Dict[str, Any]  # {'params': ..., 'batch_stats': ...}

  @classmethod
  def load(cls, workdir: str) -> 'TrainedRun':
    """Raises errors.ConfigError naming what is missing."""
    config, classes = run_files.load_run(workdir)
    mesh = mesh_lib.make_mesh((('data', -1),))
    step, variables = checkpointing.restore_variables(
        workdir, mesh_lib.replicated(mesh))
    model = airstreams.build_model(
        config.model, num_classes=classes['num_classes'],
        num_seg_classes=len(classes['mask_class_names']))
    return cls(config, classes, model, step, variables)

  def state(self) -> train_state.TrainState:
    """An inference-only train state (no optimiser state, no rng)."""
    return train_state.TrainState(
        step=jnp.int32(self.step), params=self.variables['params'],
        batch_stats=self.variables['batch_stats'], opt_state=(), rng=None)
