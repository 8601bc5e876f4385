r"""The paper's Figure 4 claim, measured: with the action gradients
propagated, does the learned segmentation recover objects the teacher
missed?

The synthetic dataset's oracle teacher drops whole objects from a clip's
masks with probability `drop` (and erodes shapes by `erode` pixels); the
true masks stay in the dataset. Each unit trains all three streams with the
gradients stopped or propagated; its eval_results.json then holds
`truth_seg_miou` (the learned segmentation against the true masks) beside
`truth_teacher_miou` (the corrupted teacher against the same truth).

  python -m airstreams_jax.launch --root=workdirs/imperfect_teacher \
      --parallel=2 --sweep=configs/sweeps/imperfect_teacher.py:seeds=2

Arguments: dataset_config ('configs/synthetic.py'; its dataset must be the
synthetic one), seeds (2), steps (0 = the config's), drop (0.3), erode (1).
"""

from airstreams_jax.launch import sweep
from configs import base


def get_sweep(arg=None):
  arg = base.parse_arg(arg, dataset_config='configs/synthetic.py', seeds=2,
                       steps=0, drop=0.3, erode=1)
  common = {'dataset.synthetic.oracle_drop_prob': arg.drop,
            'dataset.synthetic.oracle_erode_px': arg.erode}
  if arg.steps:
    common['num_train_steps'] = arg.steps
  return sweep.product(
      sweep.axis('model.stop_gradient', [True, False],
                 names=['stop', 'propagate']),
      sweep.axis('seed', range(arg.seeds)),
      config=arg.dataset_config, overrides=common,
      prefix=f'drop={arg.drop:g},erode={arg.erode}')
