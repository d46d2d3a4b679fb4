"""The cache: SQLite rows plus memory-mapped arrays. Never imports torch, so the explorer starts fast."""
