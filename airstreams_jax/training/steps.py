"""Pure train, eval and predict steps. No jit here: `train.py` jits them once
with explicit shardings; dependencies are keyword-only, bound with partial."""

from typing import Any, Dict, Mapping, Sequence, Tuple

import jax
import jax.numpy as jnp
import optax
from clu import metrics as clu_metrics

from airstreams_jax.training import metrics as metrics_lib
from airstreams_jax.models import rep_flow
from airstreams_jax.training import losses
from airstreams_jax.training.train_state import TrainState


def train_step(state: TrainState, batch: Mapping[str, jnp.ndarray],
               loss_weights: jnp.ndarray, *, model, tx, schedule,
               metrics_cls: type, multi_label: bool,
               untrained_losses: Sequence[str] = ()
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
    untrained_losses: names whose λ is 0 in every call (see
      `losses.total_loss`): their gradients are skipped, not zeroed.

  Returns:
    The new state and this step's metrics.
  """
  dropout_rng = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    outputs, updates = model.apply(
        {'params': params, 'batch_stats': state.batch_stats}, batch['video'],
        train=True, rngs={'dropout': dropout_rng}, mutable=['batch_stats'])
    loss, terms = losses.total_loss(outputs, batch, loss_weights,
                                    multi_label=multi_label,
                                    untrained=untrained_losses)
    return loss, (terms, outputs['logits'], updates['batch_stats'])

  (loss, (terms, logits, batch_stats)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  grad_norm = optax.global_norm(grads)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  new_state = state.replace(
      step=state.step + 1, params=optax.apply_updates(state.params, updates),
      batch_stats=batch_stats, opt_state=opt_state)
  # A non-finite loss term or gradient leaves the whole state (step counter,
  # BatchNorm statistics, optimiser moments) as it was: the host then stops
  # the run naming this step (`train.py`), and nothing non-finite can reach a
  # checkpoint.
  finite = jnp.isfinite(grad_norm) & jnp.isfinite(loss)
  for value in terms.values():
    finite &= jnp.isfinite(value)
  new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                           new_state, state)
  step_metrics = metrics_cls.single_from_model_output(
      loss=loss, label=batch['label'], learning_rate=schedule(state.step),
      logits_merged=logits['merged'], grad_norm=grad_norm,
      **{f'loss_{name}': value for name, value in terms.items()})
  return new_state, step_metrics


def predict_step(state: TrainState, video: jnp.ndarray, *, model,
                 stream_heads: bool) -> Dict[str, jnp.ndarray]:
  """Logits of every head (or of the merged head only) in inference mode."""
  outputs = model.apply(
      {'params': state.params, 'batch_stats': state.batch_stats}, video,
      train=False, stream_heads=stream_heads)
  return outputs['logits']


def _aggregate_views(logits: Dict[str, jnp.ndarray], multi_label: bool
                     ) -> Dict[str, jnp.ndarray]:
  """`[V, B, C]` logits per head -> `[B, C]` per-video scores."""
  if multi_label:
    return {h: jax.nn.sigmoid(v).max(0) for h, v in logits.items()}
  return {h: jax.nn.softmax(v).mean(0) for h, v in logits.items()}


def video_scores(state: TrainState, video: jnp.ndarray, *, model,
                 multi_label: bool, stream_heads: bool
                 ) -> Dict[str, jnp.ndarray]:
  """Per-video scores of the heads, aggregated over each video's views.

  Args:
    state: the model state.
    video: uint8 `[B, V, T, H, W, 3]`, V views of each video.
    model: the `AIRStreams` module.
    multi_label: sigmoids max-pooled over the views (Charades); otherwise
      softmax probabilities averaged over the views.
    stream_heads: score every head, or only 'merged' (RGB-only inference).

  Returns:
    {head: [B, C] scores}.
  """
  # One view of every video at a time: memory stays that of a B-clip batch
  # however many views there are.
  logits = jax.lax.map(
      lambda views: predict_step(state, views, model=model,
                                 stream_heads=stream_heads),
      jnp.moveaxis(video, 1, 0))
  return _aggregate_views(logits, multi_label)


def representation_counts(outputs: Mapping[str, Any],
                          view: Mapping[str, jnp.ndarray],
                          weight: jnp.ndarray, num_seg_classes: int
                          ) -> Dict[str, jnp.ndarray]:
  """What the eval metrics need to score the learned representations.

  Args:
    outputs: the model's outputs for one view of every video ('flow',
      'seg_logits' when those streams are on).
    view: that view's 'masks' (the teacher's) and, where the data knows
      them, 'true_masks', 'true_flow' `[B, T, H, W, 2]` and
      'true_flow_valid' `[B, T]`.
    weight: `[B]` 1 for real videos, 0 for padding.
    num_seg_classes: the teacher's class count.

  Returns:
    Confusion matrices and flow sums named as in
    `metrics.SEGMENTATION_COUNT_KEYS` / `metrics.FLOW_SUM_KEYS`, for what
    the streams and the data allow.
  """
  counts = {}
  pixel_weight = weight[:, None, None, None]
  if 'seg_logits' in outputs and 'masks' in view:
    predicted = outputs['seg_logits'].argmax(-1)
    counts['seg_vs_teacher'] = metrics_lib.segmentation_counts(
        view['masks'], predicted, pixel_weight, num_seg_classes)
    if 'true_masks' in view:
      counts['seg_vs_truth'] = metrics_lib.segmentation_counts(
          view['true_masks'], predicted, pixel_weight, num_seg_classes)
      counts['teacher_vs_truth'] = metrics_lib.segmentation_counts(
          view['true_masks'], view['masks'], pixel_weight, num_seg_classes)
  if 'flow' in outputs and 'true_flow' in view:
    flow = rep_flow.mean_flow(outputs['flow'].astype(jnp.float32))
    true_flow = view['true_flow'].astype(jnp.float32)
    moving = jnp.any(true_flow != 0, axis=-1)
    if 'true_masks' in view:  # Moving objects, not the panning background.
      moving &= view['true_masks'] != 0
    moving &= view['true_flow_valid'][:, :, None, None]
    counts.update(metrics_lib.flow_sums(flow, true_flow,
                                        moving & (pixel_weight > 0)))
  return counts


def eval_step(state: TrainState, batch: Mapping[str, jnp.ndarray], *, model,
              multi_label: bool) -> Dict[str, Any]:
  """Scores of every head for a padded batch of videos, and what the
  learned representations get right.

  Args:
    state: the model state.
    batch: 'video' uint8 `[B, V, T, H, W, 3]`, 'label' and 'mask' (False for
      padding); optionally per view 'masks' `[B, V, T, H, W]` (teacher),
      'true_masks', 'true_flow' `[B, V, T, H, W, 2]`, 'true_flow_valid'
      `[B, V, T]`.
    model: the `AIRStreams` module.
    multi_label: whether the labels are multi-hot.

  Returns:
    {'scores_<head>': [B, C] for every head (see `video_scores`), 'label',
    'mask', and the representation counts summed over the views and videos
    (see `representation_counts`)}: the inputs of `metrics.eval_metrics`,
    computed on the host.
  """
  per_view_keys = [k for k in ('masks', 'true_masks', 'true_flow',
                               'true_flow_valid') if k in batch]
  weight = batch['mask'].astype(jnp.int32)

  def run_view(view):
    outputs = model.apply(
        {'params': state.params, 'batch_stats': state.batch_stats},
        view['video'], train=False, stream_heads=True)
    return outputs['logits'], representation_counts(
        outputs, view, weight, model.num_seg_classes)

  # One view of every video at a time (see `video_scores`).
  views = {k: jnp.moveaxis(batch[k], 1, 0)
           for k in ['video'] + per_view_keys}
  logits, counts = jax.lax.map(run_view, views)
  scores = _aggregate_views(logits, multi_label)
  return dict({f'scores_{h}': v for h, v in scores.items()},
              **{k: v.sum(0) for k, v in counts.items()},
              label=batch['label'], mask=batch['mask'])


def sample_step(state: TrainState, batch: Mapping[str, jnp.ndarray], *, model,
                num_clips: int) -> Dict[str, jnp.ndarray]:
  """The learned representations of the first clips of a batch, to look at.

  Returns 'video' [N, T, H, W, 3] and, for the streams present, 'flow'
  [N, T, H, W, 2K], 'segmentation' (predicted class ids) and 'masks' (the
  teacher's) [N, T, H, W].
  """
  video = batch['video'][:num_clips]
  outputs = model.apply(
      {'params': state.params, 'batch_stats': state.batch_stats}, video,
      train=False, stream_heads=False)
  samples = {'video': video}
  if 'flow' in outputs:
    samples['flow'] = outputs['flow']
  if 'seg_logits' in outputs:
    samples['segmentation'] = outputs['seg_logits'].argmax(-1)
    samples['masks'] = batch['masks'][:num_clips]
  return samples
