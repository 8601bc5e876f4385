"""The files a training run leaves beside its checkpoints for `predict`,
`export` and `visualize`: config.json and classes.json."""

import dataclasses
import json
import os
from typing import Any, Dict, Tuple

import jax
import ml_collections
from tensorflow.io import gfile

from airstreams_jax import errors
from airstreams_jax.data import dataset_from_config


# Class names of the labels and the teacher, beside config.json in a workdir.
CLASSES_FILE = 'classes.json'


def write_run_info(config, meta: dataset_from_config.DatasetMeta,
                   workdir: str) -> None:
  """config.json and classes.json: what `predict` needs besides checkpoints."""
  if jax.process_index() == 0:
    with gfile.GFile(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2, sort_keys=True))
    with gfile.GFile(os.path.join(workdir, CLASSES_FILE), 'w') as f:
      json.dump(dataclasses.asdict(meta), f, indent=2)


def load_run(workdir: str) -> Tuple[ml_collections.ConfigDict, Dict[str, Any]]:
  """The config and class names a training run wrote into its workdir."""
  paths = [os.path.join(workdir, name)
           for name in ('config.json', CLASSES_FILE)]
  missing = [p for p in paths if not gfile.exists(p)]
  if missing:
    raise errors.ConfigError(
        f'{missing[0]} is missing; --workdir must be the workdir of a '
        'training run (python -m airstreams_jax.main).')
  with gfile.GFile(paths[0]) as f:
    config = ml_collections.ConfigDict(json.load(f))
  with gfile.GFile(paths[1]) as f:
    classes = json.load(f)
  return config, classes
