"""wdparity's framework adapters, one module per framework, registered as entry points.

Each module imports only numpy, pydantic and the wdparity core at import time; its framework is
imported inside `train()`, which runs in a worker process.
"""
