"""The ``cosim`` command line (installed as ``cosim.cli``): parsing, printing, calling ``cosim``."""
