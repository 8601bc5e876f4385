"""Evaluation metrics against scikit-learn, with padding masks."""

import jax.numpy as jnp
import numpy as np
from sklearn import metrics as sk_metrics

from airstreams_jax.training import metrics


def _collection_over_batches(logits, labels, mask, num_classes, batch=7):
  cls = metrics.eval_metrics(num_classes, heads=('rgb', 'merged'))
  merged = None
  for i in range(0, len(labels), batch):
    sl = slice(i, i + batch)
    m = cls.single_from_model_output(
        scores_merged=jnp.asarray(logits[sl]),
        scores_rgb=jnp.asarray(-logits[sl]), label=jnp.asarray(labels[sl]),
        mask=jnp.asarray(mask[sl]))
    merged = m if merged is None else merged.merge(m)
  return {k: float(v) for k, v in merged.compute().items()}


def test_eval_metrics_match_sklearn_and_ignore_padding():
  rng = np.random.default_rng(0)
  num_classes, n = 9, 61
  labels = rng.integers(0, num_classes, n).astype(np.int32)
  # Correct with probability ~0.5, so every metric sits far from 0 and 1.
  logits = rng.normal(size=(n, num_classes)).astype(np.float32)
  logits[np.arange(n), labels] += rng.choice([0.0, 3.0], n)
  mask = rng.random(n) > 0.2
  # Padding examples carry garbage that must not count.
  labels_padded = np.where(mask, labels, 0).astype(np.int32)

  values = _collection_over_batches(logits, labels_padded, mask, num_classes)
  y, pred = labels[mask], logits[mask].argmax(-1)
  assert np.isclose(values['top1'], sk_metrics.accuracy_score(y, pred))
  assert np.isclose(values['mean_class_accuracy'],
                    sk_metrics.balanced_accuracy_score(y, pred), atol=1e-6)
  assert np.isclose(values['top5'], sk_metrics.top_k_accuracy_score(
      y, logits[mask], k=5, labels=np.arange(num_classes)))
  assert np.isclose(values['accuracy_rgb'], sk_metrics.accuracy_score(
      y, (-logits[mask]).argmax(-1)))
  assert values['accuracy_merged'] == values['top1']


def test_no_top5_below_five_classes():
  cls = metrics.eval_metrics(4, heads=('merged',))
  m = cls.single_from_model_output(
      scores_merged=jnp.eye(4), label=jnp.arange(4, dtype=jnp.int32),
      mask=jnp.ones(4, bool))
  values = m.compute()
  assert 'top5' not in values and float(values['top1']) == 1.0


def test_charades_map_equals_sklearn_without_ties():
  rng = np.random.default_rng(1)
  labels = (rng.random((80, 12)) < 0.15).astype(np.int32)
  labels[0] = 1  # Every class has a positive ...
  empty = ~labels.any(1)  # ... and every video an action (see the protocol).
  labels[empty, rng.integers(0, 12, empty.sum())] = 1
  scores = rng.normal(size=labels.shape) + 1.5 * labels
  mean_ap, per_class = metrics.charades_mean_ap(scores, labels)
  expected = [sk_metrics.average_precision_score(labels[:, c], scores[:, c])
              for c in range(12)]
  np.testing.assert_allclose(per_class, expected, rtol=1e-12)
  assert np.isclose(mean_ap, np.mean(expected))


def test_charades_map_protocol_for_missing_scores_and_empty_videos():
  labels = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
  scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.5, 0.3], [5.0, 5.0]])
  # The action-less last video scores highest but counts as a trailing
  # negative: both classes are ranked perfectly.
  mean_ap, per_class = metrics.charades_mean_ap(scores, labels)
  assert mean_ap == 1.0 and list(per_class) == [1.0, 1.0]
  # A video without a prediction ranks last (ties keep the video order):
  # class 0 then has positives at ranks 1 and 3, AP = (1/1 + 2/3) / 2.
  scores[2] = np.nan
  _, per_class = metrics.charades_mean_ap(scores, labels)
  assert np.isclose(per_class[0], 5 / 6) and per_class[1] == 1.0
  # A class without positives is NaN and left out of the mean.
  labels[:, 1] = 0
  labels[1, 0] = 1
  mean_ap, per_class = metrics.charades_mean_ap(scores, labels)
  assert np.isnan(per_class[1]) and mean_ap == per_class[0]


def test_multi_label_eval_metrics_are_the_charades_map_of_real_videos():
  rng = np.random.default_rng(3)
  n, num_classes = 40, 6
  labels = (rng.random((n, num_classes)) < 0.3).astype(np.float32)
  scores = rng.random((n, num_classes)).astype(np.float32)
  mask = rng.random(n) > 0.25
  cls = metrics.eval_metrics(num_classes, heads=('rgb', 'merged'),
                             multi_label=True)
  merged = None
  for i in range(0, n, 8):  # Batches merged on the host, as in evaluation.
    sl = slice(i, i + 8)
    m = cls.single_from_model_output(
        scores_merged=scores[sl], scores_rgb=1 - scores[sl], label=labels[sl],
        mask=mask[sl])
    merged = m if merged is None else merged.merge(m)
  values = merged.compute()
  assert set(values) == {'mAP', 'mAP_rgb', 'mAP_merged'}
  expected = metrics.charades_mean_ap(scores[mask], labels[mask])[0]
  assert np.isclose(values['mAP'], expected)
  assert np.isclose(values['mAP_rgb'],
                    metrics.charades_mean_ap(1 - scores[mask],
                                             labels[mask])[0])
  assert values['mAP_merged'] == values['mAP']


def test_multi_label_training_accuracy_is_hit_at_one():
  m = metrics.train_metrics().single_from_model_output(
      loss=jnp.float32(0), learning_rate=jnp.float32(0), grad_norm=jnp.float32(0),
      logits_merged=jnp.asarray([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]]),
      label=jnp.asarray([[0.0, 1.0, 1.0], [0.0, 1.0, 1.0]]),
      **{f'loss_{k}': jnp.float32(0) for k in ('rgb', 'flow', 'semantic',
                                               'merged', 'interm')})
  assert float(m.compute()['accuracy_merged']) == 0.5
