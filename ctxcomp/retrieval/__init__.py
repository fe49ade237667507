"""ctxcomp.retrieval."""
