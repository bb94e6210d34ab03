"""Tests of zyron.auth."""
