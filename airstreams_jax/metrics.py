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


def _accuracy_of(head: str):
  def fun(label, mask=None, **outputs):
    return dict(values=(outputs[f'logits_{head}'].argmax(-1) == label)
                .astype(jnp.float32), mask=mask)
  return metrics.Average.from_fun(fun)


def _top5(logits_merged, label, mask=None, **_):
  top5 = jax.lax.top_k(logits_merged, 5)[1]
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
    def from_model_output(cls, *, logits_merged, label, mask=None, **_):
      if mask is None:
        mask = jnp.ones(label.shape, jnp.bool_)
      true = jax.nn.one_hot(label, num_classes, dtype=jnp.int32)
      pred = jax.nn.one_hot(logits_merged.argmax(-1), num_classes,
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
  """Total loss, each unweighted loss term and the merged accuracy."""
  fields = {'loss': metrics.Average.from_output('loss'),
            'accuracy_merged': _accuracy_of('merged'),
            'learning_rate': metrics.LastValue.from_output('learning_rate')}
  for name in losses.LOSS_NAMES:
    fields[f'loss_{name}'] = metrics.Average.from_output(f'loss_{name}')
  return metrics.Collection.create(**fields)


def eval_metrics(num_classes: int,
                 heads: Sequence[str]) -> Type[metrics.Collection]:
  """top-1/top-5/mean per-class accuracy of the merged head, and each head's."""
  fields = {'top1': _accuracy_of('merged'),
            'mean_class_accuracy': confusion_matrix_metric(num_classes)}
  if num_classes >= 5:
    fields['top5'] = metrics.Average.from_fun(_top5)
  for head in heads:
    fields[f'accuracy_{head}'] = _accuracy_of(head)
  return metrics.Collection.create(**fields)


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
