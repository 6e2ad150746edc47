"""Evaluation: metrics, scoring and reports."""
