"""Installed environments: a venv, a site-packages directory or a prefix, inspected and repaired in place.

* :mod:`~wheelfix.env.layout`: what kind of environment a directory is, where its site-packages are;
* :mod:`~wheelfix.env.interpreter`: the interpreter it runs on (store path or not, its loader, libpython);
* :mod:`~wheelfix.env.discover`: its distributions, through ``*.dist-info/RECORD``, and the files no RECORD
  lists;
* :mod:`~wheelfix.env.scan`: every binary read from disk (memory-mapped) into per-distribution scans over
  the real tree, resolved by :func:`wheelfix.analysis.resolve.analyze` as wheels are;
* :mod:`~wheelfix.env.model`: the frozen results;
* :mod:`~wheelfix.env.record`: RECORD rows rewritten for repaired files;
* :mod:`~wheelfix.env.inplace`: the in-place repair (plan everything, check everything, then rename).
"""
