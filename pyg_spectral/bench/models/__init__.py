"""One module per benchmark model; each registers itself on import."""
