"""The optional C encoder (ipfix/_speedups.c): built where a compiler exists, else skipped;
the pure-Python encoder does the same work without it."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("ipfix._speedups", ["ipfix/_speedups.c"], optional=True)])
