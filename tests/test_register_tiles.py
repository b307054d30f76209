"""Register tiles of OpenCL work-group kernels (lowering/opencl_tiles.py): differential against `.py_func`
over sizes that leave partial tiles (0, 1, odd), views whose strides could bring a work-item's elements
together (the kernel then runs the nest as written), fastmath, and the generated OpenCL C."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import polyjit
from polyjit import ScheduleError

from helpers import check, gemm

pytestmark = pytest.mark.opencl


def strided(R=2, L=4, K=4, **kw):
    """Work-item (l_i, l_j) of group (g_i, g_j) updates C[R*L*g_i + L*r + l_i, ...] for r < R (rows L apart)."""
    return dict(split={"i": R * L, "j": R * L, "k": K}, tile={"i_inner": L, "j_inner": L},
                order=("i_outer", "j_outer", "k_outer", "i_inner_inner", "j_inner_inner", "k_inner",
                       "i_inner_outer", "j_inner_outer"),
                unroll=("i_inner_outer", "j_inner_outer"),
                parallel=("i_outer", "j_outer", "i_inner_inner", "j_inner_inner"),
                prefetch={"A": "k_outer", "B": "k_outer"}, **kw)


def contiguous(R=2, L=4, K=4):
    """Work-item l updates rows R*(L*g + l) + r for r < R (R neighbouring rows)."""
    return dict(split={"i": R, "j": R}, tile={"i_outer": L, "j_outer": L, "k": K},
                order=("i_outer_outer", "j_outer_outer", "k_outer", "i_outer_inner", "j_outer_inner", "k_inner",
                       "i_inner", "j_inner"),
                unroll=["i_inner", "j_inner"],
                parallel=("i_outer_outer", "j_outer_outer", "i_outer_inner", "j_outer_inner"))


def _args(n, m, p, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random((n, p)).astype(dtype) - 0.5, rng.random((p, m)).astype(dtype),
            rng.random((n, m)).astype(dtype))


KERNELS = {
    "strided": polyjit.kernel(gemm, target="opencl", **strided()),
    "contiguous": polyjit.kernel(gemm, target="opencl", **contiguous()),
    "strided-3x2-k5": polyjit.kernel(gemm, target="opencl", **strided(R=3, L=2, K=5)),
}
sizes = st.integers(0, 19)


@settings(max_examples=25, deadline=None)
@given(n=sizes, m=sizes, p=sizes, dtype=st.sampled_from([np.float32, np.float64]),
       which=st.sampled_from(sorted(KERNELS)))
def test_register_tiles_match_python(n, m, p, dtype, which):
    check(KERNELS[which], *_args(n, m, p, dtype))  # same operations in the same order: bit-identical


@pytest.mark.parametrize("n, m, p", [(0, 5, 3), (1, 1, 1), (9, 13, 17), (16, 16, 8)])
def test_register_tiles_under_fastmath(n, m, p):
    check(polyjit.kernel(gemm, target="opencl", fastmath=True, **strided()), *_args(n, m, p, np.float32),
          rtol=1e-5)


def test_views_whose_strides_could_join_elements_run_the_nest_as_written():
    k = KERNELS["strided"]
    A, B, C = _args(12, 12, 5)
    check(k, A, B, C.T)  # column-major: the tile's other nesting order keeps elements apart
    check(k, A[:3], B[:, :4], np.zeros((3, 4)))  # row stride 4 = the span of a row's offsets: as written
    check(k, A[:3], B[:, :2], np.zeros((6, 4))[::2, ::2])
    wide = np.zeros((12, 30))
    check(k, A, B, wide[:, 2:14])  # a view with an offset and a row stride above its width


def test_tiles_in_the_text():
    k = polyjit.kernel(gemm, target="opencl", **strided())
    src = k.inspect_opencl(*_args(9, 9, 9)).split("__kernel", 1)[1]
    assert [f"double pj_r{r} = 0;" in src for r in range(5)] == [True] * 4 + [False]
    head, loop = src.split("for (long c3", 1)  # loaded before the serial k loops, stored after them
    tiled = loop.split("\n    } else {\n", 1)[0]  # then the nest as written, for strides joining elements
    assert head.count("= C[C_off") == 4 and tiled.count("C[C_off") == 4 and "] = pj_r3;" in tiled
    assert "const int pj_full" in head  # partial tiles' guards tested once per work-item
    assert "(long)abs(PJ_LAST(C_stride1)) > 0L" in head
    compiled = k.specialize(*_args(9, 9, 9))
    assert compiled.spec.phases[0][2] == (4, 4)  # local size: the inner split; the tile of 8 is per group


def test_elements_updated_under_conditions_on_the_serial_loops_stay_in_memory():
    hints = strided(K=3)
    hints["unroll"] += ("k_inner",)  # partial k tiles: the updates sit under tests of k_outer
    k = polyjit.kernel(gemm, target="opencl", **hints)
    A, B, C = _args(9, 10, 4)
    src = k.inspect_opencl(A, B, C)
    assert "pj_r0" not in src and "get_local_id" in src
    for n, m, p in [(9, 10, 4), (8, 8, 3), (1, 2, 0)]:
        check(k, *_args(n, m, p))


def test_unroll_takes_several_loop_names():
    A, B, C = _args(5, 6, 7)
    k = polyjit.kernel(gemm, target="native", tile={"i": 2, "j": 3}, unroll=("i_inner", "j_inner"))
    check(k, A, B, C)
    text = k.inspect_schedule(A, B, C)
    assert "i_inner=unroll" in text and "j_inner=unroll" in text
    with pytest.raises(ScheduleError, match="tuple of loop names"):
        polyjit.kernel(gemm, unroll=("i", 3))


def test_nvidia_builds_cap_registers_for_two_work_groups_per_multiprocessor(monkeypatch):
    from types import SimpleNamespace

    from polyjit import opencl_runtime as rt
    nvidia = SimpleNamespace(devices=[SimpleNamespace(platform=SimpleNamespace(name="NVIDIA CUDA"))])
    monkeypatch.setattr(rt, "context_and_queue", lambda: (nvidia, None))
    assert rt.build_options(True, False, True, 256)[-1] == "-cl-nv-maxrregcount=128"
    assert rt.build_options(False, False, False, 512)[-1] == "-cl-nv-maxrregcount=64"
    for group in (0, 16, 64):  # no work-groups, or small ones: the compiler's own choice
        assert not any("maxrregcount" in o for o in rt.build_options(True, False, True, group))
    other = SimpleNamespace(devices=[SimpleNamespace(platform=SimpleNamespace(name="Portable Computing Language"))])
    monkeypatch.setattr(rt, "context_and_queue", lambda: (other, None))
    assert not any("maxrregcount" in o for o in rt.build_options(True, False, True, 256))


def test_heuristic_maps_matmul_like_nests_to_register_tiles_on_gpus(monkeypatch):
    from polyjit import opencl_runtime as rt
    monkeypatch.setattr(rt, "device_is_gpu", lambda: True)  # pocl stands in for a GPU
    k = polyjit.kernel(gemm, target="opencl", cache=False)
    text = k.inspect_schedule(*_args(3, 3, 3))
    assert "i_outer=parallel" in text and "i_inner_outer=unroll" in text and "A=prefetch:k_outer" in text
    for n, m, p in [(0, 3, 2), (1, 1, 1), (9, 13, 17), (130, 7, 20)]:
        check(k, *_args(n, m, p, np.float32))
    assert "float pj_r63 = 0;" in k.inspect_opencl(*_args(3, 3, 3, np.float32))
    monkeypatch.setattr(rt, "device_is_gpu", lambda: False)  # pocl itself: the plain NDRange heuristic
    assert "_outer" not in polyjit.kernel(gemm, target="opencl", cache=False).inspect_schedule(*_args(3, 3, 3))
