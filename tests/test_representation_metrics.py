"""Representation metrics: the learned segmentation against reference masks
(checked against scikit-learn) and the learned flow against a known motion."""

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as sk_metrics

from airstreams_jax.training import metrics
from airstreams_jax.training import steps

CLASSES = ('background', 'person', 'ball', 'box')


def _random_maps(seed, shape=(3, 4, 16, 16)):
  rng = np.random.default_rng(seed)
  # Class 3 never appears in the reference: mIoU must skip it.
  reference = rng.choice(3, size=shape, p=[0.7, 0.2, 0.1])
  predicted = np.where(rng.random(shape) < 0.6, reference,
                       rng.integers(0, 4, shape))
  return reference, predicted


@pytest.mark.parametrize('seed', [0, 1])
def test_segmentation_counts_and_scores_match_scikit_learn(seed):
  reference, predicted = _random_maps(seed)
  weight = np.array([1, 0, 1])[:, None, None, None]  # Video 1 is padding.
  counts = np.asarray(metrics.segmentation_counts(
      jnp.asarray(reference), jnp.asarray(predicted), jnp.asarray(weight), 4))
  keep = np.broadcast_to(weight, reference.shape).astype(bool)
  y_true, y_pred = reference[keep], predicted[keep]
  np.testing.assert_array_equal(
      counts, sk_metrics.confusion_matrix(y_true, y_pred, labels=range(4)))
  scores = metrics.segmentation_scores(counts, CLASSES)
  present = np.unique(y_true)
  np.testing.assert_allclose(
      scores['miou'],
      sk_metrics.jaccard_score(y_true, y_pred, labels=present,
                               average='macro'), rtol=1e-12)
  per_class = sk_metrics.jaccard_score(y_true, y_pred, labels=present,
                                       average=None)
  assert list(scores['iou']) == [CLASSES[k] for k in present]
  np.testing.assert_allclose(list(scores['iou'].values()), per_class,
                             rtol=1e-12)
  np.testing.assert_allclose(scores['pixel_accuracy'],
                             sk_metrics.accuracy_score(y_true, y_pred))


def test_a_collapsed_segmentation_scores_low_and_is_reported():
  reference, _ = _random_maps(0)
  predicted = np.zeros_like(reference)  # Background everywhere.
  counts = metrics.segmentation_counts(jnp.asarray(reference),
                                       jnp.asarray(predicted), 1, 4)
  summary = metrics.summarise_representations(
      {'seg_vs_teacher': np.asarray(counts)}, CLASSES)
  assert summary['seg_iou']['person'] == 0.0
  assert summary['seg_class_share']['background'] == 1.0
  warning = metrics.segmentation_collapse(summary)
  assert warning and "'background'" in warning
  # A healthy segmentation gives no warning.
  healthy = metrics.summarise_representations(
      {'seg_vs_teacher': np.asarray(metrics.segmentation_counts(
          jnp.asarray(reference), jnp.asarray(reference), 1, 4))}, CLASSES)
  assert healthy['seg_miou'] == 1.0
  assert metrics.segmentation_collapse(healthy) is None


def _moving_square(speed=(2.0, -1.0), size=24, frames=5):
  """True masks and flow of a 6x6 square moving `speed` = (u1, u2) px."""
  masks = np.zeros((1, frames, size, size), np.uint8)
  flow = np.zeros((1, frames, size, size, 2), np.float32)
  for t in range(frames):
    y = 8 + int(speed[1]) * t
    x = 4 + int(speed[0]) * t
    masks[0, t, y:y + 6, x:x + 6] = 2
    flow[0, t, y:y + 6, x:x + 6] = speed
  valid = np.arange(frames)[None] < frames - 1
  return masks, flow, valid


def _flow_summary(learned_flow, masks, flow, valid):
  view = {'true_masks': jnp.asarray(masks), 'masks': jnp.asarray(masks),
          'true_flow': jnp.asarray(flow), 'true_flow_valid': jnp.asarray(valid)}
  counts = steps.representation_counts({'flow': jnp.asarray(learned_flow)},
                                       view, jnp.ones((1,), jnp.int32), 4)
  return metrics.summarise_representations(
      {k: np.asarray(v) for k, v in counts.items()}, CLASSES)


def test_flow_metrics_on_a_moving_square():
  masks, flow, valid = _moving_square()
  pixels = 36 * 4  # The square, on the 4 frames that have a successor.
  exact = _flow_summary(flow, masks, flow, valid)
  assert exact['flow_pixels'] == pixels
  assert exact['flow_epe'] == 0.0
  assert exact['flow_direction_accuracy'] == 1.0
  zero = _flow_summary(np.zeros_like(flow), masks, flow, valid)
  np.testing.assert_allclose(zero['flow_epe'], np.hypot(2.0, 1.0), rtol=1e-5)
  assert zero['flow_direction_accuracy'] == 0.0  # Points nowhere.
  # Half the speed, right direction: EPE is half the speed, all hits.
  half = _flow_summary(flow / 2, masks, flow, valid)
  np.testing.assert_allclose(half['flow_epe'], np.hypot(1.0, 0.5), rtol=1e-5)
  assert half['flow_direction_accuracy'] == 1.0
  # Rotated by 40 degrees: inside the 45-degree tolerance; by 50: outside.
  for degrees, hits in ((40, 1.0), (50, 0.0)):
    a = np.deg2rad(degrees)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    rotated = flow @ rotation.T
    assert _flow_summary(rotated, masks, flow, valid)[
        'flow_direction_accuracy'] == hits


def test_flow_metrics_use_the_mean_of_the_reduced_channels():
  masks, flow, valid = _moving_square()
  # K = 2 channels [u1 (2), u2 (2)] whose means are the true flow.
  learned = np.concatenate([flow[..., :1] * 1.5, flow[..., :1] * 0.5,
                            flow[..., 1:] * 0.0, flow[..., 1:] * 2.0], -1)
  assert _flow_summary(learned, masks, flow, valid)['flow_epe'] == 0.0
