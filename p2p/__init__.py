"""MAGNET: p2p package."""
