"""Helpers that several op lowering families share (element types, shapes, conv geometry,
sequence values); they register no op, so they live outside ``ops/``."""
