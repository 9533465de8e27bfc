import pytest
import torch

# Test tensors are tiny: intra-op threads only add OpenMP hand-offs, which on a busy 2-core
# machine make small ops tens of times slower (a float64 LayerNorm backward: 0.5 ms -> 24 ms).
torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``cuda`` skip where torch sees no CUDA device (``pytest -m cuda`` selects them)."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (marker cuda: `make gpu-check` runs them on a GPU machine)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)
