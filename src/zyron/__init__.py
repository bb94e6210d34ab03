"""Zyron: a self-hostable backend for AI chat products."""

__version__ = "0.1.0"
