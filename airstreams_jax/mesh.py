"""Device mesh from the config, shardings, host batches -> global arrays, and
keeping the processes of a multi-host run in step."""

import concurrent.futures
from typing import Any, Callable, Mapping, Sequence, Tuple

from absl import logging
import jax
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P
import numpy as np
from orbax.checkpoint import multihost as ocp_multihost

DATA_AXIS = 'data'


def mesh_shape(mesh_config: Sequence[Tuple[str, int]],
               num_devices: int) -> Tuple[Tuple[str, ...], Tuple[int, ...]]:
  """Resolves the config's (name, size) pairs; one size may be -1."""
  names = tuple(name for name, _ in mesh_config)
  sizes = [int(size) for _, size in mesh_config]
  if DATA_AXIS not in names:
    raise ValueError(f"config.mesh needs a '{DATA_AXIS}' axis, got {names}.")
  known = int(np.prod([s for s in sizes if s != -1]))
  if sizes.count(-1) > 1 or num_devices % known:
    raise ValueError(f'config.mesh {tuple(mesh_config)} does not fit '
                     f'{num_devices} devices; use at most one -1 and sizes '
                     'that divide the device count.')
  sizes = [num_devices // known if s == -1 else s for s in sizes]
  if int(np.prod(sizes)) != num_devices:
    raise ValueError(f'config.mesh sizes {sizes} multiply to '
                     f'{int(np.prod(sizes))}, not the {num_devices} devices.')
  return names, tuple(sizes)


def make_mesh(mesh_config: Sequence[Tuple[str, int]],
              devices: Sequence[jax.Device] = None) -> Mesh:
  """A mesh with Auto axes (this JAX's `jax.make_mesh` defaults to Explicit)."""
  devices = jax.devices() if devices is None else list(devices)
  names, sizes = mesh_shape(mesh_config, len(devices))
  return Mesh(np.asarray(devices).reshape(sizes), names,
              axis_types=(AxisType.Auto,) * len(names))


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Leading (batch) axis split over the data axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def global_batch(local_batch: Mapping[str, np.ndarray],
                 sharding: NamedSharding) -> dict:
  """Assembles each process's share into global arrays sharded on the batch."""
  return {k: jax.make_array_from_process_local_data(sharding, v)
          for k, v in local_batch.items()}


# How long a process waits at a barrier for the others: one may be building
# the dataset (hours for a real one) or compiling (minutes).
BARRIER_TIMEOUT_S = 24 * 3600


def wait_for_all_processes(name: str,
                           timeout_s: float = BARRIER_TIMEOUT_S) -> None:
  """A barrier of the coordination service, not a device collective.

  The CPU collectives (gloo) give a process 30 s to join the first
  collective of each program before they fail, and processes drift apart
  by more than that while one builds a dataset or compiles at its own pace
  on a loaded machine. Waiting here first, with a timeout of our own, puts
  every process at the collective together. `name` must not repeat in a
  run. A no-op with one process.
  """
  if jax.process_count() > 1:
    ocp_multihost.get_barrier_sync_fn()(key=name,
                                        timeout_ms=int(timeout_s * 1000))


class CompiledTogether:
  """A jitted function whose every new program is compiled by all processes
  before any of them runs it (see `wait_for_all_processes`): the first call
  with new argument shapes compiles ahead (`lower().compile()`, which the
  call then reuses) and waits for the others. With one process, the plain
  function.

  `compile_ahead` compiles it on a worker thread for given argument shapes
  while the caller does other work.
  """

  def __init__(self, fn: Callable[..., Any], name: str):
    self._fn, self._name = fn, name
    self._compiled = set()  # Signatures compiled so far.
    self._ahead = []  # Futures of compile_ahead, not yet waited for.

  def compile_ahead(self, executor: concurrent.futures.Executor,
                    *abstract_args) -> None:
    """Starts tracing and compiling for these arguments on `executor`.

    XLA compiles with the GIL released, so the caller meanwhile initialises
    or restores the state on the other cores: on 2 CPU cores the train
    step's compile (1.4 cores) and the state's initialisation (1.3) overlap.
    The first call waits for the compile and finds the program in jit's
    cache; `abstract_args` must be `jax.ShapeDtypeStruct`s (or arrays) with
    exactly the shapes, dtypes and shardings of the real arguments, or that
    call compiles anew. A compile ahead that fails is logged as a warning
    and left to the call, which compiles for its real arguments (raising
    there if they fail too): a wrong guess of the arguments costs time, not
    the run. A compile under way when the caller stops (an error, Ctrl-C)
    still runs to its end before the interpreter exits.
    """
    self._ahead.append(executor.submit(
        lambda: self._fn.lower(*abstract_args).compile()))

  def __call__(self, *args):
    while self._ahead:
      try:
        self._ahead.pop(0).result()
      except Exception as e:  # pylint: disable=broad-except
        logging.warning('Compiling the %s ahead failed (%s: %s); it '
                        'compiles at its first call instead.', self._name,
                        type(e).__name__, e)
    if jax.process_count() > 1:
      leaves, tree = jax.tree.flatten(args)
      signature = (tree, tuple((np.shape(x), str(getattr(x, 'dtype', type(x))))
                               for x in leaves))
      if signature not in self._compiled:
        self._fn.lower(*args).compile()
        wait_for_all_processes(
            f'airstreams_jax: {self._name} compiled ({len(self._compiled)})')
        self._compiled.add(signature)
    return self._fn(*args)
