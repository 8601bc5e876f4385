"""Evaluation loop, the results file and a fingerprint of the parameters."""

import hashlib
import json
import os
from typing import Any, Callable, Dict, Iterable, Tuple

import jax
import numpy as np

from airstreams_jax import atomic_write
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
             batches: Iterable[Any], metrics_cls: type
             ) -> Tuple[Dict[str, Any], Any]:
  """Runs `eval_fn(state, batch)` over the batches and computes the metrics.

  `eval_fn` returns per-video scores (see `steps.eval_step`); the metrics are
  accumulated on the host, where the Charades mAP needs every score anyway.

  Returns:
    The results: single-label 'top1', 'mean_class_accuracy', 'top5' (with
    >= 5 classes); multi-label 'mAP'; 'per_stream' (each head's accuracy or
    mAP), 'num_examples' (real, unpadded videos) and, when the metrics
    score them, 'representations' (see `metrics.summarise_representations`).
    And the merged metrics
    collection (its confusion matrix feeds TensorBoard).
  """
  merged, num_examples = None, 0
  for batch in batches:
    outputs = to_host(eval_fn(state, batch))
    num_examples += int(outputs['mask'].sum())
    batch_metrics = metrics_cls.single_from_model_output(**outputs)
    merged = batch_metrics if merged is None else merged.merge(batch_metrics)
  if merged is None:
    raise ValueError('The evaluation split yielded no batches.')
  values = merged.compute()
  representations = values.pop('representations', None)
  values = {k: float(v) for k, v in values.items()}
  per_head = {}
  for key in list(values):
    for prefix in ('accuracy_', 'mAP_'):
      if key.startswith(prefix):
        per_head[key[len(prefix):]] = values.pop(key)
  results = dict(values)
  results['per_stream'] = {head: per_head[head]
                           for head in airstreams.STREAMS + ('merged',)
                           if head in per_head}
  results['num_examples'] = num_examples
  if representations:
    results['representations'] = representations
  return results, merged


def write_results(workdir: str, results: Dict[str, Any]) -> str:
  """Writes `eval_results.json` (process 0 only) and returns its path."""
  path = os.path.join(workdir, RESULTS_FILE)
  if jax.process_index() == 0:
    atomic_write.write_whole(path, json.dumps(results, indent=2,
                                             sort_keys=True))
  return path
