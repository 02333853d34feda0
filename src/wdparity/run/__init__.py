"""Running: the backend protocol and its registry, the adapter template, case files turned into runs, and the
harness that trains each run natively in a worker process (worker.py)."""
