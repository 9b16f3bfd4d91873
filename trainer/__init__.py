"""MAGNET: trainer package."""
