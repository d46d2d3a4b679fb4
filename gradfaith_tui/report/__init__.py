"""Stage 6: the audit as tables and documents, read from a cache only."""
