"""Op lowerings for the torch backend, one module per family; each registers with ``lowers``."""
