"""The AIRStreams objective.

    L = λ_rgb L_rgb + λ_flow L_flow + λ_sem L_sem + λ_merged L_merged
        + λ_interm L_seg

The λ arrive as a traced `[5]` array (order `LOSS_NAMES`), never as Python
floats, so one compiled step serves any weighting and `vmap` can range over
candidate weightings during evolution.
"""

import json
from typing import Any, Dict, Mapping, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tensorflow.io import gfile

LOSS_NAMES = ('rgb', 'flow', 'semantic', 'merged', 'interm')
# Keys a weights file may hold beside the five λ, which training ignores:
# the evolution records there whether full training confirmed its weights
# (airstreams_jax/evolution/confirm.py), so the file that trains with them
# also says how far to trust them.
RECORD_KEYS = ('confirmation',)


def loss_weights_vector(weights: Mapping[str, float],
                        weights_file: str = '') -> np.ndarray:
  """The five λ as a float32 `[5]` array in `LOSS_NAMES` order.

  Args:
    weights: a mapping with exactly the keys of `LOSS_NAMES`.
    weights_file: optional JSON file with the same keys (and any of
      `RECORD_KEYS`, ignored); replaces `weights`.

  Returns:
    The weights, float32, shape `[5]`.
  """
  if weights_file:
    with gfile.GFile(weights_file) as f:
      weights = json.load(f)
    if isinstance(weights, dict):
      weights = {k: v for k, v in weights.items() if k not in RECORD_KEYS}
  if not hasattr(weights, 'keys') or set(weights) != set(LOSS_NAMES):
    raise ValueError(f'loss weights need exactly the keys {LOSS_NAMES}, got '
                     f'{sorted(weights) if hasattr(weights, "keys") else weights}.')
  vector = np.asarray([float(weights[k]) for k in LOSS_NAMES], np.float32)
  bad = [k for k, w in zip(LOSS_NAMES, vector) if not (np.isfinite(w) and w >= 0)]
  if bad:
    raise ValueError(f'the weights of {bad} are {[float(weights[k]) for k in bad]}; '
                     'use finite values >= 0.')
  return vector


def classification_loss(logits: jnp.ndarray, labels: jnp.ndarray,
                        multi_label: bool) -> jnp.ndarray:
  """Mean softmax CE (int labels) or sigmoid CE (multi-hot labels)."""
  if multi_label:
    # Summed over classes, averaged over examples.
    return optax.sigmoid_binary_cross_entropy(
        logits, labels.astype(logits.dtype)).sum(-1).mean()
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def segmentation_loss(seg_logits: jnp.ndarray,
                      masks: jnp.ndarray) -> jnp.ndarray:
  """Pixelwise softmax CE of `[..., K]` logits against teacher class ids."""
  return optax.softmax_cross_entropy_with_integer_labels(
      seg_logits, masks.astype(jnp.int32)).mean()


def untrained_losses(loss_weights: np.ndarray) -> Tuple[str, ...]:
  """The names whose weight is 0 in a run's fixed `[5]` weights (the paper's
  weights: 'flow' and 'semantic'), for `total_loss(untrained=...)`."""
  return tuple(name for name, weight in zip(LOSS_NAMES, loss_weights)
               if float(weight) == 0.0)


def total_loss(outputs: Mapping[str, Any], batch: Mapping[str, jnp.ndarray],
               loss_weights: jnp.ndarray, *, multi_label: bool,
               untrained: Sequence[str] = ()
               ) -> Tuple[jnp.ndarray, Dict[str, jnp.ndarray]]:
  """Weighted sum of the stream, merged and segmentation losses.

  Args:
    outputs: the model's outputs (`logits` per head, maybe `seg_logits`).
    batch: with 'label' and, when the semantic stream is on, 'masks'.
    loss_weights: `[5]` array in `LOSS_NAMES` order.
    multi_label: sigmoid CE instead of softmax CE for the action heads.
    untrained: names whose weight is 0 in every call (a run's fixed weights,
      `untrained_losses`): their terms are computed and reported but not
      differentiated, so the backward pass skips what only they reach (under
      the paper's weights the flow and semantic streams' upper towers and
      heads) instead of multiplying its gradients by 0. Same loss, same
      gradients (but a non-finite gradient of such a term, which times 0
      was NaN, is no longer computed; the terms are still checked). Empty
      when the weights vary (evolution).

  Returns:
    (total loss, the unweighted term of each name; absent streams give 0).
  """
  terms = {name: jnp.zeros((), jnp.float32) for name in LOSS_NAMES}
  for name, logits in outputs['logits'].items():
    terms[name] = classification_loss(logits, batch['label'], multi_label)
  if 'seg_logits' in outputs:
    terms['interm'] = segmentation_loss(outputs['seg_logits'], batch['masks'])
  total = sum(loss_weights[i] * (jax.lax.stop_gradient(terms[name])
                                 if name in untrained else terms[name])
              for i, name in enumerate(LOSS_NAMES))
  return total, terms
