"""Tests of the API as a whole: its OpenAPI document, and schemathesis against a live server."""
