"""The engine: task data, schedules, recording and the float64 NumPy reference.

NumPy and the standard library only (tests/test_layers.py checks it in a fresh interpreter): every worker
imports it, MXNet's venv with NumPy < 1.24 included. Nothing here knows a framework, a case file or a report.
"""
