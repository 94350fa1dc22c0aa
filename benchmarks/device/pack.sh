#!/usr/bin/env bash
# Prepare what benchmarks/device/check.sh needs on a GPU machine without network, in .devcarry/ (git-ignored
# through .git/info/exclude; carry it with the call): wheels of the Python packages that machine lacks (its
# image has torch, transformers, peft, numba; not dspy and what dspy imports), the offline model's config and
# tokenizer (no weights: check.sh draws random ones), the default corpus cache, and a synthetic training set.
# Run here once after `ns-dspy record` has built the model and corpus caches (~1.5 min, ~20 MB).
set -euo pipefail
cd "$(dirname "$0")/../.."
C=.devcarry
CACHE=${NS_DSPY_CACHE:-$HOME/.cache/ns_dspy}
mkdir -p $C/whl /tmp/devpack/model /tmp/devpack/corpus
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d $C/whl \
    dspy==3.4.1 gepa==0.1.4 json_repair==0.64.6 orjson==3.13.0 pydantic==2.13.4 pydantic_core==2.46.4 \
    annotated-types typing-inspection jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing rpds-py \
    tenacity==9.2.1 diskcache==5.6.3 cachetools==8.0.2
for f in config.json generation_config.json tokenizer.json tokenizer_config.json; do
    cp "$CACHE/models/gemma-3-270m/$f" /tmp/devpack/model/
done
cp -r "$CACHE/corpus/default-v2" /tmp/devpack/corpus/
tar czf $C/pack.tgz -C /tmp/devpack .
[ -d $C/simdata ] || ns-dspy-train-simulator build-data --out $C/simdata
du -sh $C
