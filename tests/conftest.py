"""Test configuration. The target comes from POLYJIT_TARGET (tests/run.sh runs the suites on native at each
ISA tier and on OpenCL); OpenCL uses whatever device pyopencl finds (pocl here).

Nothing here skips OpenCL tests: if no OpenCL device can be found, the tests fail.
"""

import os
import tempfile

from hypothesis import HealthCheck, settings

# Each run compiles afresh into its own cache: the cache key holds polyjit's version, not its code, so a
# developer's cache from before an edit of the compiler would otherwise answer for the edited compiler.
os.environ["POLYJIT_CACHE_DIR"] = tempfile.mkdtemp(prefix="polyjit-tests-")

settings.register_profile("ci", deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config):
    config.addinivalue_line("markers", "opencl: runs compiled kernels through OpenCL (pyopencl)")
