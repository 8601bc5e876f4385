"""Pure train, eval and predict steps. No jit here: `train.py` jits them once
with explicit shardings; dependencies are keyword-only, bound with partial."""

from typing import Dict, Mapping, Tuple

import jax
import jax.numpy as jnp
import optax
from clu import metrics as clu_metrics

from airstreams_jax import losses
from airstreams_jax.train_state import TrainState


def train_step(state: TrainState, batch: Mapping[str, jnp.ndarray],
               loss_weights: jnp.ndarray, *, model, tx, schedule,
               metrics_cls: type, multi_label: bool
               ) -> Tuple[TrainState, clu_metrics.Collection]:
  """One optimisation step on a global batch.

  Args:
    state: the current state (donated by the caller).
    batch: 'video' uint8 `[B, T, H, W, 3]`, 'label', and 'masks' `[B, T, H, W]`
      when the semantic stream is on.
    loss_weights: `[5]` λ in `losses.LOSS_NAMES` order (a traced array).
    model: the `AIRStreams` module.
    tx: the optax transformation.
    schedule: the learning-rate schedule (for logging only).
    metrics_cls: `metrics.train_metrics()`.
    multi_label: sigmoid instead of softmax CE.

  Returns:
    The new state and this step's metrics.
  """
  dropout_rng = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    outputs, updates = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, batch['video'],
        train=True, rngs={'dropout': dropout_rng}, mutable=['batch_stats'])
    loss, terms = losses.total_loss(outputs, batch, loss_weights,
                                    multi_label=multi_label)
    return loss, (terms, outputs['logits'], updates['batch_stats'])

  (loss, (terms, logits, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(
      step=state.step + 1, params=optax.apply_updates(state.params, updates),
      batch_stats=batch_stats, opt_state=opt_state)
  step_metrics = metrics_cls.single_from_model_output(
      loss=loss, label=batch['label'], learning_rate=schedule(state.step),
      logits_merged=logits['merged'],
      **{f'loss_{name}': value for name, value in terms.items()})
  return new_state, step_metrics


def predict_step(state: TrainState, video: jnp.ndarray, *, model,
                 stream_heads: bool) -> Dict[str, jnp.ndarray]:
  """Logits of every head (or of the merged head only) in inference mode."""
  outputs = model.apply(
      {'params': state.params, 'batch_stats': state.batch_stats}, video,
      train=False, stream_heads=stream_heads)
  return outputs['logits']


def eval_step(state: TrainState, batch: Mapping[str, jnp.ndarray], *, model,
              metrics_cls: type) -> clu_metrics.Collection:
  """Metrics of one padded evaluation batch (`batch['mask']` marks real ones)."""
  logits = predict_step(state, batch['video'], model=model, stream_heads=True)
  return metrics_cls.single_from_model_output(
      label=batch['label'], mask=batch['mask'],
      **{f'logits_{head}': value for head, value in logits.items()})
