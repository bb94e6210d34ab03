"""Tests of zyron.streams."""
