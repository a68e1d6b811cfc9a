"""neffkit: graph-level compiler optimization toolkit for inference models."""
