"""Everything about the package is in pyproject.toml; this adds the one compiled part.

``rnnkit/engine/fused/step_kernels.c`` (the element-wise work of a fused LSTM/GRU step) is built as a
plain shared library, loaded with ctypes (no Python API). It is optional: where it cannot be built (no C
compiler) the install still succeeds and the fused engine runs torch's operators instead
(``rnnkit/engine/fused/step_kernels.py``). -ffast-math is a compile flag only: given to the link it would
also link GCC's crtfastmath, which flushes denormals for the whole process.
"""
from setuptools import Extension, setup

setup(ext_modules=[Extension("rnnkit.engine.fused._step_kernels", ["rnnkit/engine/fused/step_kernels.c"],
                             optional=True, extra_compile_args=["-O3", "-ffast-math"], libraries=["m"])])
