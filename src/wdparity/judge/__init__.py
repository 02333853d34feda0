"""Judging: envelopes, comparison, diagnosis of causes, stability, fidelity against the reference, and `check`,
which turns cases into verdicts."""
