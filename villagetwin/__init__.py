"""villagetwin."""
