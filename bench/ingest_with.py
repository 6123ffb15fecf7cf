"""Runs the ingester with one of ``bench/client_variants.py``'s paho clients, for
``bench/ingest_bench.py --clients`` ONLY (never in production).

Usage: python bench/ingest_with.py slicer|dispatch|lean ingest [ARGS...]   (VT_ settings as usual)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import ingest.service
from bench.client_variants import VARIANTS
from villagetwin.cli import main

if __name__ == "__main__":
    variant = sys.argv.pop(1)
    ingest.service.BulkClient = VARIANTS[variant]  # type: ignore[misc]
    main()
