"""The package's imports only point down its layers.

Lowest first: shared utilities; models, teachers and plotting; data; training;
the evolution, the launcher and model_info; the commands that use a trained
run (visualize, predict, export); main and the tools. A module may import
from its own unit (e.g. training from training) or from a lower layer,
never from a unit beside or above it. Read from the source with `ast`, so
imports inside functions count too.
"""

import ast
import os

import pytest

_PACKAGE = 'airstreams_jax'
_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), _PACKAGE)

# Each unit is a subpackage or a top-level module of the package.
LAYERS = (
    ('errors', 'cli', 'cluster', 'mesh', 'user_paths', 'sharding',
     'atomic_write'),
    ('models', 'teachers', 'plotting'),
    ('data',),
    ('training',),
    ('evolution', 'launch', 'model_info', 'video_predictor'),
    ('visualize', 'predict', 'export'),
    ('main', 'tools'),
)
_RANK = {unit: rank for rank, units in enumerate(LAYERS) for unit in units}


def _modules():
  """(dotted name, path) of every module of the package."""
  for folder, _, files in os.walk(_ROOT):
    for name in sorted(files):
      if name.endswith('.py'):
        path = os.path.join(folder, name)
        relative = os.path.relpath(path, os.path.dirname(_ROOT))[:-3]
        dotted = relative.replace(os.sep, '.')
        if dotted.endswith('.__init__'):
          dotted = dotted[:-len('.__init__')]
        yield dotted, path


def _unit(dotted: str) -> str:
  """'airstreams_jax.training.train' -> 'training'."""
  return dotted.split('.')[1]


def _imported(path: str, dotted: str):
  """The package's modules (or names) that the file at `path` imports."""
  tree = ast.parse(open(path, encoding='utf-8').read(), path)
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield alias.name, node.lineno
    elif isinstance(node, ast.ImportFrom):
      if node.level:  # Relative: resolve against the importing package.
        base = dotted.split('.')[:-node.level if not path.endswith(
            '__init__.py') else len(dotted.split('.')) - node.level + 1]
        module = '.'.join(base + ([node.module] if node.module else []))
      else:
        module = node.module or ''
      for alias in node.names:
        yield f'{module}.{alias.name}', node.lineno


def _upward_imports():
  found = []
  for dotted, path in _modules():
    if dotted == _PACKAGE:
      continue
    unit = _unit(dotted)
    for target, line in _imported(path, dotted):
      parts = target.split('.')
      if parts[0] != _PACKAGE or len(parts) < 2:
        continue
      target_unit = parts[1]
      if target_unit == unit:
        continue
      if _RANK[target_unit] >= _RANK[unit]:
        found.append(f'{os.path.relpath(path, os.path.dirname(_ROOT))}:'
                     f'{line} imports {target} ({unit} is in layer '
                     f'{_RANK[unit]}, {target_unit} in {_RANK[target_unit]})')
  return found


def test_every_unit_of_the_package_has_a_layer():
  units = {_unit(dotted) for dotted, _ in _modules() if dotted != _PACKAGE}
  assert units - set(_RANK) == set(), (
      'Add each new module or subpackage to LAYERS in this test.')


def test_imports_only_point_down():
  assert _upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
  """The checker itself: a training module importing a tool is reported."""
  package = tmp_path / _PACKAGE
  (package / 'training').mkdir(parents=True)
  (package / '__init__.py').write_text('')
  (package / 'training' / '__init__.py').write_text('')
  (package / 'training' / 'loop.py').write_text(
      'def f():\n  from airstreams_jax.tools import benchmark\n'
      'from airstreams_jax.data import pipeline\n')
  monkeypatch.setattr(f'{__name__}._ROOT', str(package))
  found = _upward_imports()
  assert len(found) == 1 and 'imports airstreams_jax.tools.benchmark' in (
      found[0]), found


@pytest.mark.parametrize('unit', ['models', 'data', 'teachers'])
def test_the_bottom_layers_import_nothing_above_them(unit):
  above = {u for u, rank in _RANK.items() if rank > _RANK['data']}
  for dotted, path in _modules():
    if dotted != _PACKAGE and _unit(dotted) == unit:
      for target, _ in _imported(path, dotted):
        parts = target.split('.')
        assert not (parts[0] == _PACKAGE and len(parts) > 1 and
                    parts[1] in above), f'{path} imports {target}'
