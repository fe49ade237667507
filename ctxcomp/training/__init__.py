"""Training and calibration: probe training, position calibration, their data and plots.

Nothing here runs at inference time; :mod:`ctxcomp.compressors` holds the inference steps.

Example:
    >>> from ctxcomp.training.qa import split_of
    >>> split_of("who wrote hamlet?") in ("train", "eval")
    True
"""
