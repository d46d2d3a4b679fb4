"""Explorer widgets: the virtual case table and the heatmap panel."""
