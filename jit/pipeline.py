"""The compiler pipeline: one short function listing named stages.

`POLYJIT_DEBUG=model,opencl` (any of STAGES, or `all`) prints those stages' text forms to stderr.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field

STAGES = ("source", "model", "schedule", "looptree", "opencl", "asm")

# isl's context is one per process: compilations from several threads run one at a time, so that the
# operation quota of a separated loop tree (lowering/looptree.py) counts only its own work. They hold the
# GIL throughout anyway.
ISL_LOCK = threading.RLock()


@dataclass
class Trace:
    """Wall time of each stage of one compilation, in seconds."""

    times: dict = field(default_factory=dict)
    texts: dict = field(default_factory=dict)

    def stage(self, name: str, fn, *args, **kwargs):
        t0 = time.perf_counter()
        result = fn(*args, **kwargs)
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0
        self.texts[name] = result
        wanted = os.environ.get("POLYJIT_DEBUG", "")
        if wanted and (name in wanted.split(",") or wanted == "all"):
            text = result.source if hasattr(result, "source") and name == "opencl" else str(result)
            print(f"=== polyjit {name} ===\n{text}", file=sys.stderr)
        return result


def compile_opencl(program, signature: dict, options, trace: Trace):
    """Source program (already parsed) + argument types -> model, schedule, loop tree, OpenCL C."""
    from . import opencl_runtime
    from .analysis.build import build_model
    from .lowering.hostcode import check_function_source
    from .lowering.looptree import build_loop_tree
    from .lowering.opencl import emit_opencl
    from .lowering.schedule import apply_hints

    gpu = opencl_runtime.device_is_gpu()
    with ISL_LOCK:
        model = trace.stage("model", build_model, program, signature, fastmath=options.fastmath)
        model = trace.stage("schedule", apply_hints, model, options, target="opencl", gpu=gpu)
        tree = trace.stage("looptree", build_loop_tree, model)
        code = trace.stage("opencl", emit_opencl, model, tree, arrays_overlap=options.sequential)
        checks = check_function_source(model)
    return model, tree, code, checks


def compile_native(program, signature: dict, options, trace: Trace, isa: str):
    """Source program + argument types -> model, schedule, loop tree, asm functions per phase."""
    from .analysis.build import build_model
    from .lowering.hostcode import check_function_source
    from .lowering.looptree import build_loop_tree
    from .lowering.native import block_layout, emit_native
    from .lowering.schedule import apply_hints

    with ISL_LOCK:
        model = trace.stage("model", build_model, program, signature, fastmath=options.fastmath)
        model = trace.stage("schedule", apply_hints, model, options, target="native")
        tree = trace.stage("looptree", build_loop_tree, model)
        phases = trace.stage("asm", lambda: _Listing(emit_native(model, tree, isa)))
        checks = check_function_source(model)
        layout = block_layout(model)
    return model, tree, phases.phases, layout, checks


class _Listing:
    """Stage result whose text form is the phases' assembly listings."""

    def __init__(self, phases):
        self.phases = phases

    def __str__(self) -> str:
        return "\n\n".join(p.function.listing() for p in self.phases)
