"""Functional tests: pyBTC's services as real processes on loopback (DESIGN.md §7)."""
