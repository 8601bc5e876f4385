"""The eval and sample steps on the real (smoke-sized) model."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from airstreams_jax.models import airstreams
from airstreams_jax.training import steps
from airstreams_jax.training import train_state
from configs import synthetic

NUM_CLASSES, NUM_SEG = 5, 4
B, V, T, S = 2, 3, 4, 32


@pytest.fixture(scope='module')
def model_and_state():
  config = synthetic.get_config('smoke').model
  model = airstreams.build_model(config, num_classes=NUM_CLASSES,
                                 num_seg_classes=NUM_SEG)
  state = jax.jit(functools.partial(train_state.init_state, model=model,
                                    tx=optax.sgd(0.1)))(
      jnp.int32(0), jnp.zeros((1, T, S, S, 3), jnp.uint8))
  return model, state


@pytest.mark.parametrize('multi_label', [False, True])
def test_eval_step_aggregates_the_views_of_each_video(model_and_state,
                                                      multi_label):
  model, state = model_and_state
  rng = np.random.default_rng(0)
  video = jnp.asarray(rng.integers(0, 256, (B, V, T, S, S, 3), np.uint8))
  label = (jnp.asarray(rng.random((B, NUM_CLASSES)) < 0.5, jnp.float32)
           if multi_label else jnp.asarray([1, 4]))
  batch = {'video': video, 'label': label, 'mask': jnp.asarray([True, False])}
  out = jax.jit(functools.partial(steps.eval_step, model=model,
                                  multi_label=multi_label))(state, batch)
  assert set(out) == {'scores_rgb', 'scores_flow', 'scores_semantic',
                      'scores_merged', 'label', 'mask'}
  # Reference: each view on its own, aggregated in float64 NumPy.
  predict = jax.jit(functools.partial(steps.predict_step, model=model,
                                      stream_heads=True))
  per_view = [predict(state, video[:, v]) for v in range(V)]
  for head in ('rgb', 'merged'):
    logits = np.stack([np.asarray(p[head], np.float64) for p in per_view])
    if multi_label:
      expected = (1 / (1 + np.exp(-logits))).max(0)
    else:
      e = np.exp(logits - logits.max(-1, keepdims=True))
      expected = (e / e.sum(-1, keepdims=True)).mean(0)
    np.testing.assert_allclose(out[f'scores_{head}'], expected, rtol=1e-4,
                               atol=1e-6)
  np.testing.assert_array_equal(out['mask'], [True, False])


def test_sample_step_returns_flow_segmentation_and_teacher_masks(
    model_and_state):
  model, state = model_and_state
  batch = {'video': jnp.zeros((3, T, S, S, 3), jnp.uint8),
           'masks': jnp.ones((3, T, S, S), jnp.uint8)}
  out = jax.jit(functools.partial(steps.sample_step, model=model,
                                  num_clips=2))(state, batch)
  assert out['video'].shape == (2, T, S, S, 3)
  assert out['flow'].shape == (2, T, S, S, 2)
  assert out['segmentation'].shape == (2, T, S, S)
  assert int(out['segmentation'].max()) < NUM_SEG
  np.testing.assert_array_equal(out['masks'], 1)
