"""MAGNET: node package."""
