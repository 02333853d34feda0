"""Report writers: console (rich), JSON, Markdown and HTML (with plots)."""
