"""MAGNET: wallet package."""
