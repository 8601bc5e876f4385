r"""Any sweep's results as one Markdown table, mean ± std over seeds.

  python -m airstreams_jax.tools.summarize_sweep --root=workdirs/stop_vs_propagate \
      [--out=ROOT/summary.md]

Units whose names differ only in the seed (',seed=N' or '_sN') are one row.
Columns: the merged head's top-1 and the single-stream heads', what the
learned representations measure (flow direction accuracy, segmentation mIoU
against the teacher and, where true masks exist, against the truth beside
the teacher's own), and the flow layer's θ, λ, τ at the end of training (its
TV-L1 start: 0.30, 0.15, 0.25), read from each unit's TensorBoard events.
Cells are percentages except θ, λ, τ; '(n)' is the number of seeds.
"""

if __name__ == '__main__':
  # Before any other import: see cli.start.
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.start()

import os
import sys

from absl import flags

from airstreams_jax import cli
from airstreams_jax.launch import record as record_lib
from airstreams_jax.tools import sweep_tables


def define_flags() -> None:
  """The command's flags (defined by `cli.run`)."""
  flags.DEFINE_string('root', None, "The sweep's directory.")
  flags.DEFINE_string('out', '', 'The Markdown file; default ROOT/summary.md.')
  flags.mark_flags_as_required(['root'])


def main() -> None:
  root = flags.FLAGS.root
  if not os.path.exists(os.path.join(root, record_lib.RECORD_FILE)):
    sys.exit(f'error: {root} holds no {record_lib.RECORD_FILE}; give the '
             '--root of a sweep (python -m airstreams_jax.launch).')
  text = sweep_tables.summary_markdown(root, record_lib.read(root))
  out = flags.FLAGS.out or os.path.join(root, 'summary.md')
  with open(out, 'w') as f:
    f.write(text)
  print(text)
  print(f'Wrote {out}')


if __name__ == '__main__':
  cli.run(main, define_flags)
