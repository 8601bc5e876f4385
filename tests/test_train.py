"""The trainer: `train_and_evaluate` in process (and what its run gives:
figures, predictions, the exported model), sharded equals unsharded, and
`main` end to end."""

import json
import os
import re
import shutil
import subprocess
import sys

from ai_edge_litert import interpreter
import av
import jax
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from airstreams_jax import export
from airstreams_jax import mesh as mesh_lib
from airstreams_jax import predict as predict_lib
from airstreams_jax import video_predictor
from airstreams_jax.training import evaluation
from airstreams_jax.training import losses
from airstreams_jax.training import setup as setup_lib
from airstreams_jax.training import train
from airstreams_jax.training import trained_run
from airstreams_jax.plotting import figures
from airstreams_jax.visualize import run_figures
from configs import synthetic
from tests import config_fuzz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _smoke_config(data_dir, **overrides):
  config = synthetic.get_config('smoke')
  with config.unlocked():
    config.dataset.data_dir = data_dir
    for key, value in overrides.items():
      config[key] = value
  return config


@pytest.fixture(scope='module')
def in_process_run(tmp_path_factory, data_dir):
  """Two steps of the smoke config through `train_and_evaluate`, in this
  process (after flax's examples/imagenet train_test.py): (workdir, the
  results it returned)."""
  workdir = str(tmp_path_factory.mktemp('in_process') / 'run')
  config = _smoke_config(data_dir, num_train_steps=2, log_every_steps=1,
                         eval_every_steps=2, checkpoint_every_steps=2)
  return workdir, train.train_and_evaluate(config, workdir)


def test_train_and_evaluate_on_the_smoke_config(in_process_run):
  workdir, results = in_process_run
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    assert json.load(f) == json.loads(json.dumps(results))  # As returned.
  assert results['step'] == 2
  assert results['num_examples'] == 16  # The whole smoke test split, once.
  for key in ('top1', 'top5', 'mean_class_accuracy'):
    assert 0.0 <= results[key] <= 1.0, key
  assert set(results['per_stream']) == {'rgb', 'flow', 'semantic', 'merged'}
  assert results['per_stream']['merged'] == results['top1']
  rep = results['representations']
  for key in ('seg_pixel_accuracy', 'seg_miou', 'truth_seg_miou',
              'truth_teacher_miou', 'flow_epe', 'flow_direction_accuracy'):
    assert np.isfinite(rep[key]), key
  # The hash is that of the weights saved at the last step.
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2']
  run = trained_run.TrainedRun.load(workdir)
  assert run.step == 2
  assert results['params_sha256'] == evaluation.params_sha256(
      run.variables['params'])
  events = [os.path.join(workdir, f) for f in os.listdir(workdir)
            if f.startswith('events.out.tfevents')]
  scalars = {v.tag: float(tf.make_ndarray(v.tensor))
             for path in events
             for event in tf.compat.v1.train.summary_iterator(path)
             for v in event.summary.value
             if v.tag in ('train/loss', 'eval/top1')}
  assert np.isfinite(scalars['train/loss']) and scalars['train/loss'] > 0
  assert scalars['eval/top1'] == pytest.approx(results['top1'])


@pytest.mark.slow
def test_the_figures_of_a_run(in_process_run, tmp_path):
  """python -m airstreams_jax.visualize's figures of a trained run."""
  workdir, results = in_process_run
  written = run_figures.write_figures(workdir, str(tmp_path / 'figures'),
                                      num_clips=3)
  assert sorted(written) == ['confusion', 'flow', 'segmentation']
  for name, path in written.items():
    pixels = np.asarray(Image.open(path).convert('RGB'))
    assert pixels.std() > 10, name  # Not blank.
  rows = figures.TITLE_HEIGHT + 3 * (96 + figures.GAP)
  assert Image.open(written['flow']).size == (
      figures.LABEL_WIDTH + 4 * (96 + figures.GAP) + figures.LEGEND_WIDTH,
      rows)  # Frames t, t+1, learned and true flow; 3 clips.
  assert Image.open(written['segmentation']).size[1] == rows
  matrix = run_figures.confusion_matrix(
      trained_run.TrainedRun.load(workdir), '')
  assert matrix.sum() == 16  # Every test video once ...
  assert np.trace(matrix) / 16 == pytest.approx(results['top1'])  # ... as
  # the evaluation scored them.


def test_video_predictor_judges_every_window(in_process_run, tmp_path,
                                             caplog):
  """Windows side by side over the whole video (the smoke clip: 4 frames at
  stride 1), each scored like the evaluation's centre crop; the video's
  scores are their mean; a short video is warned about once."""
  workdir, _ = in_process_run
  rng = np.random.default_rng(1)
  long_path, short_path = str(tmp_path / 'long.mp4'), str(tmp_path / 's.mp4')
  _write_mp4(long_path, rng.integers(0, 256, (10, 48, 64, 3), np.uint8))
  _write_mp4(short_path, rng.integers(0, 256, (3, 48, 64, 3), np.uint8))
  predictor = video_predictor.VideoPredictor(workdir, batch_size=2)
  long = predictor.predict(long_path)
  # 10 frames: windows at 0, 4 and (the tail) 6; 10 fps.
  assert [round(w.start_seconds, 3) for w in long.windows] == [0.0, 0.4, 0.6]
  assert long.windows[-1].end_seconds == pytest.approx(1.0)
  np.testing.assert_allclose(long.scores, np.mean(
      [w.scores for w in long.windows], 0), rtol=1e-6)
  # Each window's scores are those of its frames as one evaluated clip.
  frames = predictor.decode(long_path).frames
  one = predictor._window_views(frames[4:8])[None]  # pylint: disable=protected-access
  expected = predictor._score(predictor._state, one)['merged'][0]  # pylint: disable=protected-access
  np.testing.assert_allclose(long.windows[1].scores, expected, rtol=1e-5,
                             atol=1e-6)
  assert long.repeated_frames == 0
  with caplog.at_level('WARNING'):
    short = predictor.predict(short_path)
  assert len(short.windows) == 1 and short.repeated_frames == 1
  assert [r.getMessage() for r in caplog.records
          if 'shorter than the model' in r.getMessage()] == [
              f'{short_path}: 3 stored frames, shorter than the model\'s clip '
              'of 4 frames at stride 1: 1 of its 4 frames repeat the last one.']
  # The command's outputs for scripts.
  rows = predict_lib.csv_rows(long)
  assert [r[1] for r in rows] == [0, 1, 2, 'video']
  assert predict_lib.as_json(long)['windows'][2]['start_seconds'] == (
      pytest.approx(0.6))
  segments = predict_lib.timeline(long)
  assert segments[0][0] == 0.0 and segments[-1][1] == pytest.approx(1.0)
  assert len(segments) <= 3


@pytest.mark.slow
def test_predict_and_the_exported_model_agree(in_process_run, tmp_path):
  """predict's scores of a video file on the evaluation protocol's views,
  and the exported RGB-only model (SavedModel and TFLite, which score those
  views) against the JAX logits and those scores."""
  workdir, _ = in_process_run
  video_path = str(tmp_path / 'clip.mp4')
  _write_mp4(video_path, np.random.default_rng(0).integers(
      0, 256, (10, 48, 64, 3), dtype=np.uint8))
  ranked = predict_lib.predict(workdir, video_path, views='eval')
  with open(os.path.join(workdir, 'classes.json')) as f:
    assert sorted(n for n, _ in ranked) == sorted(
        json.load(f)['class_names'])
  scores = dict(ranked)
  assert abs(sum(scores.values()) - 1) < 1e-4  # Mean of softmaxes.
  assert [v for _, v in ranked] == sorted(scores.values(), reverse=True)
  _check_export(workdir, str(tmp_path), video_path, scores)


@pytest.mark.slow
def test_sharded_train_step_equals_unsharded(data_dir):
  assert jax.device_count() == 8, 'conftest should fake 8 CPU devices'
  config = _smoke_config(data_dir)
  # SGD: its update is linear in the gradient. Adam's m/sqrt(v) would turn
  # float rounding in near-zero gradients into full-size steps.
  config.optimizer.name = 'sgd'
  rng = np.random.default_rng(0)
  d = config.dataset
  batch = {
      'video': rng.integers(0, 256, (8, d.num_frames, d.image_size,
                                     d.image_size, 3), dtype=np.uint8),
      'masks': rng.integers(0, 4, (8, d.num_frames, d.image_size,
                                   d.image_size), dtype=np.uint8),
      'label': rng.integers(0, 6, (8,)).astype(np.int32)}
  weights = losses.loss_weights_vector(config.loss_weights)

  # One device; 8-way data parallel; 4-way data x 2-way model parallel with
  # every kernel's output channels split over the model axis.
  layouts = [((('data', -1),), (), jax.devices()[:1]),
             ((('data', -1),), (), jax.devices()),
             ((('data', 4), ('model', 2)), (('kernel$', ('model',)),),
              jax.devices())]
  results, initial = [], None
  for mesh_config, rules, devices in layouts:
    mesh = mesh_lib.make_mesh(mesh_config, devices)
    with config.unlocked():
      config.sharding_rules = rules
    s = setup_lib.setup(config, mesh)
    if initial is None:
      initial = jax.device_get(setup_lib.create_state(s))
    # The same initial values, laid out over this mesh's devices.
    state = jax.device_put(initial, s.state_sharding)
    if rules:
      kernel = s.state_sharding.params['rgb_head']['Dense_0']['kernel']
      assert kernel.spec == jax.sharding.PartitionSpec(None, 'model')
    step = setup_lib.jit_train_step(s)
    global_batch = mesh_lib.global_batch(batch, s.batch_sharding)
    assert len(global_batch['video'].sharding.device_set) == len(devices)
    state_shardings = jax.tree.map(lambda x: x.sharding, state)
    for _ in range(2):
      state, metrics = step(state, global_batch,
                            jax.device_put(weights, s.replicated))
    # The donated state comes back with the same shardings: no retrace.
    assert step._cache_size() == 1  # pylint: disable=protected-access
    assert jax.tree.map(lambda x: x.sharding, state) == state_shardings
    results.append((jax.device_get(state.params),
                    jax.device_get(state.batch_stats),
                    {k: float(v) for k, v in metrics.compute().items()}))

  (p1, b1, m1) = results[0]
  for p8, b8, m8 in results[1:]:
    for key in m1:
      # The gradients' global norm, a sum of squares over every gradient
      # reduced in a different order per layout, measured 1.1e-4 apart
      # (relative) here while the parameters agree to 1e-5.
      np.testing.assert_allclose(m1[key], m8[key],
                                 rtol=1e-3 if key == 'grad_norm' else 1e-5,
                                 atol=1e-6, err_msg=key)
    for a, b in zip(jax.tree.leaves((p1, b1)), jax.tree.leaves((p8, b8))):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def _main(*args, check=True):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run(
      [sys.executable, '-m', 'airstreams_jax.main', *args], cwd=ROOT, env=env,
      capture_output=True, text=True, timeout=900)
  if check and proc.returncode:
    raise AssertionError(f'main failed:\n{proc.stderr[-5000:]}')
  return proc


@pytest.mark.slow
def test_main_smoke_end_to_end_then_resume(tmp_path, data_dir,
                                          smoke_main_run):
  workdir = str(tmp_path / 'run')
  shutil.copytree(smoke_main_run[0], workdir)  # The shared run, continued.
  common = ['--config=configs/synthetic.py:smoke', f'--workdir={workdir}',
            f'--config.dataset.data_dir={data_dir}']
  proc = smoke_main_run[1]
  assert 'merged top-1' in proc.stdout
  assert 'JAX devices: 8' in proc.stderr  # The batch is split 8 ways.
  _check_console(proc.stderr, os.path.join(workdir, 'main.log'))
  _check_compiled_once(os.path.join(smoke_main_run[0], 'main.log'))
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    results = json.load(f)
  assert results['step'] == 8
  assert results['num_examples'] == 16  # The whole smoke test split, once.
  for key in ('top1', 'top5', 'mean_class_accuracy'):
    assert 0.0 <= results[key] <= 1.0
  assert set(results['per_stream']) == {'rgb', 'flow', 'semantic', 'merged'}
  assert results['per_stream']['merged'] == results['top1']
  assert len(results['params_sha256']) == 64
  # What the flow layer and the segmentation net learned, on the test split.
  rep = results['representations']
  assert 'learned segmentation mIoU' in proc.stdout
  assert 'learned flow direction accuracy' in proc.stdout
  for key in ('seg_pixel_accuracy', 'seg_miou', 'truth_seg_miou',
              'truth_teacher_miou', 'flow_epe', 'flow_direction_accuracy'):
    assert np.isfinite(rep[key]), key
  assert set(rep['seg_iou']) <= {'background', 'person', 'ball', 'box'}
  assert rep['truth_teacher_miou'] == 1.0  # The smoke data's uncorrupted.
  assert rep['flow_pixels'] > 0
  assert os.path.exists(os.path.join(workdir, 'config.json'))
  events = [os.path.join(workdir, f) for f in os.listdir(workdir)
            if f.startswith('events.out.tfevents')]
  tags = {v.tag for path in events
          for event in tf.compat.v1.train.summary_iterator(path)
          for v in event.summary.value}
  # Scalars, the confusion matrix, and flow / segmentation samples.
  assert {'train/loss', 'eval/top1', 'eval/confusion_matrix',
          'samples/clip0_rgb_flow_segmentation_teacher',
          'representations/seg_miou', 'representations/flow_epe',
          'representations/flow_direction_accuracy',
          'train/flow_layer/theta', 'train/flow_layer/lambda',
          'train/flow_layer/tau', 'train/data_wait_fraction'} <= tags
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['4', '8']

  # Re-running the finished job only re-evaluates the restored state ...
  _main(*common, '--mode=eval')
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    again = json.load(f)
  assert again['params_sha256'] == results['params_sha256']
  assert again['top1'] == results['top1']

  # The trained run predicts on a video file (RGB only).
  video_path = str(tmp_path / 'clip.mp4')
  _write_mp4(video_path, np.random.default_rng(0).integers(
      0, 256, (10, 48, 64, 3), dtype=np.uint8))
  scores_path = str(tmp_path / 'scores.json')
  proc = _predict(f'--workdir={workdir}', f'--video={video_path}',
                  '--top_k=3', f'--output_json={scores_path}')
  # The video's top classes, one '  0.1234  name' line each (then its
  # windows' timeline).
  lines = [line for line in proc.stdout.splitlines()
           if re.match(r' {2}\d\.\d{4}  \S', line)]
  assert len(lines) == 3, proc.stdout
  with open(os.path.join(workdir, 'classes.json')) as f:
    class_names = json.load(f)['class_names']
  with open(scores_path) as f:
    scores = json.load(f)['scores']
  assert sorted(scores) == sorted(class_names)
  assert abs(sum(scores.values()) - 1) < 1e-4  # Mean of softmaxes.
  best = max(scores, key=scores.get)
  assert lines[0].split(None, 1)[1] == best

  # A missing video file is named in predict's one-line error.
  missing = str(tmp_path / 'no_such_clip.mp4')
  proc = subprocess.run(
      [sys.executable, '-m', 'airstreams_jax.predict', f'--workdir={workdir}',
       f'--video={missing}'], cwd=ROOT, capture_output=True, text=True,
      timeout=600, check=False)
  assert proc.returncode == 1
  assert proc.stderr.strip() == f'error: --video={missing}: file not found'

  # (The figures and the exported model of a trained run:
  # test_the_figures_of_a_run, test_predict_and_the_exported_model_agree.)

  # ... and raising the step budget resumes from step 8.
  proc = _main(*common, '--config.num_train_steps=10')
  with open(os.path.join(workdir, 'eval_results.json')) as f:
    resumed = json.load(f)
  assert resumed['step'] == 10
  assert resumed['params_sha256'] != results['params_sha256']
  assert 'Resumed from the checkpoint of step 8' in proc.stderr


@pytest.mark.slow
def test_a_non_finite_step_stops_training_before_it_is_saved(tmp_path,
                                                             data_dir):
  workdir = str(tmp_path / 'run')
  # The learning rate jumps x1e30 at 60% of the 8 steps: step 5's update
  # blows the weights up and step 6's forward pass overflows.
  spike = ['--config=configs/synthetic.py:smoke', f'--workdir={workdir}',
           f'--config.dataset.data_dir={data_dir}',
           '--config.optimizer.schedule=step',
           '--config.optimizer.decay_factor=1e30',
           '--config.checkpoint_every_steps=2',
           # The check reads the step's losses, whichever streams made them;
           # the RGB stream alone compiles about three times faster.
           "--config.model.streams=('rgb',)"]
  proc = _main(*spike, check=False)
  assert proc.returncode == 1
  last = proc.stderr.strip().splitlines()[-1]
  assert last.startswith('error: Step 6: not finite: '), proc.stderr[-3000:]
  assert 'the newest checkpoint (step 4) is intact' in last
  # The check runs every step: nothing after the last good save was saved.
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
  # A restart resumes from the last good save, trains step 5 from it with
  # finite losses, and (same seed, same data, same spike) stops at step 6
  # again.
  proc = _main(*spike, '--config.log_every_steps=1', check=False)
  assert 'Resumed from the checkpoint of step 4' in proc.stderr
  assert re.search(r' step 5/8: loss \d+\.\d+ ', proc.stderr), proc.stderr
  assert proc.stderr.strip().splitlines()[-1].startswith(
      'error: Step 6: not finite: ')


def _check_console(console: str, log_file: str) -> None:
  """The console shows our lines, the progress and the losses; library
  chatter (absl-prefixed records, TensorFlow's native start-up lines,
  deprecation warnings) goes to the log file only."""
  lines = console.strip().splitlines()
  assert all(re.match(r'\d\d:\d\d:\d\d ', line) for line in lines), lines
  assert not [line for line in lines if 'deprecat' in line.lower() or
              'oneDNN' in line], lines
  assert any(re.search(r' step 8/8: loss \d+\.\d+ \(rgb ', line)
             for line in lines), lines
  assert any(' progress: ' in line and '(8/8)' in line for line in lines)
  with open(log_file) as f:
    logged = f.read()
  # Everything, in absl's format: the scalar writer's lines included.
  assert re.search(r'^I\d{4} .*logging_writer.py.*train/loss=', logged, re.M)
  assert 'step 8/8: loss' in logged


def _check_compiled_once(log_file: str) -> None:
  """Each step was compiled once, the train step ahead on the compile
  thread: the calls
  found it in jit's cache (a shape, dtype or sharding of the abstract
  arguments that differed from the real ones would lower it again, and JAX,
  logging compiles (the fixture's JAX_LOG_COMPILES), would log it twice).
  absl's lines carry the thread id: not the main thread's."""
  with open(log_file) as f:
    logged = f.read()

  def thread_of(text):
    return re.search(rf'^\S+ \S+ (\d+) .*{re.escape(text)}', logged,
                     re.M).group(1)
  main_thread = thread_of('Initialised a new state')
  for step in ('train_step', 'eval_step', 'sample_step'):
    assert logged.count(f'Compiling jit({step})') == 1, step
  # The train step ahead; the others at their first call.
  assert thread_of('Compiling jit(train_step)') != main_thread
  assert thread_of('Compiling jit(eval_step)') == main_thread


def _check_export(workdir, directory, video_path, predicted):
  """The exported RGB-only model (SavedModel and TFLite) gives the JAX
  merged logits on real clips, and predict's scores on a video file."""
  run = trained_run.TrainedRun.load(workdir)
  clips = next(run_figures.eval_batches(run, '', 2))['video'][:, 0]
  expected = np.asarray(run.model.apply(
      run.variables, clips, train=False, stream_heads=False)['logits']
                        ['merged'])
  saved = export.export(workdir, os.path.join(directory, 'model'))
  model = tf.saved_model.load(saved)
  class_names = run.classes['class_names']
  for i in range(2):
    out = model.signatures['serving_default'](clip=tf.constant(clips[i:i + 1]))
    np.testing.assert_allclose(out['logits'].numpy()[0], expected[i],
                               atol=1e-4)
  assert [c.decode() for c in out['class_names'].numpy()] == class_names
  frames = predict_lib.decode_frames(video_path, run.config.dataset)
  out = model.signatures['classify_video'](frames=tf.constant(frames))
  scores = dict(zip(class_names, out['probabilities'].numpy().tolist()))
  for name in class_names:
    assert abs(scores[name] - predicted[name]) < 1e-4, (name, scores)
  classes = export.load_classes(saved)
  assert classes['class_names'] == class_names
  assert classes['short_side'] == run.config.dataset.get('short_side', 0)

  tflite = export.export(workdir, os.path.join(directory, 'model.tflite'),
                         'tflite')
  runner = interpreter.Interpreter(model_path=tflite).get_signature_runner()
  for i in range(2):
    out = runner(clip=clips[i:i + 1])
    np.testing.assert_allclose(out['logits'][0], expected[i], atol=1e-4)
  assert export.load_classes(tflite)['class_names'] == class_names


def _predict(*args):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  proc = subprocess.run(
      [sys.executable, '-m', 'airstreams_jax.predict', *args], cwd=ROOT,
      env=env, capture_output=True, text=True, timeout=600)
  if proc.returncode:
    raise AssertionError(f'predict failed:\n{proc.stderr[-5000:]}')
  return proc


def _write_mp4(path, frames):
  with av.open(path, 'w') as container:
    stream = container.add_stream('libx264', rate=10)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = 'yuv420p'
    for frame in frames:
      container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, 'rgb24')))
    container.mux(stream.encode())


_BAD_OVERRIDES = [
    ('--config.num_train_step=3', "unknown config key 'num_train_step'"),
    ('--config.batch_size=12', 'not divisible by the 8 devices'),
    ('--config.loss_weights_file=/nonexistent/w.json', 'does not exist'),
    ('--config.optimizer.name=adam',
     "config.optimizer.name='adam' is unknown"),
    ('--config.model.grad_scale=-0.5', 'config.model.grad_scale=-0.5 must'),
    ('--config.optimizer.seg_lr_multiplier=-1',
     'config.optimizer.seg_lr_multiplier=-1.0'),
]


@pytest.mark.parametrize('override,message', _BAD_OVERRIDES)
def test_bad_config_overrides_are_one_line_errors(tmp_path, override,
                                                  message):
  """What main does with its flags up to where it would build the dataset
  (tests/config_fuzz.py): the flags parser, then the config checks; the
  error is one line and nothing was built or compiled."""
  key = override[len('--config.'):].split('=')[0].split('.')[-1]
  case = config_fuzz.run_case(config_fuzz.Case([override], key),
                              str(tmp_path / 'never_built'))
  assert case.caught, (case.why, case.message)
  assert case.message.startswith('error:') and message in case.message, (
      case.message)


@pytest.mark.slow
@pytest.mark.parametrize('args,message', [
    # One of each way main stops before any work: its flags parser, the
    # config checks (the other bad overrides above take the same way), its
    # own workdir check.
    (['--config.num_train_step=3'], "unknown config key 'num_train_step'"),
    (['--config.batch_size=12'], 'not divisible by the 8 devices'),
    (['--workdir=/nonexistent_parent_dir/run'], 'does not exist'),
])
def test_main_rejects_bad_input_in_one_line(tmp_path, args, message):
  argv = ['--config=configs/synthetic.py:smoke',
          f'--workdir={tmp_path / "run"}',
          f'--config.dataset.data_dir={tmp_path / "never_built"}'] + args
  proc = _main(*argv, check=False)
  assert proc.returncode != 0
  # The error is the only line: no start-up chatter or log lines before it.
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr[-2000:]
  assert lines[0].startswith('error:') and message in lines[0], lines
  # Rejected before any work: no dataset was built.
  assert not os.path.exists(tmp_path / 'never_built')
