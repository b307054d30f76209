"""Issue #4 figures: saxpy f32 n=1e7 and dot f64 n=1e6 with fastmath, polyjit native vs Numba, same run, 1 thread.

    POLYJIT_NUM_THREADS=1 python bench/native_vs_numba.py
"""
import os
import time

import numba
import numpy as np

import polyjit

os.environ["POLYJIT_NUM_THREADS"]="1"
def saxpy(a, x, y, out):
    for i in range(len(x)):
        out[i] = a * x[i] + y[i]
def dot(x, y):
    s = 0.0
    for i in range(len(x)):
        s += x[i] * y[i]
    return s
def med(f, reps=15):
    ts=[]
    for _ in range(reps):
        t=time.perf_counter(); f(); ts.append(time.perf_counter()-t)
    return float(np.median(ts))
n=10**7
x=np.random.rand(n).astype(np.float32); y=np.random.rand(n).astype(np.float32); o=np.empty_like(x); a=np.float32(2)
pj=polyjit.kernel(saxpy, cache=False); nb=numba.njit(saxpy)
pj(a,x,y,o); nb(a,x,y,o)
rows=[]
for r in range(3):
    tp=med(lambda: pj(a,x,y,o)); tn=med(lambda: nb(a,x,y,o))
    print(f"saxpy f32 1e7: polyjit {tp*1e3:.2f} ms ({12*n/tp/1e9:.1f} GB/s)  numba {tn*1e3:.2f} ms  ratio {tn/tp:.2f}")
xd=np.random.rand(10**6); yd=np.random.rand(10**6)
pd=polyjit.kernel(dot, fastmath=True, cache=False); nd=numba.njit(fastmath=True)(dot); ns=numba.njit(dot)
pd(xd,yd); nd(xd,yd); ns(xd,yd)
for r in range(3):
    tp=med(lambda: pd(xd,yd), 50); tn=med(lambda: nd(xd,yd), 50); ts=med(lambda: ns(xd,yd), 50); tnp=med(lambda: np.dot(xd,yd), 50)
    print(f"dot f64 1e6 fastmath: polyjit {tp*1e3:.3f} ms  numba fastmath {tn*1e3:.3f} ms  ratio {tn/tp:.2f}  (numba strict {ts*1e3:.3f}, np.dot {tnp*1e3:.3f})")
