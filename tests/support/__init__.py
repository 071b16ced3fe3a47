"""Helpers shared by the test suites (real servers, test apps)."""
