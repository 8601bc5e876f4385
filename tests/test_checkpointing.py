"""Checkpoints: keep-best, and `init_from` with re-initialised heads."""

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from airstreams_jax import errors
from airstreams_jax import mesh as mesh_lib
from airstreams_jax.models import airstreams
from airstreams_jax.training import checkpointing
from airstreams_jax.training import train_state
from configs import synthetic


def test_keeps_the_latest_and_the_best(tmp_path):
  manager = checkpointing.make_manager(str(tmp_path), keep=1,
                                       best_metric='top1')
  state = {'w': jnp.arange(3.0)}
  top1 = {2: 0.5, 4: 0.9, 6: 0.3, 8: 0.4}
  for step in range(1, 9):
    metrics = {'top1': top1[step]} if step in top1 else None
    checkpointing.save(manager, step, {'w': state['w'] + step}, metrics)
  manager.wait_until_finished()
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['4', '8']
  assert manager.best_step() == 4
  assert manager.latest_step() == 8


def _init(num_classes, seed):
  """A train state of the smoke model with random values.

  The state's structure comes from `eval_shape` (no compile); its values are
  random so that restored and fresh arrays are told apart exactly.
  """
  config = synthetic.get_config('smoke').model
  with config.unlocked():
    config.streams = ('rgb', 'semantic')
  model = airstreams.build_model(config, num_classes=num_classes,
                                 num_seg_classes=4)
  init = functools.partial(train_state.init_state, model=model,
                           tx=optax.adamw(1e-3))
  shapes = jax.eval_shape(init, jnp.int32(seed),
                          jnp.zeros((1, 4, 32, 32, 3), jnp.uint8))
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: jnp.asarray(rng.normal(size=s.shape).astype(s.dtype))
      if jnp.issubdtype(s.dtype, jnp.floating) else jnp.zeros(s.shape,
                                                              s.dtype),
      shapes)


def test_init_from_restores_all_but_heads_of_another_class_count(tmp_path):
  source = _init(num_classes=6, seed=1)
  manager = checkpointing.make_manager(str(tmp_path), keep=1)
  checkpointing.save(manager, 7, source)
  manager.wait_until_finished()

  fresh = _init(num_classes=4, seed=2)
  mesh = mesh_lib.make_mesh((('data', -1),))
  step, pretrained = checkpointing.restore_variables(
      str(tmp_path), mesh_lib.replicated(mesh))
  assert step == 7
  merged, kept = checkpointing.merge_matching(
      {'params': fresh.params, 'batch_stats': fresh.batch_stats}, pretrained)
  heads = {f"['params']['{h}_head']['Dense_0']['{k}']"
           for h in ('rgb', 'semantic', 'merged')
           for k in ('kernel', 'bias')}
  assert set(kept) == heads
  def flat(tree):
    return {jax.tree_util.keystr(p): np.asarray(v) for p, v in
            jax.tree_util.tree_flatten_with_path(tree)[0]}
  got = flat(merged)
  want_source = flat({'params': source.params,
                      'batch_stats': source.batch_stats})
  want_fresh = flat({'params': fresh.params, 'batch_stats': fresh.batch_stats})
  for key, value in got.items():
    expected = want_fresh[key] if key in heads else want_source[key]
    np.testing.assert_array_equal(value, expected, err_msg=key)
  # Seeds differ, so "restored" is not a coincidence of equal inits.
  body = "['params']['rgb_tower_lower']"
  assert any(not np.array_equal(want_source[k], want_fresh[k])
             for k in got if k.startswith(body))


def test_init_from_a_workdir_without_checkpoints(tmp_path):
  mesh = mesh_lib.make_mesh((('data', -1),))
  with pytest.raises(errors.ConfigError, match='no checkpoints/ folder'):
    checkpointing.restore_variables(str(tmp_path), mesh_lib.replicated(mesh))
