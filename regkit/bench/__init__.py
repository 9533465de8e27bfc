"""Benchmarks: ratios measured side by side in one run (``python -m regkit.bench NAME``).

Each benchmark is a module ``regkit.bench.<name>`` with a ``main(argv)`` function.
"""
