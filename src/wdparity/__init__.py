"""wdparity: what "weight decay = lambda" actually does, measured in every framework.

This package is the core: it imports numpy and the standard library (and pydantic/rich where
inputs are validated or shown), never a deep-learning framework. Frameworks run in worker
processes through the adapters in `wdparity_backends`.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """`wdparity.describe` / `wdparity.translate` on first use: importing wdparity still loads no framework and no
    higher layer."""
    if name == "describe":
        from wdparity.tools.live import describe

        return describe
    if name == "translate":
        from wdparity.tools.translate_all import translate

        return translate
    raise AttributeError(f"module 'wdparity' has no attribute {name!r}")
