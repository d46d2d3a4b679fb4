"""Stage 3: heatmaps. The target layer per architecture, and CAM methods from pytorch-grad-cam."""
