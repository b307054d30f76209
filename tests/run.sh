#!/usr/bin/env bash
# The whole test matrix: set-up, the suite on the default target, the differential suites on the native
# target at every ISA tier (POLYJIT_ISA caps the tier) and on OpenCL (pocl).
set -euo pipefail
cd "$(dirname "$0")/.."
bash .ci/setup
DIFF="tests/test_differential.py tests/test_slices.py tests/test_semantics.py tests/test_parallel.py tests/test_schedules.py"
TIER=$(python3 -c "from polyjit.asm import isa_tier; print(isa_tier())")
echo "== full suite, default target (native at the machine's tier: $TIER)"
python3 -m pytest -p no:cacheprovider
for isa in sse2 avx2; do
    echo "== native, POLYJIT_ISA=$isa"
    POLYJIT_TARGET=native POLYJIT_ISA=$isa python3 -m pytest -p no:cacheprovider $DIFF tests/test_entry.py
done
echo "== OpenCL (pocl)"
POLYJIT_TARGET=opencl python3 -m pytest -p no:cacheprovider $DIFF tests/test_errors.py tests/test_workgroups.py \
    tests/test_regressions.py
