"""Datasets and the device-resident loader of the course.

- ``modular_arithmetic``: grokking tables ``x op y mod p``.
"""

from regkit.data.modular import OPERATIONS, ModularArithmetic, modular_arithmetic

__all__ = ["OPERATIONS", "ModularArithmetic", "modular_arithmetic"]
