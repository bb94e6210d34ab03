"""Tests of zyron.chat."""
