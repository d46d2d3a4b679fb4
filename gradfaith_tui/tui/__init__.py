"""The terminal explorer. Kept import-free: `gradfaith_tui.tui.app` pulls in Textual only when run."""
