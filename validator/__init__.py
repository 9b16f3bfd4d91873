"""MAGNET: validator package."""
