"""The ``understudy`` command line: local administration and a client of the API."""
