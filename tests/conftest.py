import torch

# Test tensors are tiny: intra-op threads only add OpenMP hand-offs, which on a busy 2-core
# machine make small ops tens of times slower (a float64 LayerNorm backward: 0.5 ms -> 24 ms).
torch.set_num_threads(1)
