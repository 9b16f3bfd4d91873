"""MAGNET: desktop package."""
