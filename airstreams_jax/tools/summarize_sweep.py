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
  # Before anything loads TensorFlow: its native start-up lines stay off the
  # console (and from in front of a one-line error).
  from airstreams_jax import cli as _cli  # pylint: disable=g-import-not-at-top
  _cli.quiet_tensorflow_import()

import os
import sys

from absl import app
from absl import flags

from airstreams_jax import cli
from airstreams_jax.launch import record as record_lib
from airstreams_jax.tools import sweep_tables

_ROOT = flags.DEFINE_string('root', None, "The sweep's directory.")
_OUT = flags.DEFINE_string('out', '', 'The Markdown file; default '
                           'ROOT/summary.md.')


def main(argv):
  cli.setup_logging()
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  root = _ROOT.value
  if not os.path.exists(os.path.join(root, record_lib.RECORD_FILE)):
    sys.exit(f'error: {root} holds no {record_lib.RECORD_FILE}; give the '
             '--root of a sweep (python -m airstreams_jax.launch).')
  text = sweep_tables.summary_markdown(root, record_lib.read(root))
  out = _OUT.value or os.path.join(root, 'summary.md')
  with open(out, 'w') as f:
    f.write(text)
  print(text)
  print(f'Wrote {out}')


if __name__ == '__main__':
  flags.mark_flags_as_required(['root'])
  app.run(main)
