"""Hyperparameter sweeps: Ray Tune over Ray Train runs (``distst tune``).

:mod:`distst.sweep.config` reads and checks sweep files without Ray;
:mod:`distst.sweep.driver` runs them (the only place in distst that imports ``ray.tune``).
"""
