"""Tests of zyron.llm."""
