"""Alert rules (pure functions), the case workflow's rules, and the worker that applies them."""
