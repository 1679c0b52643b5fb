"""Helpers for the register tests: the fixture data path."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).parent / "data"
