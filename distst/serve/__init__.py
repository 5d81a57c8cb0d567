"""Forecasts over HTTP: a trained run as a Ray Serve deployment (``distst serve``).

:mod:`distst.serve.windows` reads requests and writes answers (JSON or Arrow) and knows
nothing of Ray; :mod:`distst.serve.app` is the deployment and the only module that imports
``ray.serve``.
"""
