"""ctxcomp.text."""
