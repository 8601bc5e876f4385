"""Parameter sharding by rules: regex on an array's path -> mesh axes.

Data parallelism replicates the train state; a rule shards the arrays it
matches along a model axis instead, e.g. in a config

  config.mesh = (('data', -1), ('model', 2))
  config.sharding_rules = (('kernel$', ('model',)),)

splits the output channels (last dimension) of every conv and dense kernel,
and the optimiser moments that mirror them, over the 2 devices of 'model'.
"""

import re
from typing import Any, Sequence, Tuple

import jax
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

Rule = Tuple[str, Tuple[Any, ...]]


def path_string(path: Sequence[Any]) -> str:
  """'params/rgb_head/Dense_0/kernel' for a tree path (what rules match)."""
  parts = []
  for key in path:
    for attr in ('key', 'name', 'idx'):
      if hasattr(key, attr):
        parts.append(str(getattr(key, attr)))
        break
  return '/'.join(parts)


def check_rules(rules: Sequence[Rule], mesh: Mesh) -> None:
  """Raises ValueError for a bad regex or an axis the mesh does not have."""
  for pattern, axes in rules:
    try:
      re.compile(pattern)
    except re.error as e:
      raise ValueError(f'config.sharding_rules: bad regex {pattern!r}: '
                       f'{e}.') from None
    unknown = [a for a in axes if a is not None and a not in mesh.shape]
    if unknown:
      raise ValueError(f'config.sharding_rules: {pattern!r} names mesh axes '
                       f'{unknown}; config.mesh has {tuple(mesh.shape)}.')


def _spec(shape: Tuple[int, ...], axes: Tuple[Any, ...],
          mesh: Mesh) -> P:
  """`axes` applied to the trailing dimensions, if they divide evenly."""
  if len(axes) > len(shape):
    return P()
  for dim, axis in zip(shape[len(shape) - len(axes):], axes):
    if axis is not None and dim % mesh.shape[axis]:
      return P()
  if all(axis is None for axis in axes):
    return P()
  return P(*((None,) * (len(shape) - len(axes)) + tuple(axes)))


def state_shardings(shapes: Any, mesh: Mesh,
                    rules: Sequence[Rule] = ()) -> Any:
  """A NamedSharding for every leaf of `shapes` (e.g. the TrainState).

  The first rule whose regex matches (re.search) the leaf's `path_string`
  gives mesh axes for its trailing dimensions; arrays that no rule matches,
  or whose dimensions the axes do not divide, are replicated.
  """
  check_rules(rules, mesh)
  compiled = [(re.compile(p), tuple(a)) for p, a in rules]
  sharded, indivisible = 0, []

  def pick(path, leaf):
    nonlocal sharded
    name = path_string(path)
    for pattern, axes in compiled:
      if pattern.search(name):
        spec = _spec(tuple(leaf.shape), axes, mesh)
        if spec != P():
          sharded += 1
        elif any(axis is not None for axis in axes):
          indivisible.append(name)
        return NamedSharding(mesh, spec)
    return NamedSharding(mesh, P())

  out = jax.tree_util.tree_map_with_path(pick, shapes)
  if rules:
    logging.info('Sharding rules: %d arrays sharded; replicated because '
                 'their shape does not divide: %s', sharded,
                 ', '.join(indivisible) or 'none')
  return out
