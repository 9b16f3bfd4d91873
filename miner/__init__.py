"""MAGNET: miner package."""
