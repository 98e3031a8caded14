"""Pictures: everything that draws, and nothing that decides what to draw or when (a low layer: numpy,
OpenCV, matplotlib and the data geometry; never models, tasks or engine).

- ``detections``: 2D boxes with labels, ground truth, heatmap overlays and skeletons on images (BGR uint8)
- ``boxes3d``: projected 3D boxes on images and a bird's-eye view
- ``plots``: the run-report figures (results.png panels, PR curves, confusion matrix, validation mosaic)
"""
