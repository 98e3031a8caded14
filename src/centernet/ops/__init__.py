"""The numeric core (SPEC 1-4), the lowest layer of the package: it imports nothing else of ``centernet``.

- ``heatmap``: gaussian radius (both variants), gaussian kernels and drawing (NumPy, data pipeline)
- ``decode``: peak extraction (3x3 max), top-K, gather, ctdet box decoding (pure tensor code, fixed K)
- ``losses``: focal loss, gathered L1 / smooth-L1, heatmap MSE
- ``boxes``: the box IoU, soft-NMS, per-image and per-class merge of detection rows
- ``transforms``: the image <-> input / output-map affine, detections back to image pixels
"""
