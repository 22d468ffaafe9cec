"""The data the engine decides over, pure: the spec, events, the folded run state, expressions, budgets
and limits. Nothing here does I/O or imports from `engine`, `service` or `store` (tests/test_layering.py)."""
