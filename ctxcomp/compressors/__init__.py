"""ctxcomp.compressors."""
