"""Zyron test suite."""
