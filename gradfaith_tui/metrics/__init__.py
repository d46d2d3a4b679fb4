"""Stage 4: metrics on maps, masks and model scores, in torch on the maps' device (body and lung
segmentation in NumPy and SciPy, on the host)."""
