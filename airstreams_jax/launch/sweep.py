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
import importlib.util
import itertools
import json
import math
import os
import re
import sys
from typing import (Any, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Tuple)

from airstreams_jax import errors

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
    named = [m for v in flatten(self.overrides).values()
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
  overrides = {k: normalise(v) for k, v in flatten(unit.overrides).items()}
  return json.dumps([unit.config, unit.mode, sorted(overrides.items())],
                    default=repr)


def flatten(overrides: Mapping[str, Any], prefix: str = '') -> Dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}."""
  flat = {}
  for key, value in overrides.items():
    if isinstance(value, Mapping):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


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
    merged = dict(flatten(overrides or {}))
    parts = [prefix] if prefix else []
    for entry in combination:
      merged.update(flatten(entry['overrides']))
      parts.append(entry['name'])
    units.append(Unit(config=config, overrides=merged,
                      name=','.join(parts), mode=mode, after=tuple(after)))
  return units


def unit_name(unit: Unit) -> str:
  """The unit's name, or one made of its overrides."""
  if unit.name:
    return unit.name
  flat = flatten(unit.overrides)
  if not flat:
    return 'default'
  return ','.join(f'{k.rsplit(".", 1)[-1]}={_name_part(v)}'
                  for k, v in sorted(flat.items()))


def split_file_arg(file_arg: str):
  """'path/sweep.py:a=1,b' -> ('path/sweep.py', 'a=1,b'); no arg -> None."""
  path, sep, arg = file_arg.partition(':')
  return path, (arg if sep else None)


def _import_file(path: str, what: str):
  if not os.path.isfile(path):
    raise errors.ConfigError(f'{what} {path!r} does not exist; give the path '
                             'of a Python file, relative to the repository '
                             'root or absolute.')
  # Config and sweep files import `configs.base`: the working directory (the
  # repository root) must be importable, as it is for `python -m`.
  if os.getcwd() not in sys.path:
    sys.path.insert(0, os.getcwd())
  name = '_airstreams_jax_' + re.sub(r'\W', '_', os.path.abspath(path))
  spec = importlib.util.spec_from_file_location(name, path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def load_config(config_arg: str):
  """The ConfigDict of main's --config value ('file.py[:arg]')."""
  path, arg = split_file_arg(config_arg)
  module = _import_file(path, 'config file')
  return module.get_config(arg) if arg is not None else module.get_config()


def apply_overrides(config, overrides: Mapping[str, Any]) -> None:
  """Sets dotted keys in place, as main's --config.* flags would.

  Raises:
    KeyError: a key that the config does not have (the message names it).
    TypeError: a value of the wrong type for its key.
  """
  for key, value in flatten(overrides).items():
    parent, last = _parent_of(config, key)
    parent[last] = value


def _parent_of(config, key: str) -> Tuple[Any, str]:
  """The group holding dotted `key`, and the key's last part.

  Raises:
    KeyError: the first prefix of `key` that the config does not have.
  """
  parent = config
  parts = key.split('.')
  for i, part in enumerate(parts):
    if not hasattr(parent, 'keys') or part not in parent:
      raise KeyError('.'.join(parts[:i + 1]))
    if i < len(parts) - 1:
      parent = parent[part]
  return parent, parts[-1]


def parse_override(config, text: str) -> Tuple[str, Any]:
  """'KEY=VALUE' as main's --config.KEY=VALUE sets it: read as KEY's type.

  For command lines that give every unit the same override (e.g.
  `airstreams_jax.tools.ablations --set=dataset.manual_dir=/data/hmdb51`).

  Raises:
    errors.ConfigError: no '=', a key the config lacks, a group of keys, or
      a value that is not of the key's type (the message names the key).
  """
  key, sep, value_text = text.partition('=')
  key = key.strip()
  if not sep or not key:
    raise errors.ConfigError(f'{text!r}: give KEY=VALUE, e.g. '
                             'dataset.manual_dir=/data/hmdb51.')
  try:
    parent, last = _parent_of(config, key)
  except KeyError:
    raise errors.ConfigError(f'{text!r}: unknown config key {key!r}; check '
                             'its spelling against the config.') from None
  current = parent[last]
  if hasattr(current, 'keys'):
    raise errors.ConfigError(
        f'{text!r}: {key} is a group of keys; set one of them, e.g. '
        f'{key}.{next(iter(current.keys()), "KEY")}=VALUE.')
  # A typed placeholder (None now, e.g. a teacher option) has a declared
  # type, which main's --config flags parse by too.
  kind = type(current)
  if current is None and hasattr(parent, 'get_type'):
    kind = parent.get_type(last)
  try:
    return key, _parse_as(kind, value_text)
  except (ValueError, SyntaxError):
    name = _KINDS.get(kind, f'a {kind.__name__}')
    raise errors.ConfigError(
        f'{text!r}: {key} holds {name} (now {flag_value(current)}); give '
        'a value of that kind.') from None


_KINDS = {bool: 'true or false', int: 'an integer', float: 'a number',
          str: 'a string', tuple: "a tuple, e.g. ('rgb', 'flow')",
          list: "a tuple, e.g. ('rgb', 'flow')"}


def _parse_as(kind: type, text: str) -> Any:
  """`text` as a value of type `kind` (raises ValueError otherwise)."""
  if kind is bool:
    lowered = text.strip().lower()
    if lowered not in ('true', 'false'):
      raise ValueError(text)
    return lowered == 'true'
  if kind is int:
    return int(text)
  if kind is float:
    return float(text)
  if kind is str:
    return text
  if kind in (tuple, list):
    value = ast.literal_eval(text)
    if not isinstance(value, (tuple, list)):
      raise ValueError(text)
    return tuple(value)
  try:  # An untyped None: a Python literal, else the text itself.
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def flag_value(value: Any) -> str:
  """The text of a --config.* flag that ml_collections parses back."""
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if isinstance(value, list):
    value = tuple(value)
  if isinstance(value, (tuple, float, int)):
    return repr(value)
  return str(value)


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
          for k, v in flatten(unit.overrides).items()}


def command(unit: Unit, root: str) -> List[str]:
  """The `airstreams_jax.main` command line of a unit."""
  args = [sys.executable, '-m', 'airstreams_jax.main',
          f'--config={unit.config}',
          f'--workdir={os.path.join(root, unit_name(unit))}',
          f'--mode={unit.mode}']
  args += [f'--config.{k}={flag_value(v)}'
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
    apply_overrides(config, overrides)
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
      loaded[unit.config] = load_config(unit.config)
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
  for key, value in flatten(unit.overrides).items():
    value = normalise(value)
    if value is None:
      fail(key, 'None cannot be passed as a flag; leave the key out to keep '
           "the config's value.")
    current = _lookup(config, key)
    if isinstance(value, bool) and current is not None and not isinstance(
        current, bool):
      fail(key, f'{value} is a bool; the config holds a '
           f'{type(current).__name__}.')
    text = flag_value(value)
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
  path, arg = split_file_arg(file_arg)
  module = _import_file(path, 'sweep file')
  if not hasattr(module, 'get_sweep'):
    raise errors.ConfigError(f'sweep file {path} has no get_sweep(arg) '
                             'function.')
  try:
    units = module.get_sweep(arg)
  except (ValueError, TypeError, KeyError) as e:
    raise errors.ConfigError(f'sweep file {path}: get_sweep({arg!r}): '
                             f'{e}') from None
  return check(list(units))
