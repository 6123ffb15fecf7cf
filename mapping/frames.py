"""Small helpers for pandas frames shared by the layer builders and the dashboard's pages."""

from __future__ import annotations

from typing import Any


def rows(frame: Any) -> Any:
    """``frame.itertuples()`` typed loosely: pandas-stubs types each field of a row as any cell
    value, so strict mypy would need a cast at every use; the rows are named tuples."""
    return frame.itertuples()
