"""Op lowerings for the torch backend, one module per ONNX operator family (``arithmetic``,
``activations``, ``logical``, ``cast``, ``shape``, ``layout``, ``indexing``, ``reduction``,
``conv``, ``pooling``, ``normalization``, ``attention``, ``recurrent``, ``quantization``,
``control_flow``, ``sequence``, ...); each registers its ops with ``registry.lowers``.

``registry`` imports every module here (found by ``pkgutil``), so a new family module needs no
list entry; every module must register at least one op (helpers go to ``../helpers/``).
"""
