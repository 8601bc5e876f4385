"""clu metric collections for training and evaluation.

Metrics are computed on device inside the jitted steps and merged on the host;
evaluation batches carry a `mask` so padded examples never count.
"""

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Type

import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics

from airstreams_jax.training import losses


def _accuracy_of(key: str):
  """Top-1 accuracy of the scores (or logits) `key`; with multi-hot labels
  [B, C], whether the top-scored class is one of the video's actions."""
  def fun(label, mask=None, **outputs):
    top = outputs[key].argmax(-1)
    if label.ndim == 2:
      hit = jnp.take_along_axis(label, top[:, None], axis=1)[:, 0] > 0
    else:
      hit = top == label
    return dict(values=hit.astype(jnp.float32), mask=mask)
  return metrics.Average.from_fun(fun)


def _top5(scores_merged, label, mask=None, **_):
  top5 = jax.lax.top_k(scores_merged, 5)[1]
  return dict(values=(top5 == label[:, None]).any(-1).astype(jnp.float32),
              mask=mask)


def confusion_matrix_metric(num_classes: int) -> Type[metrics.Metric]:
  """A clu metric accumulating the merged head's confusion matrix.

  `compute()` gives the mean per-class accuracy (balanced accuracy: recall
  averaged over the classes that have examples), Toyota Smarthome's metric.
  """

  @flax.struct.dataclass
  class ConfusionMatrix(metrics.Metric):
    matrix: jnp.ndarray  # [true, predicted] counts.

    @classmethod
    def empty(cls):
      return cls(matrix=jnp.zeros((num_classes, num_classes), jnp.int32))

    @classmethod
    def from_model_output(cls, *, scores_merged, label, mask=None, **_):
      if mask is None:
        mask = jnp.ones(label.shape, jnp.bool_)
      true = jax.nn.one_hot(label, num_classes, dtype=jnp.int32)
      pred = jax.nn.one_hot(scores_merged.argmax(-1), num_classes,
                            dtype=jnp.int32)
      return cls(matrix=(true * mask[:, None].astype(jnp.int32)).T @ pred)

    def merge(self, other):
      return type(self)(matrix=self.matrix + other.matrix)

    def compute(self):
      support = self.matrix.sum(1)
      recall = jnp.diag(self.matrix) / jnp.maximum(support, 1)
      return (recall * (support > 0)).sum() / jnp.maximum(
          (support > 0).sum(), 1)

  return ConfusionMatrix


def train_metrics() -> Type[metrics.Collection]:
  """Total loss, each unweighted loss term, the gradients' global norm and
  the merged accuracy (for multi-label data: how often the top-scored class
  is present)."""
  fields = {'loss': metrics.Average.from_output('loss'),
            'accuracy_merged': _accuracy_of('logits_merged'),
            'learning_rate': metrics.LastValue.from_output('learning_rate'),
            # Before clipping; also what names a step's non-finite gradients.
            'grad_norm': metrics.Average.from_output('grad_norm')}
  for name in losses.LOSS_NAMES:
    fields[f'loss_{name}'] = metrics.Average.from_output(f'loss_{name}')
  return metrics.Collection.create(**fields)


def eval_metrics(num_classes: int, heads: Sequence[str],
                 multi_label: bool = False,
                 mask_class_names: Sequence[str] = ()
                 ) -> Type[metrics.Collection]:
  """Metrics of per-video scores (`scores_<head>`, `label`, `mask`).

  Single-label: top-1, top-5 (with >= 5 classes) and mean per-class accuracy
  of the merged head, and each head's accuracy ('accuracy_<head>').
  Multi-label: the Charades mAP of the merged head ('mAP') and of each head
  ('mAP_<head>'); the scores are collected on the host. With the teacher's
  `mask_class_names`, also 'representations' (`representation_metric`).
  """
  fields = {}
  if mask_class_names:
    fields['representations'] = representation_metric(mask_class_names)
  if multi_label:
    fields['mAP'] = _mean_ap_of('merged')
    fields.update({f'mAP_{head}': _mean_ap_of(head) for head in heads})
    return metrics.Collection.create(**fields)
  fields |= {'top1': _accuracy_of('scores_merged'),
            'mean_class_accuracy': confusion_matrix_metric(num_classes)}
  if num_classes >= 5:
    fields['top5'] = metrics.Average.from_fun(_top5)
  for head in heads:
    fields[f'accuracy_{head}'] = _accuracy_of(f'scores_{head}')
  return metrics.Collection.create(**fields)


def _mean_ap_of(head: str) -> Type[metrics.Metric]:
  """Charades mAP of `scores_<head>` over the unmasked videos (host-side)."""
  key = f'scores_{head}'

  @flax.struct.dataclass
  class MeanAveragePrecision(
      metrics.CollectingMetric.from_outputs((key, 'label', 'mask'))):

    def compute(self):
      values = super().compute()
      keep = np.asarray(values['mask'], bool)
      return charades_mean_ap(values[key][keep], values['label'][keep])[0]

  return MeanAveragePrecision


def charades_mean_ap(scores: np.ndarray, labels: np.ndarray
                     ) -> Tuple[float, np.ndarray]:
  """Charades v1 mAP, as `Charades_v1_classify.m` defines it.

  Per class, videos are ranked by descending score; AP is the sum of the
  precision at the rank of every positive, divided by the number of
  positives (THUMOS style). mAP is the mean over classes that have positives.

  Args:
    scores: `[videos, classes]` scores; a row of NaN is a video without a
      prediction and scores -inf, so its positives rank last.
    labels: `[videos, classes]` multi-hot ground truth. Videos without any
      action score -inf in every class, as in the official evaluation: they
      rank last and count as trailing negatives.

  Returns:
    (mAP, per-class AP with NaN for classes without positives).
  """
  scores = np.asarray(scores, np.float64)
  labels = np.asarray(labels) > 0
  scores = np.where(np.isnan(scores), -np.inf, scores)
  scores = np.where(labels.any(1, keepdims=True), scores, -np.inf)
  ranks = np.arange(1, scores.shape[0] + 1)
  ap = np.full(scores.shape[1], np.nan)
  for c in range(scores.shape[1]):
    num_positives = labels[:, c].sum()
    if num_positives:
      # A stable sort keeps MATLAB's order among tied scores.
      hits = labels[np.argsort(-scores[:, c], kind='stable'), c]
      ap[c] = (np.cumsum(hits) / ranks)[hits].sum() / num_positives
  return float(np.nanmean(ap)), ap


# --- Representation metrics -------------------------------------------------
# What the flow layer and the segmentation net learned, measured on the eval
# split: the learned segmentation against the teacher's masks (and, where the
# data knows them, the true masks), the learned flow against the true motion.
# The jitted eval step reduces each batch to a few counts (confusion matrices,
# sums); `representation_metric` merges them and derives the figures.

# Angle within which a learned flow vector counts as pointing the right way.
FLOW_DIRECTION_TOLERANCE_DEGREES = 45.0
# The learned segmentation has collapsed when one class takes this share of
# the pixels while the reference masks give other classes at least
# `_COLLAPSE_MIN_OTHER_SHARE` of them.
_COLLAPSE_SHARE = 0.98
_COLLAPSE_MIN_OTHER_SHARE = 0.05


def segmentation_counts(reference: jnp.ndarray, predicted: jnp.ndarray,
                        weight: jnp.ndarray, num_classes: int) -> jnp.ndarray:
  """The `[reference, predicted]` confusion matrix of class-id maps.

  Args:
    reference: int class ids `[...]` (teacher or true masks).
    predicted: int class ids of the same shape.
    weight: 0/1 weights broadcastable to that shape (padding is 0).
    num_classes: K.

  Returns:
    int32 `[K, K]` pixel counts.
  """
  weight = jnp.broadcast_to(weight, reference.shape).astype(jnp.int32)
  flat = (reference.astype(jnp.int32) * num_classes +
          predicted.astype(jnp.int32))
  # bincount (a scatter-add) rather than one-hot matmuls: O(pixels), whatever
  # the number of teacher classes (91 for Mask R-CNN).
  counts = jnp.bincount(flat.reshape(-1), weight.reshape(-1),
                        length=num_classes * num_classes)
  return counts.reshape(num_classes, num_classes).astype(jnp.int32)


def flow_sums(flow: jnp.ndarray, true_flow: jnp.ndarray,
              moving: jnp.ndarray) -> Dict[str, jnp.ndarray]:
  """End-point error and direction hits of a flow over moving pixels.

  Args:
    flow: learned `[..., 2]` (u1 along the width, u2 along the rows).
    true_flow: the true displacement, same shape and units.
    moving: 0/1 `[...]`, the pixels to score (moving-object pixels).

  Returns:
    'flow_epe_sum' (sum of |flow - true_flow| over the pixels),
    'flow_direction_hits' (pixels whose flow points within
    `FLOW_DIRECTION_TOLERANCE_DEGREES` of the true motion; a zero flow
    points nowhere and misses) and 'flow_pixels' (their number).
  """
  moving = moving.astype(jnp.float32)
  epe = jnp.sqrt(jnp.sum((flow - true_flow)**2, axis=-1))
  dot = jnp.sum(flow * true_flow, axis=-1)
  norms = (jnp.sqrt(jnp.sum(flow**2, axis=-1)) *
           jnp.sqrt(jnp.sum(true_flow**2, axis=-1)))
  cos_tolerance = np.cos(np.deg2rad(FLOW_DIRECTION_TOLERANCE_DEGREES))
  hit = (norms > 0) & (dot > cos_tolerance * norms)
  return {'flow_epe_sum': jnp.sum(epe * moving),
          'flow_direction_hits': jnp.sum(hit * moving),
          'flow_pixels': jnp.sum(moving)}


# Keys of the per-batch counts that `steps.eval_step` may return.
SEGMENTATION_COUNT_KEYS = ('seg_vs_teacher', 'seg_vs_truth',
                           'teacher_vs_truth')
FLOW_SUM_KEYS = ('flow_epe_sum', 'flow_direction_hits', 'flow_pixels')


def segmentation_scores(counts: np.ndarray, class_names: Sequence[str]
                        ) -> Dict[str, Any]:
  """Pixel accuracy, mean IoU and per-class IoU of a confusion matrix.

  The mean IoU averages over the classes present in the reference (rows with
  pixels), background included; a class present but never predicted has IoU
  0. Per-class IoU is given for those classes, by name.
  """
  counts = np.asarray(counts, np.float64)
  true_positive = np.diag(counts)
  support = counts.sum(1)
  union = support + counts.sum(0) - true_positive
  present = support > 0
  iou = true_positive / np.maximum(union, 1)
  return {
      'pixel_accuracy': float(true_positive.sum() / max(counts.sum(), 1)),
      'miou': float(iou[present].mean()) if present.any() else float('nan'),
      'iou': {name: float(iou[k]) for k, name in enumerate(class_names)
              if present[k]},
  }


def summarise_representations(sums: Mapping[str, np.ndarray],
                              class_names: Sequence[str]) -> Dict[str, Any]:
  """The `representations` entry of `eval_results.json` from merged counts.

  Returns keys for what the counts cover:
    seg_pixel_accuracy, seg_miou, seg_iou {class: IoU}: the learned
      segmentation (argmax of the logits) against the teacher's masks;
    seg_class_share, teacher_class_share {class: share of pixels};
    truth_seg_* and truth_teacher_*: the learned segmentation and the
      teacher's masks against the true masks (synthetic data), so that "the
      network corrected its teacher" is truth_seg_miou > truth_teacher_miou;
    flow_epe (pixels of the model's input), flow_direction_accuracy and
      flow_pixels: the learned flow on moving-object pixels.
  """
  out = {}
  if 'seg_vs_teacher' in sums:
    counts = np.asarray(sums['seg_vs_teacher'], np.float64)
    scores = segmentation_scores(counts, class_names)
    out.update(seg_pixel_accuracy=scores['pixel_accuracy'],
               seg_miou=scores['miou'], seg_iou=scores['iou'])
    total = max(counts.sum(), 1)
    out['seg_class_share'] = dict(zip(class_names,
                                      map(float, counts.sum(0) / total)))
    out['teacher_class_share'] = dict(zip(class_names,
                                          map(float, counts.sum(1) / total)))
  for key, prefix in (('seg_vs_truth', 'truth_seg_'),
                      ('teacher_vs_truth', 'truth_teacher_')):
    if key in sums:
      scores = segmentation_scores(sums[key], class_names)
      out.update({prefix + k: v for k, v in scores.items()})
  if 'flow_pixels' in sums:
    pixels = float(sums['flow_pixels'])
    out['flow_pixels'] = int(pixels)
    out['flow_epe'] = float(sums['flow_epe_sum']) / pixels if pixels else (
        float('nan'))
    out['flow_direction_accuracy'] = (
        float(sums['flow_direction_hits']) / pixels if pixels else
        float('nan'))
  return out


def segmentation_collapse(representations: Mapping[str, Any]
                          ) -> Optional[str]:
  """A warning when the learned segmentation predicts (almost) one class.

  A collapsed segmentation net feeds the semantic tower a near-constant
  map: the semantic stream silently becomes a second RGB stream.
  """
  predicted = representations.get('seg_class_share')
  reference = representations.get('teacher_class_share')
  if not predicted:
    return None
  name, share = max(predicted.items(), key=lambda kv: kv[1])
  others = 1.0 - reference.get(name, 0.0)
  if share < _COLLAPSE_SHARE or others < _COLLAPSE_MIN_OTHER_SHARE:
    return None
  return (f'the learned segmentation has collapsed to {name!r}: it gives '
          f'that class {share:.1%} of the evaluation pixels, where the '
          f"teacher's masks give the other classes {others:.1%} (seg_miou "
          f'{representations["seg_miou"]:.3f}); the semantic stream then '
          'carries no segmentation. Check the output stride against the '
          'object sizes (model.seg) and the interm loss weight.')


def representation_metric(class_names: Sequence[str]
                          ) -> Type[metrics.Metric]:
  """A clu metric summing the eval step's representation counts.

  `compute()` gives `summarise_representations` of the sums. The counts
  present in the first batch's outputs decide what is measured.
  """
  keys = SEGMENTATION_COUNT_KEYS + FLOW_SUM_KEYS

  @flax.struct.dataclass
  class RepresentationSums(metrics.Metric):
    sums: Dict[str, jnp.ndarray]

    @classmethod
    def empty(cls):
      return cls(sums={})

    @classmethod
    def from_model_output(cls, **outputs):
      return cls(sums={k: outputs[k] for k in keys if k in outputs})

    def merge(self, other):
      merged = dict(self.sums)
      for k, v in other.sums.items():
        merged[k] = merged[k] + v if k in merged else v
      return type(self)(sums=merged)

    def compute(self):
      return summarise_representations(
          {k: np.asarray(v) for k, v in self.sums.items()}, class_names)

  return RepresentationSums
