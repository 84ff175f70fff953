"""anomalib-nfplus."""
