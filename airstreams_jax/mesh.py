"""Device mesh from the config, shardings, and host batches -> global arrays."""

from typing import Mapping, Sequence, Tuple

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

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
