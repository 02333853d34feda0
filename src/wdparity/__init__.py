"""wdparity: what "weight decay = lambda" actually does, measured in every framework.

This package is the core: it imports numpy and the standard library (and pydantic/rich where
inputs are validated or shown), never a deep-learning framework. Frameworks run in worker
processes through the adapters in `wdparity_backends`.
"""

__version__ = "0.1.0"
