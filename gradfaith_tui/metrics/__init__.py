"""Stage 4: metrics on maps, masks and model scores. Array metrics here are pure NumPy."""
