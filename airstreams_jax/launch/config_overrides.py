"""Config files and `--config.*` overrides, read and set as main's flags do.

`load_config` loads main's --config value ('file.py[:arg]'), `apply_overrides`
sets a unit's (nested) overrides by dotted key, `parse_override` reads a
'KEY=VALUE' text as the key's type and `flag_value` writes a value as the
text of a --config.* flag that ml_collections parses back. The sweep files
(`sweep.py`) and the ablations command build on them.
"""

import ast
import importlib.util
import os
import re
import sys
from typing import Any, Dict, Mapping, Tuple

from airstreams_jax import errors


def flatten(overrides: Mapping[str, Any], prefix: str = '') -> Dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}."""
  flat = {}
  for key, value in overrides.items():
    if isinstance(value, Mapping):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def split_file_arg(file_arg: str):
  """'path/sweep.py:a=1,b' -> ('path/sweep.py', 'a=1,b'); no arg -> None."""
  path, sep, arg = file_arg.partition(':')
  return path, (arg if sep else None)


def import_file(path: str, what: str):
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
  module = import_file(path, 'config file')
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
