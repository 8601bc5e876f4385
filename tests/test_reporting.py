"""training/reporting.py: the console's evaluation line."""

from airstreams_jax.training import reporting


def test_single_label_evaluation_line():
  results = dict(step=150, top1=0.5, num_examples=256, num_classes=6,
                 per_stream={'rgb': 0.25, 'flow': 0.375, 'merged': 0.5},
                 representations={'seg_miou': 0.6125,
                                  'flow_direction_accuracy': 0.8})
  assert reporting.evaluation_line(results) == (
      'Step 150: merged top-1 0.5000 on 256 held-out clips (chance 0.1667; '
      'single-stream heads: rgb 0.2500, flow 0.3750); learned segmentation '
      'mIoU 0.613 against the teacher; learned flow direction accuracy 0.800')


def test_multi_label_evaluation_line_reports_map():
  results = dict(step=4, mAP=0.125, num_examples=8, num_classes=157,
                 per_stream={'rgb': 0.0625, 'merged': 0.125})
  assert reporting.evaluation_line(results) == (
      'Step 4: merged mAP 0.1250 on 8 held-out videos (single-stream heads: '
      'rgb 0.0625)')
