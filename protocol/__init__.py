"""MAGNET: protocol package."""
