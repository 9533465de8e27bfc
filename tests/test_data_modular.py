import re

import pytest
import torch

from regkit.data import OPERATIONS, modular_arithmetic

REFERENCE = {
    "add": lambda x, y, p: (x + y) % p,
    "sub": lambda x, y, p: (x - y) % p,
    "mul": lambda x, y, p: (x * y) % p,
    "div": lambda x, y, p: next(z for z in range(p) if (z * y) % p == x),  # z with z * y == x
}


@pytest.mark.parametrize("op", OPERATIONS)
def test_every_label_matches_the_definition(op):
    p = 11
    data = modular_arithmetic(p=p, op=op, train_fraction=0.5)
    for tokens, labels in ((data.x_train, data.y_train), (data.x_val, data.y_val)):
        assert tokens.dtype == labels.dtype == torch.int64 and tokens.shape[1] == 3
        assert (tokens[:, 2] == p).all() and data.equals_token == p and data.vocab_size == p + 1
        for (x, y, _), z in zip(tokens.tolist(), labels.tolist(), strict=True):
            assert z == REFERENCE[op](x, y, p)


@pytest.mark.parametrize(
    "op, pairs", [("add", 113 * 113), ("sub", 113 * 113), ("mul", 113 * 113), ("div", 113 * 112)]
)
def test_split_is_disjoint_covering_and_sized(op, pairs):
    data = modular_arithmetic(p=113, op=op, train_fraction=0.3)
    assert len(data.x_train) == round(0.3 * pairs) and len(data.x_train) + len(data.x_val) == pairs
    train = {tuple(t) for t in data.x_train[:, :2].tolist()}
    val = {tuple(t) for t in data.x_val[:, :2].tolist()}
    assert not train & val
    expected = {(x, y) for x in range(113) for y in range(113) if op != "div" or y != 0}
    assert train | val == expected


def test_split_is_deterministic_per_seed_and_differs_across_seeds():
    a, b, c = (modular_arithmetic(p=31, seed=s) for s in (0, 0, 1))
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert not torch.equal(a.x_train, c.x_train)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"p": 1}, "p must be an int >= 2 (the modulus), got 1"),
        ({"p": 7.0}, "p must be an int >= 2 (the modulus), got 7.0"),
        ({"op": "pow"}, "op must be one of add, sub, mul, div; got op='pow'"),
        ({"p": 12, "op": "div"}, "op='div' needs a prime modulus"),
        ({"train_fraction": 1.0}, "train_fraction must be in (0, 1), got train_fraction=1.0"),
        ({"train_fraction": 0}, "train_fraction must be in (0, 1)"),
        ({"p": 2, "train_fraction": 0.01}, "leaves an empty split of the 4 pairs"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        modular_arithmetic(**kwargs)
