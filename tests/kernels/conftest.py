"""Kernel tests run Triton on CPU through its interpreter unless a GPU is present.

This file loads before the test modules of this folder, so ``TRITON_INTERPRET=1`` is in the
environment before they import the kernel module (which decides at import time whether its
kernels are compiled or interpreted).
"""

from __future__ import annotations

import os

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
