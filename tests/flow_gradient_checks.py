"""The flow layer's gradients against float64 central differences, shared by
tests/test_rep_flow.py (single scale) and tests/test_flow_pyramid.py."""

import flax
import jax
import jax.numpy as jnp
import numpy as np


def check_layer_gradients(model, params, x, w, entries, *, eps: float,
                          input_directions: int, rng: np.random.Generator,
                          rtol: float = 1e-5) -> None:
  """Checks d/dparams and d/dx of sum(model(x) * w) in float64.

  Args:
    model: a `RepresentationFlow` in float64.
    params: its parameters.
    x: float64 clips.
    w: weights of the outputs in the scalar loss.
    entries: (parameter name, index) pairs to bump; 'bottleneck_in' is the
      1x1 reduction's kernel.
    eps: the central-difference step.
    input_directions: how many random directions of x to check.
    rng: draws those directions.
    rtol: allowed error relative to max(|analytic|, 1).
  """
  def loss(params, x):
    return jnp.sum(model.apply({'params': params}, x) * w)

  loss_jit = jax.jit(loss)
  g_params, g_x = jax.jit(jax.grad(loss, argnums=(0, 1)))(params, x)

  def check(analytic, plus, minus, what):
    fd = (float(plus) - float(minus)) / (2 * eps)
    analytic = float(analytic)
    err = abs(fd - analytic) / max(abs(analytic), 1.0)
    print(f'{what}: analytic {analytic:.6e} fd {fd:.6e} rel err {err:.1e}')
    assert np.isfinite(analytic) and err <= rtol, what

  for name, idx in entries:
    def bumped(delta, name=name, idx=idx):
      p = flax.core.unfreeze(params)
      if name == 'bottleneck_in':
        p[name] = {'kernel': p[name]['kernel'].at[idx].add(delta)}
      else:
        p[name] = p[name].at[idx].add(delta)
      return loss_jit(p, x)
    g = (g_params[name]['kernel'] if name == 'bottleneck_in'
         else g_params[name])
    check(g[idx], bumped(eps), bumped(-eps), f'{name}{list(idx)}')
  for i in range(input_directions):
    d = jnp.asarray(rng.normal(size=x.shape))
    check(jnp.vdot(g_x, d), loss_jit(params, x + eps * d),
          loss_jit(params, x - eps * d), f'input direction {i}')
