"""Loo.py forms of the suite's kernels that it expresses, run on pocl (the same OpenCL driver polyjit uses).

Each builder returns (loopy kernel, call) where call(queue, args) runs it on numpy arguments of the suite's
argument maker and returns what the suite compares (the outputs, or the reduction's value).
"""

from __future__ import annotations

import numpy as np

_CACHE: dict = {}


def _lp():
    import loopy as lp
    return lp


class _Exec:
    """Calls a loopy kernel through an executor built once per context (calling the translation unit itself
    rebuilt the OpenCL program at every call with loopy 2025.2)."""

    def __init__(self, knl):
        self.knl, self.ex = knl, None

    def __call__(self, queue, **kw):
        if self.ex is None:
            self.ex = self.knl.executor(queue.context)
        return self.ex(queue, **kw)


def _split_par(knl, name, size=64):
    lp = _lp()
    knl = lp.split_iname(knl, name, size, outer_tag="g.0", inner_tag="l.0")
    return knl


def saxpy(dtype):
    lp = _lp()
    knl = lp.make_kernel("{[i]: 0<=i<n}", "out[i] = a*x[i] + y[i]",
                         [lp.ValueArg("a", dtype), lp.GlobalArg("x,y,out", dtype, shape="n"), ...],
                         lang_version=(2018, 2), name="saxpy")
    knl = _split_par(knl, "i", 128)

    run = _Exec(knl)

    def call(queue, args):
        a, x, y, out = args
        run(queue, a=a, x=x, y=y, out=out)
    return knl, call


def dot(dtype):
    lp = _lp()
    knl = lp.make_kernel("{[i]: 0<=i<n}", "s = sum(i, x[i]*y[i])",
                         [lp.GlobalArg("x,y", dtype, shape="n"), lp.GlobalArg("s", dtype, shape=()), ...],
                         lang_version=(2018, 2), name="ldot")

    run = _Exec(knl)

    def call(queue, args):
        x, y = args
        _, (s,) = run(queue, x=x, y=y)
        return s[()] if hasattr(s, "shape") else s
    return knl, call


def matmul(dtype):
    lp = _lp()
    knl = lp.make_kernel("{[i,j,k]: 0<=i<n and 0<=j<m and 0<=k<l}",
                         "C[i,j] = C[i,j] + sum(k, A[i,k]*B[k,j])",
                         [lp.GlobalArg("A", dtype, shape="n,l"), lp.GlobalArg("B", dtype, shape="l,m"),
                          lp.GlobalArg("C", dtype, shape="n,m"), ...],
                         lang_version=(2018, 2), name="matmul")
    knl = lp.split_iname(knl, "i", 16, outer_tag="g.1", inner_tag="l.1")
    knl = lp.split_iname(knl, "j", 16, outer_tag="g.0", inner_tag="l.0")

    run = _Exec(knl)

    def call(queue, args):
        A, B, C = args
        run(queue, A=A, B=B, C=C)
    return knl, call


def conv2d(dtype):
    lp = _lp()
    knl = lp.make_kernel("{[i,j,di,dj]: 0<=i<ni and 0<=j<nj and 0<=di<kh and 0<=dj<kw}",
                         "out[i,j] = sum((di,dj), img[i+di,j+dj]*w[di,dj])",
                         [lp.GlobalArg("img", dtype, shape="ni+kh-1,nj+kw-1"),
                          lp.GlobalArg("w", dtype, shape="kh,kw"), lp.GlobalArg("out", dtype, shape="ni,nj"),
                          ...], lang_version=(2018, 2), name="conv2d")
    knl = lp.split_iname(knl, "i", 16, outer_tag="g.1", inner_tag="l.1")
    knl = lp.split_iname(knl, "j", 16, outer_tag="g.0", inner_tag="l.0")

    run = _Exec(knl)

    def call(queue, args):
        img, w, out = args
        run(queue, img=img, w=w, out=out)
    return knl, call


def coulomb(dtype):
    lp = _lp()
    knl = lp.make_kernel("{[i,j,a]: 0<=i<nx and 0<=j<ny and 0<=a<na}",
                         """
                         pot[i,j] = sum(a, q[a] / sqrt((i*h - xs[a])**2 + (j*h - ys[a])**2 + zs[a]**2))
                         """,
                         [lp.GlobalArg("xs,ys,zs,q", dtype, shape="na"), lp.GlobalArg("pot", dtype, shape="nx,ny"),
                          lp.ValueArg("h", dtype), ...], lang_version=(2018, 2), name="coulomb")
    knl = lp.split_iname(knl, "i", 16, outer_tag="g.1", inner_tag="l.1")
    knl = lp.split_iname(knl, "j", 16, outer_tag="g.0", inner_tag="l.0")

    run = _Exec(knl)

    def call(queue, args):
        xs, ys, zs, q, pot, h = args
        run(queue, xs=xs, ys=ys, zs=zs, q=q, pot=pot, h=h)
    return knl, call


def gesummv(dtype):
    lp = _lp()
    knl = lp.make_kernel("{[i,j]: 0<=i<n and 0<=j<n}",
                         "y[i] = alpha*sum(j, A[i,j]*x[j]) + beta*sum(j, B[i,j]*x[j])",
                         [lp.GlobalArg("A,B", dtype, shape="n,n"), lp.GlobalArg("x,y", dtype, shape="n"),
                          lp.ValueArg("alpha,beta", dtype), ...], lang_version=(2018, 2), name="gesummv")
    knl = _split_par(knl, "i", 64)

    run = _Exec(knl)

    def call(queue, args):
        alpha, beta, A, B, x, y = args
        run(queue, alpha=alpha, beta=beta, A=A, B=B, x=x, y=y)
    return knl, call


def jacobi_2d(dtype):
    """One B-from-A and one A-from-B sweep per step, as two loopy kernels called in turn (host loop)."""
    lp = _lp()
    knl = lp.make_kernel("{[i,j]: 1<=i<n-1 and 1<=j<n-1}",
                         "B[i,j] = 0.2*(A[i,j] + A[i,j-1] + A[i,j+1] + A[i+1,j] + A[i-1,j])",
                         [lp.GlobalArg("A,B", dtype, shape="n,n"), ...], lang_version=(2018, 2), name="jac")
    knl = lp.split_iname(knl, "i", 16, outer_tag="g.1", inner_tag="l.1")
    knl = lp.split_iname(knl, "j", 16, outer_tag="g.0", inner_tag="l.0")

    run = _Exec(knl)

    def call(queue, args):
        import pyopencl.array as cla
        A, B, steps = args
        dA, dB = cla.to_device(queue, A), cla.to_device(queue, B)
        for _ in range(steps):
            run(queue, A=dA, B=dB)
            run(queue, A=dB, B=dA)
        dA.get(ary=A)
        dB.get(ary=B)
    return knl, call


BUILDERS = {"saxpy": saxpy, "dot": dot, "matmul": matmul, "conv2d": conv2d, "coulomb": coulomb,
            "gesummv": gesummv, "jacobi-2d": jacobi_2d}


def get(name, dtype):
    key = (name, np.dtype(dtype).name)
    if key not in _CACHE:
        _CACHE[key] = BUILDERS[name](np.dtype(dtype))
    return _CACHE[key]
