"""Sharding rules: which arrays split over which mesh axes."""

import jax
import numpy as np
import pytest
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
