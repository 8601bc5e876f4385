r"""How much of the action gradients should reach the representations?

The curve between the two columns of the paper's Table 2: `model.grad_scale`
from 0 (stop) to 1 (propagate), all three streams, over seeds.

  python -m airstreams_jax.launch --root=workdirs/grad_scale --parallel=2 \
      --sweep=configs/sweeps/grad_scale.py:seeds=2,steps=300

Arguments (comma-separated key=value): dataset_config (main's --config,
'configs/synthetic.py'), seeds (2), steps (0 = the config's), scales
(plus-separated, '0+0.01+0.1+0.3+1').
"""

from airstreams_jax.launch import sweep
from configs import base


def get_sweep(arg=None):
  arg = base.parse_arg(arg, dataset_config='configs/synthetic.py', seeds=2,
                       steps=0, scales='0+0.01+0.1+0.3+1')
  scales = [float(s) for s in arg.scales.split('+')]
  common = {'num_train_steps': arg.steps} if arg.steps else {}
  return sweep.product(
      sweep.axis('model.grad_scale', scales,
                 names=[f'scale={s:g}' for s in scales]),
      sweep.axis('seed', range(arg.seeds)),
      config=arg.dataset_config, overrides=common)
