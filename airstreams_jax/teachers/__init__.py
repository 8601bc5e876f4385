"""Teachers: pretrained segmenters whose masks supervise the semantic stream.

Masks are computed once, when a dataset is built, and stored beside the
frames; see `base.Teacher` for the interface and `factory.make_teacher` for
how configs choose one:
  selfie    MediaPipe's person segmenter (offline default for real videos)
  tflite    any semantic-segmentation .tflite plus a label file
  files     masks another tool produced, <stem>.masks.npz beside each video
  maskrcnn  torchvision's Mask R-CNN with COCO weights (optional extra)
  oracle    the synthetic generator's true masks, optionally corrupted
"""
