"""Whether a trained artifact (probe, position profile) belongs to a given model.

Example:
    >>> same_model("qwen", "ab" * 32, "other-name", "ab" * 32)
    True
    >>> same_model("qwen", None, "qwen", "cd" * 32)
    True
"""

from __future__ import annotations


def same_model(model_id: str, weights_sha256: str | None, other_id: str, other_sha256: str | None) -> bool:
    """Compare weights hashes when both are known, else model ids.

    Args:
        model_id: Id of the model in use.
        weights_sha256: Its weights hash, or ``None``.
        other_id: Id recorded in the artifact.
        other_sha256: Hash recorded in the artifact, or ``None``.

    Returns:
        True when they are the same model.
    """
    if weights_sha256 is not None and other_sha256 is not None:
        return weights_sha256 == other_sha256
    return model_id == other_id
