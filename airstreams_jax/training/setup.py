"""From a config to what the loops share: `setup` (config checked, dataset
prepared, model, optimiser, state layout), the state's creation and
`init_from`, and the steps of `steps.py` jitted once with explicit shardings
and the state donated."""

import dataclasses
import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from airstreams_jax import errors
from airstreams_jax import mesh as mesh_lib
from airstreams_jax import sharding as sharding_lib
from airstreams_jax.data import dataset_from_config
from airstreams_jax.models import airstreams
from airstreams_jax.training import checkpointing
from airstreams_jax.training import config_checks
from airstreams_jax.training import losses
from airstreams_jax.training import metrics as metrics_lib
from airstreams_jax.training import steps
from airstreams_jax.training import train_state as state_lib


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


def setup(config, mesh: Optional[jax.sharding.Mesh] = None) -> Setup:
  """Validates the config, prepares the dataset, builds model and optimiser."""
  checked = config_checks.check_config(config, mesh)
  mesh, builder = checked.mesh, checked.builder
  # Logged once the config is known to be good: a config error stays the
  # only line on the console.
  logging.info('JAX devices: %d (%d per process), %d processes; mesh %s.',
               jax.device_count(), jax.local_device_count(),
               jax.process_count(), dict(mesh.shape))
  dataset_from_config.prepare(builder)
  meta = dataset_from_config.dataset_meta(builder)
  config_checks.check_against_dataset(config, meta, builder.info.full_name)
  return model_setup(config, checked, meta)


def model_setup(config, checked: config_checks.CheckedConfig,
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


def jit_init(s: Setup) -> Callable[[int], state_lib.TrainState]:
  """seed -> a fresh state in its shardings; one compile serves every seed
  (the evolution's repeats each start from their own)."""
  init = jax.jit(functools.partial(state_lib.init_state, model=s.model,
                                   tx=s.tx), out_shardings=s.state_sharding)
  sample = jnp.zeros(_sample_video(s.config).shape, jnp.uint8)
  return lambda seed: init(jnp.int32(seed), sample)


def create_state(s: Setup) -> state_lib.TrainState:
  """Initialises the state directly into its shardings."""
  return jit_init(s)(s.config.seed)


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
