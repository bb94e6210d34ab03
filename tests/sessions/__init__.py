"""Tests of zyron.sessions."""
