"""The optional C parts, built where a compiler exists, else skipped: the data-record encoder
(ipfix/_speedups.c) and the record builder (ipfix/_facts.c). The Python code they mirror does
the same work without them."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("ipfix._speedups", ["ipfix/_speedups.c"], optional=True),
                   Extension("ipfix._facts", ["ipfix/_facts.c"], optional=True)])
