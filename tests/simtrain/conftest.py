"""A tiny labelled-text pool (Brown-format prose + Python code) tokenized with the tiny Llama's tokenizer."""

from __future__ import annotations

import pytest

from tiny_text import CODE, brown_files


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_llama):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_llama))


@pytest.fixture(scope="session")
def tiny_pool(tiny_tokenizer):
    from simulator_training.text import build_pool, code_documents, prose_documents

    docs = prose_documents(brown_files()) + code_documents([(f"m{k}.py", c * 3) for k, c in enumerate(CODE * 3)],
                                                           min_words=5)
    return build_pool(docs, tiny_tokenizer, window=24, min_tokens=8, eval_share=0.3, progress=False)


@pytest.fixture
def drawn_explanations(tiny_tokenizer):
    """``draw(units)``: the explanations training batches read from ``units`` over 30 steps of 8 pairs."""
    from simulator_training.train import Batcher

    def draw(units: list[dict]) -> list[str]:
        seen = []

        class Recording(Batcher):
            def example(self, u, e, explanation):
                seen.append(explanation)
                return super().example(u, e, explanation)

        batcher = Recording(units, tiny_tokenizer, [], max_tokens=64, seed=0)
        for step in range(30):
            batcher.batch(step, 8)
        return seen

    return draw
