"""faaslens: observability for serverless functions.

The instrumentation API lives in :mod:`shipper`; this package holds the
``faaslens`` command line and the query tools.
"""
