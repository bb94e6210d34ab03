"""Tests of zyron.db."""
