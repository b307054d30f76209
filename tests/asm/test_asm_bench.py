"""The assembler bench's report of issue #3's limits (no timing here: the figures are made up)."""

from __future__ import annotations

from polyjit.asm.bench import TARGETS, verdicts


def test_verdicts_compare_each_figure_with_its_limit():
    figures = {key: limit for key, _, _, limit in TARGETS}  # at the limit: met
    figures["spilling.alloc_us_per_instr"] = 4.4
    out = {what: met for what, _, _, _, met in verdicts(figures)}
    assert len(out) == len(TARGETS)
    assert out["allocation, spilling program"] is False
    assert all(met for what, met in out.items() if what != "allocation, spilling program")


def test_verdicts_skip_figures_a_result_lacks():
    assert verdicts({"encode_us_per_instr": 1.2}) == [("encoding", 1.2, "us/instr", 2.0, True)]
