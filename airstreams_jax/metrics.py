"""clu metric collections for training and evaluation.

Metrics are computed on device inside the jitted steps and merged on the host;
evaluation batches carry a `mask` so padded examples never count.
"""

from typing import Sequence, Tuple, Type

import flax
import jax
import jax.numpy as jnp
import numpy as np
from clu import metrics

from airstreams_jax import losses


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
  """Total loss, each unweighted loss term and the merged accuracy (for
  multi-label data: how often the top-scored class is present)."""
  fields = {'loss': metrics.Average.from_output('loss'),
            'accuracy_merged': _accuracy_of('logits_merged'),
            'learning_rate': metrics.LastValue.from_output('learning_rate')}
  for name in losses.LOSS_NAMES:
    fields[f'loss_{name}'] = metrics.Average.from_output(f'loss_{name}')
  return metrics.Collection.create(**fields)


def eval_metrics(num_classes: int, heads: Sequence[str],
                 multi_label: bool = False) -> Type[metrics.Collection]:
  """Metrics of per-video scores (`scores_<head>`, `label`, `mask`).

  Single-label: top-1, top-5 (with >= 5 classes) and mean per-class accuracy
  of the merged head, and each head's accuracy ('accuracy_<head>').
  Multi-label: the Charades mAP of the merged head ('mAP') and of each head
  ('mAP_<head>'); the scores are collected on the host.
  """
  if multi_label:
    fields = {'mAP': _mean_ap_of('merged')}
    fields.update({f'mAP_{head}': _mean_ap_of(head) for head in heads})
    return metrics.Collection.create(**fields)
  fields = {'top1': _accuracy_of('scores_merged'),
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
