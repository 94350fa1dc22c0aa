"""The one plug-in mechanism: :class:`Registry` and its class-based front end :class:`Pluggable`."""

from __future__ import annotations

import pytest

from ns_dspy.errors import ConfigError, CorpusError
from ns_dspy.registry import Pluggable, Registry


def test_register_returns_the_function_and_enters_it():
    reg = Registry("widget")

    @reg.register("plain")
    def plain():
        return 1

    assert plain() == 1 and reg["plain"] is plain and reg.lookup("plain") is plain
    assert reg.add("other", len) is len
    assert "plain" in reg and reg.get("missing") is None
    assert reg.names() == ["other", "plain"]
    assert list(reg) == ["plain", "other"]  # registration order; names() is sorted
    assert len(reg) == 2


def test_a_taken_name_is_refused():
    reg = Registry("widget")
    reg.add("a", len)
    reg.add("a", len)  # the same entry again is harmless
    with pytest.raises(ValueError, match="widget 'a' is already registered"):
        reg.add("a", sum)

    @reg.register("f")
    def f():
        pass

    with pytest.raises(ValueError, match="already registered"):
        reg.register("f")(lambda: None)
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", object())  # instances (no place of definition) never replace
    assert reg["a"] is len


def test_a_definition_executed_again_replaces_itself():
    """A reloaded module defines its plug-ins again at the same place; that is not a clash."""
    reg = Registry("widget")
    namespace: dict = {}
    source = "def f():\n    return {}\n"
    exec(compile(source.format(1), "m.py", "exec"), {"__name__": "m"}, namespace)
    reg.register("f")(namespace["f"])
    exec(compile(source.format(2), "m.py", "exec"), {"__name__": "m"}, namespace)
    reg.register("f")(namespace["f"])
    assert reg["f"]() == 2


def test_unknown_name_is_one_line_listing_the_names():
    reg = Registry("optimizer")
    for name in ("mipro", "bootstrap"):
        reg.add(name, name)
    with pytest.raises(ConfigError) as err:
        reg.lookup("simba")
    assert str(err.value) == "unknown optimizer 'simba': use one of bootstrap, mipro"
    assert "\n" not in str(err.value)

    shaped = Registry("source", form="KIND[:ARG]", error=CorpusError)
    shaped.add("hf", 1)
    with pytest.raises(CorpusError, match=r"^unknown source 'x:y': use one of hf as KIND\[:ARG\]$"):
        shaped.lookup("x", shown="x:y")
    with pytest.raises(ConfigError, match="none is registered"):
        Registry("thing").lookup("x")


def test_item_assignment_replaces_as_monkeypatch_does(monkeypatch):
    reg = Registry("source")
    reg.add("brown", len)
    with monkeypatch.context() as m:
        m.setitem(reg, "brown", sum)
        m.setitem(reg, "new", max)
        assert reg["brown"] is sum and reg["new"] is max
    assert reg["brown"] is len and "new" not in reg


class Gadget(Pluggable):
    registry = Registry("gadget", form="KIND[:ARG]")

    def __init__(self, arg: str = "", **options):
        self.arg, self.options = arg, options

    @classmethod
    def from_spec(cls, arg, **options):
        return cls(arg, **options)


class Spring(Gadget):
    kind = "spring"


class StiffSpring(Spring):  # inherits kind "spring" without registering again
    pass


class Lever(Gadget):
    kind = "lever"


class Legacy(Pluggable):  # a base that declares a plain dict, as older bases do
    registry = {}
    plugin = "legacy thing"


class Old(Legacy):
    kind = "old"


def test_pluggable_subclasses_register_and_build():
    assert isinstance(Gadget.registry, Registry)
    assert Gadget.kinds() == ["lever", "spring"] and Gadget.registry["spring"] is Spring
    assert Gadget.plugin == "gadget"
    built = Gadget.build("spring:tight", color="red")
    assert type(built) is Spring and built.arg == "tight" and built.options == {"color": "red"}
    assert type(Gadget.build("lever")) is Lever
    with pytest.raises(ConfigError, match=r"^unknown gadget 'cog:3': use one of lever, spring as KIND\[:ARG\]$"):
        Gadget.build("cog:3")


def test_pluggable_turns_a_plain_dict_into_a_registry_and_refuses_a_taken_kind():
    assert isinstance(Legacy.registry, Registry) and Legacy.kinds() == ["old"]
    with pytest.raises(ConfigError, match="unknown legacy thing 'x'"):
        Legacy.build("x")
    with pytest.raises(ConfigError, match="legacy thing kind 'old' cannot be built from a spec"):
        Legacy.build("old")
    with pytest.raises(ValueError, match="gadget 'lever' is already registered"):
        type("Clash", (Gadget,), {"kind": "lever"})
    assert Gadget.registry["lever"] is Lever


def test_every_plug_in_point_is_a_registry():
    from ns_dspy.agents.embedders import Embedder
    from ns_dspy.corpus import local, sources
    from ns_dspy.lms import assets, factory
    from ns_dspy.models.offline import OfflineModel
    from ns_dspy.optimize import compile as optimize
    from ns_dspy.simulators import Simulator

    assert isinstance(Simulator.registry, Registry)  # filled as backends are imported (lazily)
    for reg in (Embedder.registry, assets.LMAsset.registry, OfflineModel.registry, factory._BUILDERS,
                sources.SOURCES, local._READERS, optimize.OPTIMIZERS):
        assert isinstance(reg, Registry) and reg.names(), reg
    assert factory.lm_kinds() == ["endpoint", "local", "openai"]
    assert local.SUPPORTED_SUFFIXES == (".json", ".jsonl", ".parquet", ".txt")
