"""The in-function library behind ``import faaslens``.

Its public names are re-exported, lazily, by :mod:`faaslens`; import them from
there (``faaslens.instrument``, ``faaslens.get_logger``, ...). No submodule of
this package shares a name with a public name of :mod:`faaslens`, so a name
never turns into a module once that module has been imported.
"""
