"""Teachers: pretrained segmenters whose masks supervise the semantic stream.

Masks are computed once, when a dataset is built, and stored beside the
frames; see `base.Teacher` for the interface.
"""
