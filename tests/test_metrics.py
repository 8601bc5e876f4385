"""Evaluation metrics against scikit-learn, with padding masks."""

import jax.numpy as jnp
import numpy as np
from sklearn import metrics as sk_metrics

from airstreams_jax import metrics


def _collection_over_batches(logits, labels, mask, num_classes, batch=7):
  cls = metrics.eval_metrics(num_classes, heads=('rgb', 'merged'))
  merged = None
  for i in range(0, len(labels), batch):
    sl = slice(i, i + batch)
    m = cls.single_from_model_output(
        logits_merged=jnp.asarray(logits[sl]),
        logits_rgb=jnp.asarray(-logits[sl]), label=jnp.asarray(labels[sl]),
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
      logits_merged=jnp.eye(4), label=jnp.arange(4, dtype=jnp.int32),
      mask=jnp.ones(4, bool))
  values = m.compute()
  assert 'top5' not in values and float(values['top1']) == 1.0
