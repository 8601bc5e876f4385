r"""The speed of the codebase on this machine, in one run: one table, one JSON.

  python -m airstreams_jax.tools.benchmark [--out=benchmark.json] [--quick] \
      [--official_flow=PATH/rep_flow_layer.py]

Measures, with the machine's description (CPU, cores, jax/XLA versions,
device kind, load average):
  * the f32 matmul GFLOP/s of this machine, in the same run: the roofline;
  * the train step of the synthetic config (its batch of 16) and of the
    paper-scale model (`configs/mit.py`: 8x112x112 clips, 339 classes, the
    selfie teacher's 2 classes; `--paper_batch`, 2 by default): clips/s,
    achieved GFLOP/s (`model_info`'s FLOPs of a clip's forward and backward
    pass x batch / median step time), compile time, peak memory;
  * RGB-only inference (the pruned network `predict` serves): clips/s and
    GFLOPs per clip;
  * the representation-flow layer, forward and forward+backward, at
    (1,16,112,112,3) K=1 20 iterations and (1,16,56,56,64) K=32 10 iterations;
  * the input pipeline (tf.data, the synthetic dataset at the train step's
    batch shape), and the selfie teacher's frames/s on 128-px frames;
  * the evolution: K = 1, 2, 5, 10 vmapped proxy trainings against K
    sequential ones (the group step the search runs).
When PyTorch is installed (`pip install -e '.[torch]'`)
the same train steps, inference and flow layer of `airstreams_jax/tools/torch_twin.py`
are timed in the same rounds, alternating with ours, so both see the same
load, and their FLOPs are printed beside ours. PyTorch runs in a child
process of its own (`airstreams_jax/tools/torch_worker.py`; loaded into this one it
slowed our step) and only one side works at a time. `--official_flow` also times
the official PyTorch representation-flow layer (piergiovanni/
representation-flow-cvpr19 `rep_flow_layer.py`, which is not in this
repository: fetch it, and write its `(mask1^1) & (mask2^1)` as
`(~mask1) & (~mask2)` for current PyTorch) against ours.

Every figure is the median of `--rounds` timed rounds after a warm-up; one
round gives each side an untimed call, to settle after the other side ran
(`alternate`), then times `--steps` calls. The goals of GitHub issue 12 are
checked at the end. Takes about 25 minutes on 2 CPU cores (`--quick`: about
8, fewer rounds, a smaller matmul and evolution K = 1, 2 only).
"""

if __name__ == '__main__':
  # Before any other import: see cli.start.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.start()

import contextlib
import importlib.util
import json
import os
import time
from typing import Any, Dict, List, Mapping, Optional

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf
import tensorflow_datasets as tfds

from airstreams_jax import atomic_write
from airstreams_jax import cli
from airstreams_jax import model_info
from configs import mit as mit_config
from configs import synthetic as synthetic_config
from airstreams_jax.tools import benchmark_measurements as measure
from airstreams_jax.tools import torch_worker
from airstreams_jax.tools.peak_memory import PeakMemory

FLAGS = flags.FLAGS


def define_flags() -> None:
  """The command's flags (defined by `cli.run`)."""
  flags.DEFINE_string('out', 'benchmark.json', 'JSON file to write.')
  flags.DEFINE_bool('quick', False, 'Fewer rounds, K = 1, 2 only.')
  flags.DEFINE_integer('rounds', None, 'Timed rounds (default 5, --quick 2).')
  flags.DEFINE_integer('paper_batch', 2, 'Batch of the paper-scale train step.')
  flags.DEFINE_bool('torch', True, 'Time the PyTorch twin when PyTorch is '
                    'installed.')
  flags.DEFINE_list('only', [], 'Only these sections (default all): '
                    'matmul, synthetic, paper, flow, pipeline, teacher, '
                    'evolution.')
  flags.DEFINE_string(
      'official_flow', '', 'Path of the official PyTorch rep_flow_layer.py '
      '(not in this repository) to time against ours.')


def torch_available() -> bool:
  return FLAGS.torch and importlib.util.find_spec('torch') is not None


# --------------------------------------------------------------------------
# Report.


def _fmt(value, unit='', digits=1):
  if value is None:
    return '—'
  return f'{value:,.{digits}f}{unit}'


def flat_keys(results: Mapping[str, Any]) -> Dict[str, Any]:
  """The headline figures under the names scripts read (those of the
  sections that ran)."""
  keys = {}
  if 'matmul' in results:
    keys['matmul_gflops_per_s'] = results['matmul']
  for prefix, name in (('', 'synthetic'), ('paper_', 'paper')):
    r = results.get(name)
    if not r:
      continue
    keys[f'{prefix}train_clips_per_s'] = r['train_clips_per_s']
    keys[f'{prefix}train_gflops_per_s'] = r['train_gflops_per_s']
    keys[f'{prefix}compile_s'] = r['compile_s']
    keys[f'{prefix}peak_rss_mb'] = r['peak_rss_mb']
    keys[f'{prefix}inference_clips_per_s'] = r['inference_clips_per_s']
    keys[f'{prefix}inference_gflops_per_clip'] = r[
        'inference_gflops_per_clip']
    if 'torch' in r:
      keys[f'torch_{prefix}train_clips_per_s'] = r['torch'][
          'train_clips_per_s']
      keys[f'torch_{prefix}inference_clips_per_s'] = r['torch'][
          'inference_clips_per_s']
  # The paper-scale model is what inference serves; the synthetic one's
  # figures keep their `synthetic_` name.
  for key in ('inference_clips_per_s', 'inference_gflops_per_clip',
              'torch_inference_clips_per_s'):
    if key in keys:
      keys['synthetic_' + key] = keys.pop(key)
    if 'paper_' + key in keys:
      keys[key] = keys.pop('paper_' + key)
  if 'torch_paper_inference_clips_per_s' in keys:
    keys['torch_inference_clips_per_s'] = keys.pop(
        'torch_paper_inference_clips_per_s')
  peaks = [keys.pop(k) for k in ('peak_rss_mb', 'paper_peak_rss_mb')
           if k in keys]
  if peaks and None not in peaks:
    keys['peak_rss_mb'] = max(peaks)
  if 'flow' in results:
    flow = results['flow'][measure.FLOW_SHAPES[0][0]]
    keys['flow_fwd_ms'] = flow['jax fwd']
    keys['flow_fwd_bwd_ms'] = flow['jax fwd+bwd']
    if 'torch fwd+bwd' in flow:
      keys['torch_flow_fwd_bwd_ms'] = flow['torch fwd+bwd']
    if 'official fwd+bwd' in flow:
      keys['official_flow_fwd_bwd_ms'] = flow['official fwd+bwd']
  if 'pipeline' in results:
    keys['pipeline_clips_per_s'] = results['pipeline']
  if 'teacher' in results:
    keys['teacher_frames_per_s'] = results['teacher'].get('frames_per_s')
  for k, row in results.get('evolution', {}).items():
    keys[f'evolution_vmap_speedup_k{k}'] = row['speedup']
  return keys


def goals(keys: Mapping[str, Any]) -> List[str]:
  """Issue 12's goals: each met or not, and by how much."""
  lines = []

  def goal(text, needs, value, target):
    if not all(keys.get(k) for k in needs):
      lines.append(f'  [   ?   ] {text}: not measured')
      return
    met = 'met' if value() >= target else 'NOT met'
    lines.append(f'  [{met:^7}] {text}: {value():.2f} (goal >= {target:g})')

  goal('paper-scale train step, share of the matmul roofline',
       ('paper_train_gflops_per_s', 'matmul_gflops_per_s'),
       lambda: keys['paper_train_gflops_per_s'] / keys['matmul_gflops_per_s'],
       0.30)
  goal('synthetic train step, clips/s ours / PyTorch twin',
       ('train_clips_per_s', 'torch_train_clips_per_s'),
       lambda: keys['train_clips_per_s'] / keys['torch_train_clips_per_s'],
       1.0)
  goal('paper-scale train step, clips/s ours / PyTorch twin',
       ('paper_train_clips_per_s', 'torch_paper_train_clips_per_s'),
       lambda: (keys['paper_train_clips_per_s'] /
                keys['torch_paper_train_clips_per_s']), 1.0)
  goal('flow fwd+bwd (1,16,112,112,3) K=1 20 it, official layer / ours',
       ('official_flow_fwd_bwd_ms', 'flow_fwd_bwd_ms'),
       lambda: keys['official_flow_fwd_bwd_ms'] / keys['flow_fwd_bwd_ms'],
       12.0)
  goal('input pipeline / what the synthetic train step consumes',
       ('pipeline_clips_per_s', 'train_clips_per_s'),
       lambda: keys['pipeline_clips_per_s'] / keys['train_clips_per_s'], 3.0)
  goal('evolution, 10 vmapped / 10 sequential proxies',
       ('evolution_vmap_speedup_k10',),
       lambda: keys['evolution_vmap_speedup_k10'], 3.0)
  return lines


def table(results: Mapping[str, Any]) -> str:
  """The measurements side by side, one row each."""
  rows = [('what', 'ours (JAX)', 'PyTorch twin', 'ours / twin')]
  roofline = results.get('matmul')

  def row(what, ours, twin=None, unit='', digits=1, higher_is_better=True):
    ratio = None
    if ours and twin:
      ratio = ours / twin if higher_is_better else twin / ours
    rows.append((what, _fmt(ours, unit, digits),
                 _fmt(twin, unit, digits) if twin is not None else '',
                 _fmt(ratio, 'x', 2) if ratio else ''))

  if roofline:
    row('matmul f32 GFLOP/s (the roofline)', roofline)
  for name in ('synthetic', 'paper'):
    r = results.get(name)
    if not r:
      continue
    t = r.get('torch', {})
    rows.append((f'{name}: B={r["batch"]}, clips '
                 f'{"x".join(map(str, r["clip"]))}, '
                 f'{r["params"] / 1e6:.2f}M params', '', '', ''))
    row('  train clips/s', r['train_clips_per_s'], t.get('train_clips_per_s'),
        digits=2)
    row('  train GFLOP/s achieved', r['train_gflops_per_s'],
        t.get('train_gflops_per_s'))
    if roofline:
      row('  % of the roofline', 100 * r['train_gflops_per_s'] / roofline,
          100 * t['train_gflops_per_s'] / roofline if t else None)
    row('  inference clips/s (RGB only)', r['inference_clips_per_s'],
        t.get('inference_clips_per_s'), digits=2)
    row('  train GFLOPs per clip', r['train_gflops_per_clip'], digits=2)
    row('  inference GFLOPs per clip', r['inference_gflops_per_clip'],
        digits=2)
    if t:
      row('  forward GMACs per clip (padding counted)',
          r['forward_gmacs_per_clip'], t['forward_gmacs_per_clip'], digits=3)
      row('  inference GMACs per clip (padding counted)',
          r['inference_gmacs_per_clip'], t['inference_gmacs_per_clip'],
          digits=3)
      row('  parameters (M)', r['params'] / 1e6, t['params'] / 1e6, digits=3)
    row('  train step compile s', r['compile_s'])
    row('  peak RSS MB (ours: state, compile, step; twin: its process)',
        r['peak_rss_mb'], t.get('peak_rss_mb'), digits=0,
        higher_is_better=False)
  for name, f in results.get('flow', {}).items():
    row(f'{name} fwd ms', f['jax fwd'], f.get('torch fwd'), digits=0,
        higher_is_better=False)
    row(f'{name} fwd+bwd ms', f['jax fwd+bwd'], f.get('torch fwd+bwd'),
        digits=0, higher_is_better=False)
    if 'official fwd+bwd' in f:
      row(f'{name} fwd+bwd ms, official PyTorch layer', f['jax fwd+bwd'],
          f['official fwd+bwd'], digits=0, higher_is_better=False)
  if 'pipeline' in results:
    row('input pipeline clips/s (synthetic, B=16)', results['pipeline'])
  if 'teacher' in results:
    teacher = results['teacher']
    if 'frames_per_s' in teacher:
      row('selfie teacher frames/s (128x170)', teacher['frames_per_s'])
    else:
      rows.append(('selfie teacher', teacher['error'][:70], '', ''))
  for k, e in results.get('evolution', {}).items():
    row(f'evolution K={k}: vmapped / sequential throughput', e['speedup'],
        unit='x', digits=2)
  widths = [max(len(r[i]) for r in rows) for i in range(4)]
  return '\n'.join('  '.join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(r, widths)))
                   for r in rows)


SECTIONS = ('matmul', 'synthetic', 'paper', 'flow', 'pipeline', 'teacher',
            'evolution')
# The sections that time PyTorch beside us (in the worker process).
TWIN_SECTIONS = ('synthetic', 'paper', 'flow')


def main() -> None:
  unknown = sorted(set(FLAGS.only) - set(SECTIONS))
  if unknown:
    raise app.UsageError(f'--only: unknown sections {unknown}; use some of '
                         f'{SECTIONS}.')
  if FLAGS.official_flow and not os.path.isfile(FLAGS.official_flow):
    raise app.UsageError(f'--official_flow={FLAGS.official_flow}: no such '
                         'file; give the path of the official '
                         'rep_flow_layer.py.')
  if FLAGS.official_flow and not torch_available():
    raise app.UsageError("--official_flow needs PyTorch: pip install -e "
                         "'.[torch]' (and no --torch=false).")
  out_dir = os.path.dirname(os.path.abspath(FLAGS.out))
  if not os.access(out_dir, os.W_OK):
    raise app.UsageError(f'--out={FLAGS.out}: {out_dir} is not writable; '
                         'give another path.')
  # Progress is this script's own lines; library notices would bury them.
  logging.set_verbosity(logging.ERROR)
  tf.get_logger().setLevel('ERROR')
  tfds.disable_progress_bar()
  quick = FLAGS.quick
  rounds = FLAGS.rounds or (2 if quick else 5)
  memory = PeakMemory()
  results: Dict[str, Any] = {'machine': measure.machine(), 'rounds': rounds,
                             'quick': quick}
  m = results['machine']
  print(f'{m["cpu"]}, {m["cores"]} cores, {"/".join(m["simd"])}, jax '
        f'{m["jax"]}, load average {m["load_average_at_start"]:.1f}; '
        f'PyTorch twin: {"yes" if torch_available() else "no"}', flush=True)
  syn = synthetic_config.get_config()
  with contextlib.ExitStack() as stack:
    selected = set(FLAGS.only or SECTIONS)
    worker = (stack.enter_context(torch_worker.TorchWorker())
              if torch_available() and selected & set(TWIN_SECTIONS)
              else None)
    run_sections(results, syn, rounds, quick, memory, worker)
  keys = flat_keys(results)
  atomic_write.write_whole(FLAGS.out, json.dumps(
      {**keys, 'details': results}, indent=1, sort_keys=True))
  print(table(results))
  print('Goals (GitHub issue 12):')
  print('\n'.join(goals(keys)))
  print(f'{results["seconds"] / 60:.1f} min; load average at the end '
        f'{results["load_average_at_end"]:.1f}; written to {FLAGS.out}')


def run_sections(results: Dict[str, Any], syn, rounds: int, quick: bool,
                 memory: PeakMemory,
                 worker: Optional[torch_worker.TorchWorker]) -> None:
  """Runs the sections that --only selects, into `results`, writing the
  JSON after each."""
  sections = {
      'matmul': lambda: measure.matmul_gflops(2048 if quick else 4096,
                                              rounds),
      'synthetic': lambda: measure.bench_model(
          'synthetic', syn, model_info.default_class_counts(syn.dataset),
          syn.batch_size, rounds, 2 if quick else 3, memory, worker),
      'paper': lambda: measure.bench_model(
          'paper', mit_config.get_config(), measure.PAPER_CLASSES,
          FLAGS.paper_batch, rounds, 1, memory, worker),
      'flow': lambda: measure.bench_flow(rounds, worker, FLAGS.official_flow),
      'pipeline': lambda: measure.bench_pipeline(syn, syn.batch_size,
                                                 20 if quick else 60),
      'teacher': lambda: measure.bench_teacher(rounds),
      'evolution': lambda: measure.bench_evolution(
          [1, 2] if quick else [1, 2, 5, 10], rounds),
  }
  start = time.perf_counter()
  for name in SECTIONS:
    if FLAGS.only and name not in FLAGS.only:
      continue
    measure.progress(f'{name} ...')
    results[name] = sections[name]()
    # What is measured so far survives a later failure or Ctrl-C.
    atomic_write.write_whole(FLAGS.out, json.dumps(
        {'details': results}, indent=1, sort_keys=True))
  results['seconds'] = time.perf_counter() - start
  results['load_average_at_end'] = os.getloadavg()[0]


if __name__ == '__main__':
  cli.run(main, define_flags, console_logging=False)
