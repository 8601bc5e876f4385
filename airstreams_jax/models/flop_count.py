"""What a JAX function costs, without compiling it: XLA's FLOPs with loops
counted per iteration, and the multiply-adds of its convolutions and dots.

`function_cost` lowers the function (nothing is compiled) and reads XLA's cost
analysis of the HLO, to which `scan_correction` adds the `length - 1` more
iterations of each `lax.scan` that XLA counts once. `airstreams_jax.model_info`
costs the model with it (its module docstring says how the numbers are
counted).
"""

import dataclasses
import math
from typing import Any, Callable, List, Optional, Sequence, Tuple

import jax
from jax.extend import core as jax_core

_MATMUL_PRIMITIVES = ('conv_general_dilated', 'dot_general')


def _lowered_flops(lowered: Any) -> float:
  analysis = lowered.cost_analysis()
  # Older JAX versions return one dict per program.
  if isinstance(analysis, (list, tuple)):
    analysis = analysis[0] if analysis else None
  if analysis is None:
    raise RuntimeError('XLA gave no cost analysis for this backend.')
  return float(analysis.get('flops', 0.0))


def _closed_jaxpr_flops(closed: Any) -> float:
  """XLA's flops of a closed jaxpr (its loops counted once)."""
  avals = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in closed.in_avals]
  return _lowered_flops(
      jax.jit(jax_core.jaxpr_as_fun(closed)).lower(*avals))


def scan_correction(jaxpr: Any) -> float:
  """The flops that XLA's count of `jaxpr` misses by counting loops once.

  A `scan` of length L whose body really costs T (its own inner loops
  corrected) appears in XLA's count as one body with its inner loops counted
  once, so the missing part is (L - 1) * T plus the inner loops' own
  correction.

  Args:
    jaxpr: a `jax.extend.core.Jaxpr` (e.g. `jax.make_jaxpr(f)(...).jaxpr`).

  Returns:
    The flops to add to XLA's count of the lowered program.

  Raises:
    NotImplementedError: for a `while` loop, whose trip count is not static.
  """
  missing = 0.0
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'scan':
      body = eqn.params['jaxpr']
      inner = scan_correction(body.jaxpr)
      length = eqn.params['length']
      if length > 1:
        missing += (length - 1) * (_closed_jaxpr_flops(body) + inner)
      missing += inner
    elif eqn.primitive.name == 'while':
      raise NotImplementedError(
          'Cannot count a while loop: its trip count is not static. Use '
          'lax.scan or lax.fori_loop with static bounds.')
    else:
      for sub in jax_core.jaxprs_in_params(eqn.params):
        missing += scan_correction(sub)
  return missing


def _matmul_eqns(jaxpr: Any, times: int = 1) -> List[Tuple[Any, int]]:
  """Every convolution and dot in `jaxpr` with how many times it runs."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in _MATMUL_PRIMITIVES:
      found.append((eqn, times))
    elif eqn.primitive.name == 'scan':
      found += _matmul_eqns(eqn.params['jaxpr'].jaxpr,
                            times * eqn.params['length'])
    else:
      for sub in jax_core.jaxprs_in_params(eqn.params):
        found += _matmul_eqns(sub, times)
  return found


def _padded_macs(eqn: Any) -> int:
  """Multiply-adds of a conv or dot, counting taps that fall on padding."""
  out_size = math.prod(eqn.outvars[0].aval.shape)
  lhs, rhs = (v.aval for v in eqn.invars)
  if eqn.primitive.name == 'dot_general':
    (contracting, _), _ = eqn.params['dimension_numbers']
    return out_size * math.prod(lhs.shape[i] for i in contracting)
  # Each output element takes one kernel slice: [in_features / groups, *k].
  out_features = rhs.shape[eqn.params['dimension_numbers'].rhs_spec[0]]
  return out_size * math.prod(rhs.shape) // out_features


def _xla_macs(eqns: Sequence[Any]) -> float:
  """XLA's flops / 2 of a list of convs and dots, each run once."""
  if not eqns:
    return 0.0

  def ops(*operands):
    return [eqn.primitive.bind(*operands[2 * i:2 * i + 2], **eqn.params)
            for i, eqn in enumerate(eqns)]

  avals = [jax.ShapeDtypeStruct(v.aval.shape, v.aval.dtype)
           for eqn in eqns for v in eqn.invars]
  return _lowered_flops(jax.jit(ops).lower(*avals)) / 2


@dataclasses.dataclass(frozen=True)
class Cost:
  """What a function costs per call.

  Attributes:
    flops: XLA's flops, loops counted once per iteration.
    macs: multiply-adds of its convolutions and dots as XLA counts them
      (without taps on padding); None if not asked for.
    macs_with_padding: the same, counting taps on padding; None if not asked
      for.
  """
  flops: float
  macs: Optional[float] = None
  macs_with_padding: Optional[float] = None


def function_cost(fn: Callable[..., Any], *args: Any,
                  count_macs: bool = True) -> Cost:
  """Counts the cost of `fn(*args)` without compiling it.

  Args:
    fn: a JAX-traceable function.
    *args: its arguments, arrays or `jax.ShapeDtypeStruct`s.
    count_macs: also count the multiply-adds of convolutions and dots (one
      more lowering).

  Returns:
    Its `Cost`.
  """
  traced = jax.jit(fn).trace(*args)
  jaxpr = traced.jaxpr.jaxpr
  flops = _lowered_flops(traced.lower()) + scan_correction(jaxpr)
  if not count_macs:
    return Cost(flops=flops)
  matmuls = _matmul_eqns(jaxpr)
  by_times = {}
  for eqn, times in matmuls:
    by_times.setdefault(times, []).append(eqn)
  macs = sum(times * _xla_macs(eqns) for times, eqns in by_times.items())
  padded = sum(times * _padded_macs(eqn) for eqn, times in matmuls)
  return Cost(flops=flops, macs=macs, macs_with_padding=float(padded))
