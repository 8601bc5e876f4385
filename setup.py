"""airstreams_jax: Adaptive Intermediate Representation Streams in JAX/Flax."""

import setuptools

setuptools.setup(
    name='airstreams_jax',
    version='0.1.0',
    description=('AIRStreams action recognition: RGB, learned-flow and '
                 'semantic streams in JAX/Flax.'),
    packages=setuptools.find_packages(include=['airstreams_jax',
                                               'airstreams_jax.*']),
    python_requires='>=3.11',
    # Exact, tested versions live in requirements.txt; these are the floors.
    install_requires=[
        'jax>=0.10', 'flax>=0.12', 'optax>=0.2.8', 'orbax-checkpoint>=0.12',
        'tensorflow-cpu>=2.21', 'tensorflow-datasets>=4.9.10',
        'ml-collections>=1.1', 'clu>=0.0.12', 'tensorboard>=2.21',
        'numpy>=2',
    ],
)
