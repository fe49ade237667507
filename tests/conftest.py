"""Shared fixtures: tiny random-weight proxy models with a real (trained-here) BPE tokenizer."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: NQ-open evaluation data shipped with the repository (benchmarks/data/SOURCES.md): no test skips for it.
NQ_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "nq-open-dev.jsonl"

_CORPUS = [
    "The Eiffel Tower is in Paris. Paris is the capital of France.",
    "Wilhelm Conrad Röntgen won the first Nobel Prize in Physics in 1901.",
    "Question: who wrote Hamlet? Answer: William Shakespeare wrote it.",
    "Read the documents, then answer the question. Document [1]: text.",
    "东京是日本的首都。你好！ Emoji 😀 and numbers 3.14, 42, 2024.",
] * 20


def _train_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<bos>", "<eos>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_CORPUS, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )
    fast.save_pretrained(path)


def build_tiny(kind: str, path: Path) -> Path:
    """Save a tiny random model of ``kind`` ('qwen2' or 'gemma3') plus tokenizer to ``path``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _train_tokenizer(path)
    vocab = len(AutoTokenizer.from_pretrained(path))
    torch.manual_seed(0)
    if kind == "qwen2":
        from transformers import Qwen2Config

        cfg = Qwen2Config(
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=4096,
            bos_token_id=0,
            eos_token_id=1,
            tie_word_embeddings=True,
        )
    else:
        from transformers import Gemma3TextConfig

        cfg = Gemma3TextConfig(
            vocab_size=vocab,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=6,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=32,
            sliding_window=16,
            query_pre_attn_scalar=32,
            max_position_embeddings=4096,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=2,
            layer_types=["sliding_attention"] * 2
            + ["full_attention"]
            + ["sliding_attention"] * 2
            + ["full_attention"],
        )
    model = AutoModelForCausalLM.from_config(cfg)
    # Sharper attention than default init, so the oracle comparison is not trivially uniform.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "q_proj" in name or "k_proj" in name:
                p.mul_(8.0)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("qwen2", tmp_path_factory.mktemp("tiny_qwen"))


@pytest.fixture(scope="session")
def tiny_gemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny("gemma3", tmp_path_factory.mktemp("tiny_gemma"))


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the real model cache (for slow tests) but never write stray files elsewhere."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def nq_rows() -> list[dict]:
    import json

    with NQ_PATH.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]
