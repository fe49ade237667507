"""ctxcomp.models."""
