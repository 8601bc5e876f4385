"""Evaluation loop, the results file and a fingerprint of the parameters."""

import hashlib
import json
import os
from typing import Any, Callable, Dict, Iterable

import jax
import numpy as np
from tensorflow.io import gfile

from airstreams_jax.models import airstreams

RESULTS_FILE = 'eval_results.json'


def to_host(tree: Any) -> Any:
  """Host copies of replicated (or fully addressable) arrays.

  On a multi-host run a replicated global array is not fully addressable, but
  each process holds a complete copy in its first addressable shard.
  """
  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return np.asarray(x.addressable_data(0))
    return np.asarray(x)
  return jax.tree.map(get, tree)


def params_sha256(params: Any) -> str:
  """SHA-256 of every parameter's name, dtype, shape and bytes, in name order.

  Two runs with equal hashes have bit-identical parameters.
  """
  digest = hashlib.sha256()
  leaves = jax.tree_util.tree_flatten_with_path(to_host(params))[0]
  for path, leaf in sorted(leaves, key=lambda kv: jax.tree_util.keystr(kv[0])):
    leaf = np.ascontiguousarray(leaf)
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(f'{leaf.dtype}{leaf.shape}'.encode())
    digest.update(leaf.tobytes())
  return digest.hexdigest()


def evaluate(eval_fn: Callable[[Any, Any], Any], state: Any,
             batches: Iterable[Any]) -> Dict[str, Any]:
  """Runs `eval_fn(state, batch)` over the batches and merges the metrics.

  Returns:
    'top1', 'mean_class_accuracy', 'top5' (with >= 5 classes), 'per_stream'
    (the accuracy of each head) and 'num_examples' (real, unpadded).
  """
  merged = None
  for batch in batches:
    step_metrics = eval_fn(state, batch)
    merged = step_metrics if merged is None else merged.merge(step_metrics)
  if merged is None:
    raise ValueError('The evaluation split yielded no batches.')
  merged = to_host(merged)
  values = {k: float(v) for k, v in merged.compute().items()}
  results = {k: v for k, v in values.items()
             if not k.startswith('accuracy_')}
  results['per_stream'] = {
      head: values[f'accuracy_{head}']
      for head in airstreams.STREAMS + ('merged',)
      if f'accuracy_{head}' in values}
  results['num_examples'] = int(merged.top1.count)
  return results


def write_results(workdir: str, results: Dict[str, Any]) -> str:
  """Writes `eval_results.json` (process 0 only) and returns its path."""
  path = os.path.join(workdir, RESULTS_FILE)
  if jax.process_index() == 0:
    with gfile.GFile(path, 'w') as f:
      json.dump(results, f, indent=2, sort_keys=True)
  return path
