"""Sweep files: a Python file whose `get_sweep(arg)` lists work units.

The big_vision `get_hyper` idea, for whole runs. A sweep file is plain
Python:

  from airstreams_jax.launch import sweep

  def get_sweep(arg=None):
    return sweep.product(
        sweep.axis('seed', [0, 1, 2]),
        sweep.axis('model.stop_gradient', [False, True],
                   names=['propagate', 'stop']),
        config='configs/synthetic.py:smoke')

Each `Unit` is one `airstreams_jax.main` run: a config file with its
argument, `--config.*` overrides, an optional name (its workdir under the
sweep's root; derived from the overrides when omitted), the mode (train and
evaluate, or evolve) and the units it waits for. A string override may name
another unit's workdir as `{workdir:NAME}` (e.g. the evolved weights:
`loss_weights_file='{workdir:evolve}/best_weights.json'`), which also makes
the unit wait for NAME.

`load` expands a `FILE[:arg]` into checked units: names unique and safe,
dependencies known and acyclic, every override key present in its config
with a value of the right type. It raises `errors.ConfigError` naming the
unit before anything starts.
"""

import ast
import dataclasses
import itertools
import json
import math
import os
import re
import sys
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

from airstreams_jax import errors
from airstreams_jax.launch import config_overrides

MODES = ('train_and_eval', 'evolve')
_SAFE_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9._=+,-]*$')
MAX_NAME_LENGTH = 120
# Files of a sweep's root that no unit's workdir may take the name of.
RESERVED_NAMES = ('experiment.json', 'experiment.json.tmp', 'tables.md',
                  'launch.lock')
_WORKDIR_REF = re.compile(r'\{workdir:([^}]+)\}')


@dataclasses.dataclass(frozen=True)
class Unit:
  """One run of a sweep.

  Attributes:
    config: a config file and its argument, as main's --config
      ('configs/synthetic.py:smoke').
    overrides: `--config.*` values by dotted key; nested dicts are flattened
      ({'loss_weights': {'rgb': 0}} is loss_weights.rgb=0).
    name: the unit's workdir name under the root; derived from the
      overrides when empty.
    mode: main's --mode, one of `MODES`.
    after: names of units that must finish first.
  """
  config: str
  overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  name: str = ''
  mode: str = 'train_and_eval'
  after: Sequence[str] = ()

  def dependencies(self) -> List[str]:
    """`after` plus the units named by `{workdir:NAME}` in the overrides."""
    named = [m for v in config_overrides.flatten(self.overrides).values()
             for text in _strings(v) for m in _WORKDIR_REF.findall(text)]
    return list(dict.fromkeys([*self.after, *named]))


def _strings(value: Any) -> List[str]:
  if isinstance(value, str):
    return [value]
  if isinstance(value, (tuple, list)):
    return [s for v in value for s in _strings(v)]
  return []


def normalise(value: Any) -> Any:
  """Python values for NumPy scalars (e.g. from np.linspace) and tuples for
  lists, as a config holds them."""
  if isinstance(value, (tuple, list)):
    return tuple(normalise(v) for v in value)
  if hasattr(value, 'item') and hasattr(value, 'dtype'):  # NumPy scalar.
    return value.item()
  return value


def unit_key(unit: Unit) -> str:
  """What decides a unit's run (config, mode, overrides), independent of the
  root, the interpreter and the order of the overrides: a unit whose key
  changed is another run."""
  overrides = {k: normalise(v)
               for k, v in config_overrides.flatten(unit.overrides).items()}
  return json.dumps([unit.config, unit.mode, sorted(overrides.items())],
                    default=repr)


def axis(key: str, values: Iterable[Any],
         names: Optional[Sequence[str]] = None) -> List[Dict[str, Any]]:
  """One sweep axis: a list of override dicts, each with its name part.

  `names` label the values in unit names (default 'key=value' with the key's
  last component, e.g. 'seed=1').
  """
  values = list(values)
  if names is None:
    short = key.rsplit('.', 1)[-1]
    names = [f'{short}={_name_part(v)}' for v in values]
  if len(names) != len(values):
    raise ValueError(f'axis {key!r}: {len(names)} names for {len(values)} '
                     'values.')
  return [{'overrides': {key: v}, 'name': n} for v, n in zip(values, names)]


def _name_part(value: Any) -> str:
  if isinstance(value, (tuple, list)):
    return '+'.join(_name_part(v) for v in value)
  return re.sub(r'[^A-Za-z0-9._=+-]', '_', str(value))


def product(*axes: List[Dict[str, Any]], config: str,
            overrides: Optional[Mapping[str, Any]] = None,
            prefix: str = '', mode: str = 'train_and_eval',
            after: Sequence[str] = ()) -> List[Unit]:
  """Every combination of the axes' values, as units of one config."""
  units = []
  for combination in itertools.product(*axes):
    merged = dict(config_overrides.flatten(overrides or {}))
    parts = [prefix] if prefix else []
    for entry in combination:
      merged.update(config_overrides.flatten(entry['overrides']))
      parts.append(entry['name'])
    units.append(Unit(config=config, overrides=merged,
                      name=','.join(parts), mode=mode, after=tuple(after)))
  return units


def unit_name(unit: Unit) -> str:
  """The unit's name, or one made of its overrides."""
  if unit.name:
    return unit.name
  flat = config_overrides.flatten(unit.overrides)
  if not flat:
    return 'default'
  return ','.join(f'{k.rsplit(".", 1)[-1]}={_name_part(v)}'
                  for k, v in sorted(flat.items()))


def resolve(value: Any, root: str) -> Any:
  """Replaces `{workdir:NAME}` by that unit's workdir under `root`."""
  if isinstance(value, (tuple, list)):
    return tuple(resolve(v, root) for v in value)
  if not isinstance(value, str):
    return value
  return _WORKDIR_REF.sub(lambda m: os.path.join(root, m.group(1)), value)


def resolved_overrides(unit: Unit, root: str) -> Dict[str, Any]:
  """The unit's overrides by dotted key, as config values, with `{workdir:NAME}`
  resolved under `root`."""
  return {k: resolve(normalise(v), root)
          for k, v in config_overrides.flatten(unit.overrides).items()}


def command(unit: Unit, root: str) -> List[str]:
  """The `airstreams_jax.main` command line of a unit."""
  args = [sys.executable, '-m', 'airstreams_jax.main',
          f'--config={unit.config}',
          f'--workdir={os.path.join(root, unit_name(unit))}',
          f'--mode={unit.mode}']
  args += [f'--config.{k}={config_overrides.flag_value(v)}'
           for k, v in resolved_overrides(unit, root).items()]
  return args


def check(units: Sequence[Unit]) -> List[Unit]:
  """Names, modes, dependencies and override keys of every unit, checked.

  Returns:
    The units with their names filled in, in an order where every unit comes
    after the units it waits for (otherwise the sweep's order).

  Raises:
    errors.ConfigError: naming the unit and what to fix.
  """
  if not units:
    raise errors.ConfigError('the sweep has no units; get_sweep(arg) must '
                             'return a non-empty list of sweep.Unit.')
  named = []
  for i, unit in enumerate(units):
    if not isinstance(unit, Unit):
      raise errors.ConfigError(
          f'sweep entry {i} is a {type(unit).__name__}, not a sweep.Unit.')
    named.append(dataclasses.replace(unit, name=unit_name(unit)))
  names = [u.name for u in named]
  for unit in named:
    if (not _SAFE_NAME.match(unit.name) or unit.name in RESERVED_NAMES or
        len(unit.name) > MAX_NAME_LENGTH):
      raise errors.ConfigError(
          f'unit {unit.name!r}: a name must start with a letter or digit, '
          'hold only letters, digits and . _ = + , - (it is a directory), '
          f'have at most {MAX_NAME_LENGTH} characters and not be one of '
          f'{RESERVED_NAMES}.')
    if names.count(unit.name) > 1:
      raise errors.ConfigError(
          f'unit {unit.name!r} appears {names.count(unit.name)} times; give '
          'the units distinct names.')
    if unit.mode not in MODES:
      raise errors.ConfigError(
          f'unit {unit.name!r}: mode={unit.mode!r}; use one of {MODES}.')
    for dependency in unit.dependencies():
      if dependency not in names:
        raise errors.ConfigError(
            f'unit {unit.name!r} waits for {dependency!r}, which is not a '
            f'unit of the sweep (units: {", ".join(names)}).')
  _check_overrides(named)
  return _dependency_order(named)


def _check_overrides(units: Sequence[Unit]) -> None:
  loaded = {}
  for unit in units:
    _check_values(unit, _loaded_config(unit, loaded))
    unit_config(unit, loaded)


def unit_config(unit: Unit, loaded: Dict[str, Any], root: str = '/root',
                leave_out: Sequence[str] = ()):
  """A copy of the unit's config with its overrides applied, as its main
  will see it (`{workdir:NAME}` resolved under `root`).

  Args:
    unit: a named unit.
    loaded: config files already loaded, by --config value; filled in, so
      that a sweep loads each file once.
    root: the sweep's root.
    leave_out: override keys not to apply (e.g. a file another unit writes).

  Raises:
    errors.ConfigError: naming the unit and the config file or key to fix.
  """
  config = _loaded_config(unit, loaded).copy_and_resolve_references()
  overrides = resolved_overrides(unit, root)
  for key in leave_out:
    overrides.pop(key, None)
  try:
    config_overrides.apply_overrides(config, overrides)
  except KeyError as e:
    raise errors.ConfigError(
        f'unit {unit.name!r}: unknown config key {e.args[0]!r} in '
        f'{unit.config}; check its spelling against the config.') from None
  except TypeError as e:
    raise errors.ConfigError(f'unit {unit.name!r}: {e}') from None
  return config


def _loaded_config(unit: Unit, loaded: Dict[str, Any]):
  if unit.config not in loaded:
    try:
      loaded[unit.config] = config_overrides.load_config(unit.config)
    except errors.ConfigError as e:
      raise errors.ConfigError(f'unit {unit.name!r}: {e}') from None
    except Exception as e:  # pylint: disable=broad-except
      raise errors.ConfigError(
          f'unit {unit.name!r}: config {unit.config!r} fails to load: '
          f'{type(e).__name__}: {e}') from None
  return loaded[unit.config]


def _empty_dicts(overrides: Mapping[str, Any], prefix: str = '') -> List[str]:
  empty = []
  for key, value in overrides.items():
    if isinstance(value, Mapping):
      empty += ([f'{prefix}{key}'] if not value else
                _empty_dicts(value, f'{prefix}{key}.'))
  return empty


def _check_values(unit: Unit, config) -> None:
  """Values that a --config.* flag cannot carry back to main unchanged."""
  def fail(key, problem):
    raise errors.ConfigError(f'unit {unit.name!r}: {key}: {problem}')
  for key in _empty_dicts(unit.overrides):
    fail(key, 'an empty dict overrides nothing; drop it or give its keys.')
  for key, value in config_overrides.flatten(unit.overrides).items():
    value = normalise(value)
    if value is None:
      fail(key, 'None cannot be passed as a flag; leave the key out to keep '
           "the config's value.")
    current = _lookup(config, key)
    if isinstance(value, bool) and current is not None and not isinstance(
        current, bool):
      fail(key, f'{value} is a bool; the config holds a '
           f'{type(current).__name__}.')
    text = config_overrides.flag_value(value)
    if isinstance(value, float) and not math.isfinite(value):
      continue  # 'nan' / 'inf' parse back as floats.
    if isinstance(value, tuple):
      try:
        parsed = ast.literal_eval(text)
      except (ValueError, SyntaxError):
        parsed = None
      if parsed != value:
        fail(key, f'{value!r} does not survive the command line ({text}); '
             'use plain Python numbers and strings.')


def _lookup(config, key: str) -> Any:
  node = config
  for part in key.split('.'):
    if not hasattr(node, 'keys') or part not in node:
      return None
    node = node[part]
  return node


def _dependency_order(units: Sequence[Unit]) -> List[Unit]:
  ordered, placed = [], set()
  remaining = list(units)
  while remaining:
    ready = [u for u in remaining if set(u.dependencies()) <= placed]
    if not ready:
      cycle = ', '.join(u.name for u in remaining)
      raise errors.ConfigError(
          f'the units {cycle} wait for each other in a cycle; break it.')
    for unit in ready:
      ordered.append(unit)
      placed.add(unit.name)
    remaining = [u for u in remaining if u.name not in placed]
  return ordered


def load(file_arg: str) -> List[Unit]:
  """The checked units of a sweep file, 'path/sweep.py[:arg]'."""
  path, arg = config_overrides.split_file_arg(file_arg)
  module = config_overrides.import_file(path, 'sweep file')
  if not hasattr(module, 'get_sweep'):
    raise errors.ConfigError(f'sweep file {path} has no get_sweep(arg) '
                             'function.')
  try:
    units = module.get_sweep(arg)
  except (ValueError, TypeError, KeyError) as e:
    raise errors.ConfigError(f'sweep file {path}: get_sweep({arg!r}): '
                             f'{e}') from None
  return check(list(units))
