"""airstreams_jax: Adaptive Intermediate Representation Streams in JAX/Flax.

Install for use: pip install -r requirements.txt -e .
Optional extras (each with the version the project tests):
  [torch]     the PyTorch twin that `python -m airstreams_jax.tools.benchmark`
              times beside the JAX model (a CPU build of torch);
  [xm]        `python -m airstreams_jax.launch --launcher=xmanager` (local,
              vertex and kubernetes executors);
  [notebook]  the kernel and plotting of notebooks/quickstart.ipynb;
  [opencv]    OpenCV's TV-L1, the reference of experiments/compare_opencv_tvl1.py.
"""

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
        'numpy>=2', 'av>=18', 'pillow>=11', 'scipy>=1.14',
        'ai-edge-litert>=2.3', 'tqdm>=4.66', 'absl-py>=2.1',
    ],
    extras_require={
        # 2.13.0 has a CPU wheel on PyPI; an unpinned torch is a CUDA build
        # of several GB.
        'torch': ['torch==2.13.0'],
        # 0.8.2 and later require protobuf<7, against requirements.txt's pin.
        'xm': ['xmanager==0.8.1'],
        'notebook': ['ipykernel==7.4.0', 'matplotlib==3.11.2',
                     'nbclient==0.11.0'],
        'opencv': ['opencv-contrib-python-headless==5.0.0.93'],
        # The rvm teacher's runtime (its model comes from a wheel, fetched).
        'rvm': ['onnxruntime==1.32.0'],
    },
)
