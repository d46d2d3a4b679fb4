"""Explorer screens other than the main case screen."""
