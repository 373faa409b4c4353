#!/usr/bin/env bash
# Probe JAX/XLA settings for the scan runner's speed: MiniVGGNet (float32 and mixed_bfloat16),
# a few epochs, one process per setting (XLA_FLAGS is read once per process).
# Run on the GPU machine from the repository root, after the wheels are installed (README.md).
set -u
PACK=${PACK:-.gpu/data/cifar10-jpg-pack.npz}
PARAMS=${PARAMS:-params.yaml}
DEST=${OUT:-/tmp}
EPOCHS=${EPOCHS:-6}
probe() {
  local tag=$1
  shift
  echo "### $tag: $*"
  env "$@" python3 bench/gpu_cifar10.py --pack "$PACK" --params "$PARAMS" --deadline 150 \
    --out "$DEST/probe_$tag.jsonl" \
    --run "minivggnet_cifar10 runner=scan epochs=$EPOCHS" \
    --run "minivggnet_cifar10 runner=scan epochs=$EPOCHS policy=mixed_bfloat16" 2>&1 |
    grep -E "RESULT|Error|error|Traceback|epoch [0-9]" | cut -c1-900
}
probe default PROBE=default
probe cmdbuf_while \
  XLA_FLAGS=--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUDNN,CUSTOM_CALL,WHILE,CONDITIONAL
probe prec_tf32 JAX_DEFAULT_MATMUL_PRECISION=tensorfloat32
probe prec_highest JAX_DEFAULT_MATMUL_PRECISION=highest
