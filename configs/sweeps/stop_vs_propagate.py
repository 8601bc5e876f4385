r"""Why does stopping the action gradients beat propagating them here?

The paper's Table 2 says propagating the action losses into the
representations helps; on the synthetic dataset (and the held-out
folder-of-videos benchmark) stopping them won. With the gradients stopped the
flow layer keeps its TV-L1 constants and kernels (only AdamW's decay touches
them); propagated, Adam moves θ, λ, τ, the divergence kernels and the
bottleneck at the towers' learning rate. This sweep separates "learning the
representation at all" from "learning it at the wrong rate":

  stop          gradients stopped (the fixed TV-L1 layer)
  propagate     gradients propagated at the full rate (the paper's setting)
  flow_lr=M     propagated, the representation nets' updates scaled by M
                (`optimizer.flow_lr_multiplier` and `seg_lr_multiplier`;
                the rep-flow authors train the flow layer at 0.01x)
  scale=S       propagated, the action gradient into the representations
                multiplied by S (`model.grad_scale`)

  python -m airstreams_jax.launch --root=workdirs/stop_vs_propagate \
      --parallel=2 --sweep=configs/sweeps/stop_vs_propagate.py:seeds=3

Arguments (comma-separated key=value): dataset_config ('configs/synthetic.py'),
streams ('flow' | 'sem' | 'all'; 'flow'), seeds (3), steps (0 = the
config's), lr_multipliers (plus-separated, '0.01'), scales ('0.1').
"""

from airstreams_jax.launch import sweep
from configs import base

STREAMS = {'flow': ('rgb', 'flow'), 'sem': ('rgb', 'semantic'),
           'all': ('rgb', 'flow', 'semantic')}


def _floats(text):
  return [float(v) for v in str(text).split('+') if v]


def get_sweep(arg=None):
  arg = base.parse_arg(arg, dataset_config='configs/synthetic.py',
                       streams='flow', seeds=3, steps=0,
                       lr_multipliers='0.01', scales='0.1')
  if arg.streams not in STREAMS:
    raise ValueError(f'streams={arg.streams!r}; use one of {sorted(STREAMS)}.')
  common = {'model.streams': STREAMS[arg.streams]}
  if arg.steps:
    common['num_train_steps'] = arg.steps
  settings = [{'overrides': {'model.stop_gradient': True}, 'name': 'stop'},
              {'overrides': {'model.stop_gradient': False},
               'name': 'propagate'}]
  for m in _floats(arg.lr_multipliers):
    settings.append({'overrides': {'model.stop_gradient': False,
                                   'optimizer.flow_lr_multiplier': m,
                                   'optimizer.seg_lr_multiplier': m},
                     'name': f'flow_lr={m:g}'})
  for s in _floats(arg.scales):
    settings.append({'overrides': {'model.stop_gradient': False,
                                   'model.grad_scale': s},
                     'name': f'scale={s:g}'})
  return sweep.product(settings, sweep.axis('seed', range(arg.seeds)),
                       config=arg.dataset_config, overrides=common,
                       prefix=arg.streams)
