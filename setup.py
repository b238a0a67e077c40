"""The optional C part, built where a compiler exists, else skipped: the data-record
encoder (ipfix/_speedups.c). The Python code it mirrors does the same work without it."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("ipfix._speedups", ["ipfix/_speedups.c"], optional=True)])
