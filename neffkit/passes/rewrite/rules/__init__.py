"""neffkit's rewrite rules, one module per concept, all registered in ``registry.BUILTIN_RULES``.

Every module here is imported when the rule set is first used (no list to keep): a new module
needs no other edit. Modules: ``arithmetic`` (involutions, neutral operands), ``casts``,
``copies`` (nodes that only copy an input), ``matmul`` (MatMul + Add -> Gemm, input scales),
``reshape`` (Reshape / Squeeze / Unsqueeze and the shape tensors they read), ``rows``
(row-wise regions run on 2-D rows), ``transpose``, ``weights`` (constant affine maps folded
into Conv / Gemm / MatMul / BatchNormalization constants).
"""
