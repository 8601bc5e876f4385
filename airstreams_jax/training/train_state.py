"""The training state: a pytree of arrays only, so it shards and checkpoints."""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax


@flax.struct.dataclass
class TrainState:
  step: jnp.ndarray
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jnp.ndarray  # Base (threefry) key; each step folds in its step number.


def init_state(seed: jnp.ndarray, sample_video: jnp.ndarray, *, model,
               tx: optax.GradientTransformation) -> TrainState:
  """Initialises parameters and optimiser state (pure; jit it).

  Parameters are drawn with the 'rbg' generator: XLA:CPU expands every
  random draw into an unrolled hash, and for the ~230 parameter arrays of the
  synthetic model that dominates the init compile (measured here: 37 s with
  rbg against 46 s with the default partitionable threefry, same load).
  """
  init_key = jax.random.key(seed, impl='rbg')
  variables = model.init({'params': init_key}, sample_video, train=False)
  params = variables['params']
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get('batch_stats', {}),
                    opt_state=tx.init(params),
                    rng=jax.random.PRNGKey(seed))
