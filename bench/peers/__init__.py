"""Other trace stores driven by the same load generator, for comparison (``python -m bench.peers.phoenix``)."""
