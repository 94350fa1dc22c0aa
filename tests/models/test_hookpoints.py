import pytest

from ns_dspy.errors import ConfigError, ModelError
from ns_dspy.models import HookSpec, load_subject


def test_parse():
    assert HookSpec.parse("mlp") == HookSpec()
    assert HookSpec.parse("resid") == HookSpec("{layers}.{layer}", "output")
    assert HookSpec.parse("model.layers.{layer}.self_attn.o_proj:input") == HookSpec(
        "model.layers.{layer}.self_attn.o_proj", "input")
    for bad in ("model.layers.3", "x.{layer}:sideways", "a b {layer}"):
        with pytest.raises(ConfigError):
            HookSpec.parse(bad)


def test_module_paths(tiny_llama, tiny_gpt2):
    llama = load_subject(str(tiny_llama), dtype="float32", device="cpu").model
    gpt2 = load_subject(str(tiny_gpt2), dtype="float32", device="cpu").model
    assert HookSpec().module_path(llama, 1) == "model.layers.1.mlp.down_proj"
    assert HookSpec().module_path(gpt2, 1) == "transformer.h.1.mlp.c_proj"
    assert HookSpec.parse("resid").module_path(gpt2, 0) == "transformer.h.0"
    with pytest.raises(ModelError, match="layer 3 out of range"):
        HookSpec().module_path(llama, 3)
    with pytest.raises(ModelError, match="not found"):
        HookSpec.parse("model.layers.{layer}.nothing").module_path(llama, 0)


def test_unknown_models_are_one_line_errors(tmp_path):
    with pytest.raises(ModelError, match="unknown model 'gpt-17'"):
        load_subject("gpt-17")
    with pytest.raises(ModelError, match="no config.json"):
        load_subject(str(tmp_path))
    with pytest.raises(ConfigError, match="unknown dtype"):
        load_subject(str(tmp_path), dtype="float8")
