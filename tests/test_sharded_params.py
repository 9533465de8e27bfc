"""Sharded parameters (FSDP1, FSDP2/DTensor) in a 1-process gloo group: norm-based optimizers refuse them.

Per-tensor norms of a shard are not the tensor's norms, so AdamP/AdamCPR-style updates (and NGD,
grafting, GNP/SAM, which use gradient norms) would be silently wrong; element-wise updates are not.
"""

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard
from torch.distributed.tensor import Replicate, Shard, distribute_tensor

import regkit.optim as ro
from regkit.distributed import reject_sharded, sharding
from regkit.penalties import GNP, SAM


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    store = tmp_path_factory.mktemp("group") / "store"
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=0, world_size=1)
    yield init_device_mesh("cpu", (1,))
    dist.destroy_process_group()


def sharded_param(mesh, placement=None):
    return nn.Parameter(distribute_tensor(torch.randn(4, 3, dtype=torch.float64), mesh, [placement or Shard(0)]))


class NormSGD(ro.SGD):
    """SGD declaring whole-tensor norms, as AdamP, SGDP (and AdamCPR) do: the base class then checks its params."""

    whole_tensor_norms = True


@pytest.mark.parametrize(
    ("make", "owner"),
    [
        (lambda ps: ro.NGD(ps, lr=0.1), "NGD"),
        (lambda ps: ro.Graft(ps, lr=0.1, norm="layer"), "Graft"),
        (lambda ps: ro.Grafted(ps, torch.optim.SGD, torch.optim.Adam), "Grafted"),
        (lambda ps: GNP(ps, torch.optim.SGD, lr=0.1), "GNP"),
        (lambda ps: SAM(ps, torch.optim.SGD, lr=0.1), "SAM"),
        (lambda ps: ro.AdamP(ps, lr=0.1), "AdamP"),
        (lambda ps: ro.SGDP(ps, lr=0.1), "SGDP"),
        (lambda ps: NormSGD(ps, lr=0.1), "NormSGD"),
        (lambda ps: ro.AdamCPR([{"params": ps, "regularize": True}]), "AdamCPR"),
        (lambda ps: ro.AdamAWD(ps), "AdamAWD"),
        (lambda ps: ro.AdamAdaDecay(ps), "AdamAdaDecay"),
    ],
)
def test_norm_based_optimizers_refuse_a_dtensor_shard_and_say_why(mesh, make, owner):
    dense, shard = nn.Parameter(torch.ones(2, dtype=torch.float64)), sharded_param(mesh)
    with pytest.raises(ValueError) as err:
        make([dense, shard])
    message = str(err.value)
    assert f"{owner} got param_groups[0]['params'][1] of shape (4, 3), a DTensor with placements (Shard(dim=0),)" \
        in message
    assert "norms would be per shard and wrong" in message and "all-reduce of the per-tensor squared norms" in message


def test_the_group_names_from_param_groups_appear_in_the_error(mesh):
    group = {"params": [sharded_param(mesh)], "names": ["encoder.weight"]}
    with pytest.raises(ValueError, match=r"NormSGD got encoder\.weight of shape \(4, 3\)"):
        NormSGD([group], lr=0.1)
    optimizer = NormSGD([nn.Parameter(torch.ones(2))], lr=0.1)
    with pytest.raises(ValueError, match="NormSGD got param_groups\\[1\\]\\['params'\\]\\[0\\]"):
        optimizer.add_param_group({"params": [sharded_param(mesh)]})
    assert len(optimizer.param_groups) == 1  # the rejected group is not kept


@pytest.mark.filterwarnings("ignore:FSDP is switching to use `NO_SHARD`:UserWarning")  # world size 1
def test_fsdp_parameters_are_detected(mesh):
    module = nn.Linear(3, 2)
    fully_shard(module, mesh=mesh)  # FSDP2: DTensor parameters sharded on dim 0
    assert sharding(module.weight) == "a DTensor with placements (Shard(dim=0),)"
    with pytest.raises(ValueError, match=r"NGD got .* a DTensor with placements \(Shard\(dim=0\),\)"):
        ro.NGD(module.parameters(), lr=0.1)
    for orig_params in (True, False):  # FSDP1: views of the flat shard, or the FlatParameter itself
        wrapped = FullyShardedDataParallel(nn.Linear(3, 2), device_id=torch.device("cpu"), use_orig_params=orig_params)
        assert all(sharding(p) == "an FSDP flattened (sharded) parameter" for p in wrapped.parameters())
        with pytest.raises(ValueError, match="an FSDP flattened"):
            reject_sharded(wrapped.parameters(), "AdamCPR")


def test_replicated_and_plain_tensors_pass(mesh):
    assert sharding(sharded_param(mesh, Replicate())) is None and sharding(torch.ones(3)) is None
    reject_sharded([sharded_param(mesh, Replicate()), torch.ones(3)], "AdamP")
    NormSGD([sharded_param(mesh, Replicate())], lr=0.1)


@pytest.mark.parametrize("foreach", [False, True])
def test_elementwise_adamw_updates_a_shard_like_the_dense_tensor(mesh, foreach):
    dense = nn.Parameter(torch.randn(4, 3, dtype=torch.float64))
    shard = nn.Parameter(distribute_tensor(dense.detach().clone(), mesh, [Shard(0)]))
    grad = torch.randn(4, 3, dtype=torch.float64)
    dense.grad, shard.grad = grad.clone(), distribute_tensor(grad.clone(), mesh, [Shard(0)])
    for p in (dense, shard):
        optimizer = ro.AdamW([p], lr=0.1, weight_decay=0.1, foreach=foreach)
        optimizer.step()
        optimizer.step()
    torch.testing.assert_close(shard.full_tensor(), dense.detach(), rtol=0, atol=0)
