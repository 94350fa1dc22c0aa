"""An experiment setting of the paper (one TOML file in experiments/configs/): what to record, which neurons,
how to explain them, and what the analysis shows.

    name = "gemma-3-270m"                  # names the work and results folders
    description = "..."
    store = ""                             # an existing exemplar store to reuse instead of recording
    [record]                               # ns-dspy record options (RecordConfig fields)
    model = "gemma-3-270m"
    layers = "1,5,9,13,17"
    [neurons]
    per_layer = 4                          # the paper: 200
    rank_by = "frequency"                  # the paper: most frequently activating (share of tokens > 0)
    units = ""                             # or an explicit LAYER:INDEX list (overrides the ranking)
    [explain]                              # LM, simulator, embedder and which runs
    lm = "local:qwen2.5-coder-1.5b-instruct"
    modes = ["refine", "norefine", "baseline"]
    [explain.settings]                     # ns-dspy explain options (ExplainConfig fields)
    [explain.cluster]                      # HDBSCAN options (ClusterConfig fields)
    [analysis]                             # Figure 2a / 2b and Table 3 choices

Unknown keys are refused, so a typo never passes silently; every value is validated before any model loads.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ns_dspy.config import EmbedderConfig, ExplainConfig, LMConfig, RunConfig, SimulatorConfig
from ns_dspy.errors import ConfigError
from ns_dspy.recording import RecordConfig
from ns_dspy.types import parse_units

MODES = ("refine", "norefine", "baseline")
"""NeuronScope, the paper's ablation without the Refinement agent, and the single-pass baseline."""
RANKS = ("frequency", "max", "mean", "std")


@dataclass
class NeuronChoice:
    per_layer: int = 200
    rank_by: str = "frequency"
    units: str = ""


@dataclass
class Analysis:
    figure2a_neurons: int = 0
    """Neurons per layer drawn (seeded) for Figure 2a; 0 = every refined neuron (the paper drew 5)."""
    figure2b_neuron: str = ""
    """LAYER:INDEX of the neuron whose conditions Figure 2b shows; "" = the refined neuron with most modes."""
    table3_rows: int = 8
    """Neurons shown side by side in the Markdown Table 3 (all are in table3.csv)."""
    seed: int = 0


@dataclass
class ExperimentConfig:
    name: str
    description: str
    path: Path
    record: RecordConfig
    neurons: NeuronChoice
    explain: ExplainConfig
    lm: str
    temperature: float
    simulator: str
    embedder: str
    modes: list[str]
    concurrency: int = 1
    dtype: str = "bfloat16"
    device: str = ""
    store: str = ""
    analysis: Analysis = field(default_factory=Analysis)
    text: str = ""

    @property
    def layers(self) -> list[int]:
        return sorted(self.record.units(n_layers=None))

    def explain_config(self, mode: str) -> ExplainConfig:
        return dataclasses.replace(self.explain, refine=mode != "norefine", baseline=mode == "baseline")

    def run_config(self, mode: str | None = None) -> RunConfig:
        """The run configuration of ``mode`` (default: the first mode), as ``ns-dspy explain`` would build it."""
        return RunConfig(explain=self.explain_config(mode or self.modes[0]),
                         lm=LMConfig(self.lm, temperature=self.temperature),
                         simulator=SimulatorConfig(self.simulator, dtype=self.dtype, device=self.device or None),
                         embedder=EmbedderConfig(self.embedder))


def _take(table: dict, key: str, kind: type, default: Any, where: str) -> Any:
    value = table.pop(key, default)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}{key} must be {kind.__name__}, got {value!r}")
    return value


def _build(cls: type, table: dict, where: str, **extra: Any) -> Any:
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(table) - names)
    if unknown:
        raise ConfigError(f"unknown key {where}{unknown[0]}: use one of {', '.join(sorted(names - set(extra)))}")
    try:
        return cls(**table, **extra)
    except TypeError as err:
        raise ConfigError(f"bad [{where.rstrip('.')}] table: {err}") from None


def _refuse_unknown(table: dict, where: str) -> None:
    if table:
        raise ConfigError(f"unknown key {where}{sorted(table)[0]} in the experiment config")


def load_config(path: str | Path) -> ExperimentConfig:
    """Read and validate an experiment config; any problem is a one-line :class:`ConfigError`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no experiment config at {path}: give a .toml file such as "
                          "experiments/configs/gemma-3-270m.toml")
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"experiment config {path} is not valid TOML: {err}") from None
    name = _take(data, "name", str, path.stem, "")
    if not name or "/" in name or name.startswith("."):
        raise ConfigError(f"name {name!r} must be a plain folder name")
    description = _take(data, "description", str, "", "")
    store = _take(data, "store", str, "", "")
    record = _build(RecordConfig, data.pop("record", {}), "record.")
    if not record.layers and ":" not in record.neurons:
        raise ConfigError("[record] says no layers: set layers = \"5,10,20,31\"")
    neurons = _build(NeuronChoice, data.pop("neurons", {}), "neurons.")
    if neurons.per_layer < 1:
        raise ConfigError(f"neurons.per_layer must be at least 1, got {neurons.per_layer}")
    if neurons.rank_by not in RANKS:
        raise ConfigError(f"neurons.rank_by must be one of {', '.join(RANKS)}, got {neurons.rank_by!r}")
    if neurons.units:
        parse_units(neurons.units)
    explain = data.pop("explain", {})
    where = "explain."
    lm = _take(explain, "lm", str, "local:qwen2.5-coder-1.5b-instruct", where)
    temperature = _take(explain, "temperature", float, 0.7, where)
    simulator = _take(explain, "simulator", str, "prompted:gemma-3-270m", where)
    embedder = _take(explain, "embedder", str, "minilm", where)
    concurrency = _take(explain, "concurrency", int, 1, where)
    dtype = _take(explain, "dtype", str, "bfloat16", where)
    device = _take(explain, "device", str, "", where)
    modes = _take(explain, "modes", list, list(MODES), where)
    bad = [m for m in modes if m not in MODES]
    if bad or not modes or len(set(modes)) != len(modes):
        raise ConfigError(f"explain.modes must list distinct modes of {', '.join(MODES)}, got {modes!r}")
    settings = explain.pop("settings", {})
    if not isinstance(settings, dict):
        raise ConfigError(f"explain.settings must be a table, got {settings!r}")
    for flag in ("refine", "baseline"):
        if flag in settings:
            raise ConfigError(f"explain.settings.{flag} is set by explain.modes (refine, norefine, baseline)")
    settings = ExplainConfig.from_dict({**settings, "cluster": explain.pop("cluster", {})}, "explain")
    _refuse_unknown(explain, where)
    analysis = _build(Analysis, data.pop("analysis", {}), "analysis.")
    if analysis.figure2b_neuron:
        parse_units(analysis.figure2b_neuron)
    if concurrency < 1 or analysis.figure2a_neurons < 0 or analysis.table3_rows < 0:
        raise ConfigError("explain.concurrency must be >= 1 and analysis counts >= 0")
    _refuse_unknown(data, "")
    return ExperimentConfig(name=name, description=description, path=path, record=record, neurons=neurons,
                            explain=settings, lm=lm, temperature=temperature, simulator=simulator, embedder=embedder,
                            modes=[m for m in MODES if m in modes], concurrency=concurrency, dtype=dtype,
                            device=device, store=store, analysis=analysis, text=text)
