#!/usr/bin/env bash
# GPU figures for the README, in one call on a lent GPU machine (no network there; see README "GPU figures"):
#   run (device tool): bash benchmarks/device/check.sh   with carry [".devcarry"] (made by benchmarks/device/pack.sh)
# Weights are random (benchmarks/device/random_subject.py): every figure here is a timing, none a quality.
# Steps: CUDA bf16 recording against a plain forward (benchmarks/record.py, default settings, batch 256,
# 16,384 tokens), `ns-dspy record` end to end, the simulators against a plain forward (benchmarks/simulate.py),
# LoRA training of the default simulator's configuration and of the paper's Llama-3.1-8B configuration on the
# same small base (bf16, gradient checkpointing, batch 32, 256 tokens). STEPS=record,cli-record,... runs only
# those steps (default: all).
set -u
STEPS=${STEPS:-record,record-b256,record-16k,simulate,cli-record,train-default,train-paper}
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 LITELLM_LOCAL_MODEL_COST_MAP=True TQDM_DISABLE=1
C=${CARRY:-.devcarry}
OUT=${OUT:-/tmp/device-out}; mkdir -p "$OUT"
LOG=$OUT/device.log
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site $C/whl/*.whl || exit 1
export PYTHONPATH=$PWD:$PWD/simulator_training:/tmp/site NS_DSPY_CACHE=/tmp/nscache
mkdir -p /tmp/pack $NS_DSPY_CACHE/corpus && tar xzf $C/pack.tgz -C /tmp/pack && cp -r /tmp/pack/corpus/default-v2 $NS_DSPY_CACHE/corpus/
{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader; nproc
  python3 -c "import torch, transformers, peft; print('torch', torch.__version__, 'transformers', transformers.__version__, 'peft', peft.__version__, torch.cuda.get_device_name())"; } 2>&1 | tee -a $LOG
python3 benchmarks/device/random_subject.py --shape /tmp/pack/model 2>&1 | tee -a $LOG
step() {  # name timeout command...: output to the log (progress bars dropped), rc and seconds after it
    local name=$1 limit=$2; shift 2; local start=$SECONDS
    [[ ",$STEPS," == *",$name,"* ]] || return 0
    echo "== $name: $*" | tee -a $LOG
    timeout "$limit" "$@" > "/tmp/$name.out" 2>&1; local rc=$?
    tr '\r' '\n' < "/tmp/$name.out" | grep -v -e '%|' -e 'warn' | tail -n 40 | tee -a $LOG
    echo "== $name rc=$rc $((SECONDS - start)) s" | tee -a $LOG
}
step record 150 python3 benchmarks/record.py --device cuda --ways default,per-layer,torch-ops --profile 2 \
    --trace "$OUT/record-trace.json"
step record-b256 70 python3 benchmarks/record.py --device cuda --batch-size 256 --ways default,per-layer,torch-ops \
    --profile 1
step record-16k 45 python3 benchmarks/record.py --device cuda --tokens 16384 --ways default
step simulate 100 python3 benchmarks/simulate.py --device cuda --backends finetuned,prompted,keyword
step cli-record 80 python3 -m ns_dspy record --model gemma-3-270m --layers all --tokens 204800 --device cuda --out /tmp/store -q
step train-default 70 python3 -m simulator_training train --config simulator_training/configs/gemma-3-270m-cpu.json \
    --data $C/simdata --out /tmp/run-default --device cuda --steps 300
step train-paper 70 python3 -m simulator_training train --config simulator_training/configs/llama-3.1-8b-instruct.json \
    --base-model gemma-3-270m --data $C/simdata --out /tmp/run-paper --device cuda --steps 100
for r in default paper; do cp /tmp/run-$r/train_log.jsonl "$OUT/train-$r.jsonl" 2>/dev/null; done
cp /tmp/record.out "$OUT/record.txt" 2>/dev/null  # the profiles' tables in full
echo "== done $(date -u)" | tee -a $LOG
