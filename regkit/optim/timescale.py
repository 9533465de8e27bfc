"""The EMA view of decoupled weight decay: its timescale in iterations and in epochs.

One AdamW/SGDW step is ``w <- (1 - lr * wd) w - lr * u``, i.e. an exponential moving average
``w <- (1 - a) w + a * (-u / wd)`` with ``a = lr * wd``: the weights average the last
``tau_iter = 1 / (lr * wd)`` updates (scaled by ``-1/wd``), and the initialization fades as
``(1 - lr * wd)^t ~ exp(-t / tau_iter)``. In epochs, ``tau_epoch = tau_iter / steps_per_epoch``.
Wang & Aitchison ("How to set AdamW's weight decay as you scale model and dataset size", ICML 2025)
find the best ``tau_epoch`` about constant as the dataset and the model grow: hold ``tau_epoch``
fixed and derive ``wd`` with `weight_decay_for_timescale` (more data at a fixed batch size means
more steps per epoch, hence a smaller ``wd``).
"""

from regkit._validate import check_number


def decay_timescale(lr: float, weight_decay: float, steps_per_epoch: float = 1.0) -> float:
    """``tau_epoch = 1 / (lr * wd * steps_per_epoch)``: decoupled decay's EMA timescale in epochs.

    With ``steps_per_epoch=1`` (the default) this is ``tau_iter = 1 / (lr * wd)`` in steps. ``lr``,
    ``weight_decay`` and ``steps_per_epoch`` must be positive (ValueError naming the argument);
    ``lr`` is the peak lr of a schedule (Wang & Aitchison's convention). Example:
    ``decay_timescale(1e-3, 0.1, 100)`` is 100 epochs.
    """
    for name, value in (("lr", lr), ("weight_decay", weight_decay), ("steps_per_epoch", steps_per_epoch)):
        _check_positive(name, value)
    return 1.0 / (lr * weight_decay * steps_per_epoch)


def weight_decay_for_timescale(lr: float, tau_epoch: float, steps_per_epoch: float = 1.0) -> float:
    """The inverse of `decay_timescale`: ``wd = 1 / (lr * tau_epoch * steps_per_epoch)``.

    Holding ``tau_epoch`` fixed while the dataset grows ``k``-fold (same batch size, so ``k`` times
    the steps per epoch) divides ``wd`` by ``k``. Arguments must be positive (ValueError).
    """
    for name, value in (("lr", lr), ("tau_epoch", tau_epoch), ("steps_per_epoch", steps_per_epoch)):
        _check_positive(name, value)
    return 1.0 / (lr * tau_epoch * steps_per_epoch)


def _check_positive(name: str, value) -> None:
    check_number(name, value, 0.0)
    if value == 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
