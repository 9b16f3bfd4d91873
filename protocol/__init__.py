"""MAGNET wire protocol: typed, versioned, EIP-712 signed messages and the artifact bundle format.

Pure: no I/O beyond the bundle reader/writer, and no imports of other MAGNET packages.
"""
