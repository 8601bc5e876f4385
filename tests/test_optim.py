"""Optimiser and schedules."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from airstreams_jax.training import optim
from configs import base


def _opt_config(**overrides):
  config = base.get_config().optimizer
  with config.unlocked():
    config.update(overrides)
  return config


@pytest.mark.parametrize('name', ['adamw', 'sgd'])
@pytest.mark.parametrize('key, module, other', [
    ('flow_lr_multiplier', 'flow_layer', 'segmentation_net'),
    ('seg_lr_multiplier', 'segmentation_net', 'flow_layer')])
def test_lr_multiplier_scales_only_its_module(name, key, module, other):
  params = {'flow_layer': {'theta': jnp.ones(())},
            'segmentation_net': {'kernel': jnp.ones((2,))},
            'rgb_tower_lower': {'kernel': jnp.ones((3,))}}
  grads = jax.tree.map(lambda p: 0.5 * jnp.ones_like(p), params)
  updates = {}
  for multiplier in (1.0, 0.01):
    tx = optim.make_optimizer(
        _opt_config(name=name, warmup_steps=0, schedule='constant',
                    **{key: multiplier}), 100)
    updates[multiplier], _ = tx.update(grads, tx.init(params), params)
  for leaf_small, leaf_one in zip(jax.tree.leaves(updates[0.01][module]),
                                  jax.tree.leaves(updates[1.0][module])):
    np.testing.assert_allclose(leaf_small, 0.01 * leaf_one, rtol=1e-6)
    assert np.all(np.asarray(leaf_one) != 0.0)
  for part in (other, 'rgb_tower_lower'):
    np.testing.assert_allclose(jax.tree.leaves(updates[0.01][part]),
                               jax.tree.leaves(updates[1.0][part]))


def test_negative_lr_multiplier_is_refused():
  with pytest.raises(ValueError, match='seg_lr_multiplier=-1.0'):
    optim.make_optimizer(_opt_config(seg_lr_multiplier=-1.0), 10)


def test_schedules():
  cosine = optim.make_schedule(_opt_config(learning_rate=1.0,
                                           warmup_steps=10), 110)
  assert float(cosine(0)) == 0.0 and np.isclose(float(cosine(10)), 1.0)
  assert np.isclose(float(cosine(60)), 0.5, atol=1e-6)  # Half-way cosine.
  step = optim.make_schedule(_opt_config(
      learning_rate=1.0, warmup_steps=10, schedule='step',
      decay_at=(0.5, 0.75), decay_factor=0.1), 100)
  values = [float(step(s)) for s in (5, 20, 49, 51, 74, 76, 99)]
  np.testing.assert_allclose(values, [0.5, 1, 1, 0.1, 0.1, 0.01, 0.01],
                             rtol=1e-6)
  with pytest.raises(ValueError, match="schedule='linear' is unknown"):
    optim.make_schedule(_opt_config(schedule='linear'), 10)
