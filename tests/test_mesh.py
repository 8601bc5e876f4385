"""Sharding rules: which arrays split over which mesh axes."""

import concurrent.futures
import contextlib
import logging
import threading

import jax
import numpy as np
import pytest
from absl import logging as absl_logging
from jax.sharding import PartitionSpec as P

from airstreams_jax import mesh as mesh_lib
from airstreams_jax import sharding


def _mesh():
  return mesh_lib.make_mesh((('data', 4), ('model', 2)))


def test_rules_match_paths_first_rule_wins_and_indivisible_replicate():
  shapes = {'params': {'conv': {'kernel': jax.ShapeDtypeStruct((3, 3, 4, 8),
                                                               np.float32),
                                'bias': jax.ShapeDtypeStruct((8,),
                                                             np.float32)},
                       'head': {'kernel': jax.ShapeDtypeStruct((8, 51),
                                                               np.float32)}},
            'opt_state': [{'mu': {'conv': {'kernel': jax.ShapeDtypeStruct(
                (3, 3, 4, 8), np.float32)}}}]}
  rules = (('head/kernel', ()), ('kernel$', ('model',)),
           ('bias', ('data',)))
  out = sharding.state_shardings(shapes, _mesh(), rules)
  assert out['params']['conv']['kernel'].spec == P(None, None, None, 'model')
  # Optimiser moments follow their parameters.
  assert out['opt_state'][0]['mu']['conv']['kernel'].spec == P(
      None, None, None, 'model')
  assert out['params']['conv']['bias'].spec == P('data')
  assert out['params']['head']['kernel'].spec == P()  # First rule: replicate.
  # 51 classes do not split over 2 devices: replicated, not an error.
  out = sharding.state_shardings(shapes, _mesh(), (('kernel$', ('model',)),))
  assert out['params']['head']['kernel'].spec == P()


def test_path_string():
  tree = {'params': {'a': [{'kernel': 0}]}}
  paths = [sharding.path_string(p) for p, _ in
           jax.tree_util.tree_flatten_with_path(tree)[0]]
  assert paths == ['params/a/0/kernel']


def test_bad_rules_are_rejected():
  with pytest.raises(ValueError, match="names mesh axes \\['tensor'\\]"):
    sharding.check_rules((('kernel', ('tensor',)),), _mesh())
  with pytest.raises(ValueError, match='bad regex'):
    sharding.check_rules((('kernel(', ('model',)),), _mesh())


@contextlib.contextmanager
def absltest_logs():
  """The messages absl's logger emits inside the block."""
  messages = []
  handler = logging.Handler()
  handler.emit = lambda record: messages.append(record.getMessage())
  logger = absl_logging.get_absl_logger()
  logger.addHandler(handler)
  try:
    yield messages
  finally:
    logger.removeHandler(handler)


def test_compile_ahead_is_reused_by_the_call_and_a_failure_only_warns():
  traces = []

  def scaled_sum(x, w):
    # Runs once per trace.
    traces.append((x.shape, threading.current_thread().name))
    return (x * w).sum(), x + 1

  mesh = mesh_lib.make_mesh((('data', -1),))
  rows = mesh_lib.data_sharding(mesh)
  fn = mesh_lib.CompiledTogether(jax.jit(
      scaled_sum, in_shardings=(rows, mesh_lib.replicated(mesh)),
      donate_argnums=0), 'scaled sum')
  x = jax.device_put(np.arange(16.0, dtype=np.float32).reshape(8, 2), rows)
  w = jax.device_put(np.float32(2.0), mesh_lib.replicated(mesh))
  with concurrent.futures.ThreadPoolExecutor(
      1, thread_name_prefix='ahead') as executor:
    fn.compile_ahead(executor,
                     jax.ShapeDtypeStruct((8, 2), np.float32, sharding=rows),
                     w)
    total, _ = fn(x, w)
    assert float(total) == 240.0
    # Traced (and compiled) once, on the worker; the call reused it.
    assert traces == [((8, 2), 'ahead_0')]
    # A compile ahead that fails (wrongly guessed arguments) is a warning;
    # the call compiles for its own arguments.
    fn.compile_ahead(executor, jax.ShapeDtypeStruct((16, 2), np.float32),
                     jax.ShapeDtypeStruct((3,), np.float32))
    with absltest_logs() as logged:
      total, _ = fn(jax.device_put(np.ones((16, 2), np.float32), rows), w)
    assert float(total) == 64.0
    assert traces[1:] == [((16, 2), 'ahead_0'), ((16, 2), 'MainThread')]
    assert any('Compiling the scaled sum ahead failed' in m and 'broadcast' in m
               for m in logged), logged
