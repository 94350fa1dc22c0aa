"""Conformance suites: one per plug-in point, run on every registered implementation (see conftest.py)."""
