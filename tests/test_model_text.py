"""Golden texts: the kernel model and loop tree print in a stable form."""

import textwrap

import numpy as np

import polyjit


def dot(x, y):
    s = 0.0
    for i in range(len(x)):
        s += x[i] * y[i]
    return s


def shift(A):
    A[1:] += A[:-1]


GOLDEN_DOT = """\
------------------------------------------------------------------------------
KERNEL: dot
------------------------------------------------------------------------------
ARGUMENTS:
  x: float64[:] layout=C
  y: float64[:] layout=C
PARAMETERS:
  x_shape0 = x.shape[0]
  y_shape0 = y.shape[0]
------------------------------------------------------------------------------
DOMAINS:
  [x_shape0, y_shape0] -> { S0[] }
  [x_shape0, y_shape0] -> { S1[i] : 0 <= i < x_shape0 }
  [x_shape0, y_shape0] -> { S2[] }
------------------------------------------------------------------------------
TEMPORARIES:
  s: float64 scalar
  _ret: float64 scalar
------------------------------------------------------------------------------
LOOPS:
  i at [1]
------------------------------------------------------------------------------
INSTRUCTIONS:
  S0 [] line {l0}: s <- 0.0
  S1 [i] line {l1}: s <- float64((s + float64((x[i] * y[i]))))
  S2 [] line {l2}: _ret <- s
------------------------------------------------------------------------------
DEPENDENCES:
  flow   S0 -> S1 on s: [x_shape0, y_shape0] -> { S0[] -> S1[i] : 0 <= i < x_shape0 }
  output S0 -> S1 on s: [x_shape0, y_shape0] -> { S0[] -> S1[i] : 0 <= i < x_shape0 }
  flow   S0 -> S2 on s: [x_shape0, y_shape0] -> { S0[] -> S2[] }
  anti   S1 -> S1 on s: [x_shape0, y_shape0] -> { S1[i] -> S1[i'] : 0 <= i < x_shape0 and i' > i and 0 <= i' < x_shape0 }
  flow   S1 -> S1 on s: [x_shape0, y_shape0] -> { S1[i] -> S1[i'] : 0 <= i < x_shape0 and i' > i and 0 <= i' < x_shape0 }
  output S1 -> S1 on s: [x_shape0, y_shape0] -> { S1[i] -> S1[i'] : 0 <= i < x_shape0 and i' > i and 0 <= i' < x_shape0 }
  flow   S1 -> S2 on s: [x_shape0, y_shape0] -> { S1[i] -> S2[] : 0 <= i < x_shape0 }
------------------------------------------------------------------------------
RETURNS: _ret
------------------------------------------------------------------------------"""


def test_model_text_of_dot():
    first = dot.__code__.co_firstlineno
    expected = GOLDEN_DOT.replace("{l0}", str(first + 1)).replace("{l1}", str(first + 3)).replace("{l2}", str(first + 4))
    assert polyjit.kernel(dot).inspect_model(np.zeros(3), np.zeros(3)) == expected


def test_slice_update_runs_downwards():
    """numpy reads A[:-1] whole before writing A[1:]: the implicit loop must run downwards."""
    text = polyjit.kernel(shift).inspect_schedule(np.zeros(5))
    assert text == textwrap.dedent("""\
        schedule (heuristic):
          S0: [0, _A0:-_A0, 0]
        tags: (none)
        loop structure:
        for c1 = ((-A_shape0) + 2); (c1 <= 0); c1 += 1:  # _A0
          S0(_A0=(-c1))""")
