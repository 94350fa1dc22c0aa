"""experiments/tier_depth.py's variants: DEPTH or DEPTH/LONGEST, and the program's explainer patched to them."""

from __future__ import annotations

import pytest
from tier_depth import depth_of, main, variant

import ns_dspy.program as program_module
from ns_dspy.agents.evidence import RankedToken


def test_a_variant_names_a_depth_and_optionally_the_longest_list():
    assert variant("5") == (5, None) and variant("5/32") == (5, 32)
    ranked = [RankedToken(f"w{i}", f"w{i}", 0.0) for i in range(124)]
    with depth_of("5/32"):
        sets = program_module.tiered_explanations(ranked)
        assert program_module.TIER_TOKENS == 124
    assert max(len(t.split('"')[1::2]) for s in sets for t in s) == 32  # the 64-token tier as two lists
    with depth_of("4"):
        assert program_module.TIER_TOKENS == 60
        assert max(len(t.split('"')[1::2]) for s in program_module.tiered_explanations(ranked) for t in s) == 32
    assert program_module.TIER_TOKENS == 124  # restored: one list per tier again
    assert max(len(t.split('"')[1::2]) for s in program_module.tiered_explanations(ranked) for t in s) == 64


@pytest.mark.parametrize("depths", ["1", "5/0", "five", "5/x"])
def test_a_bad_variant_is_one_usage_error(depths, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--store", "nowhere", "--out", "nowhere", "--depths", depths])
    assert e.value.code == 2
    assert "--depths" in capsys.readouterr().err
