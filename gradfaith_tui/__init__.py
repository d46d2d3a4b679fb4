"""gradfaith-tui: audit the faithfulness of Grad-CAM heatmaps on lung-CT classifiers."""

__version__ = "0.1.0"
