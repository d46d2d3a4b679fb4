"""Stage 1 of the data flow: find, read, split and synthesise CT slices."""
