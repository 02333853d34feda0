"""Deliberately broken backends, registered only for the tests through WDPARITY_EXTRA_BACKENDS."""
