"""Notebook 04 (gradient-norm penalty): SGD / SAM / GNP on a CNN, Adam (+GR) on a ViT."""

from regkit.course.catalog import Knob
from regkit.course.catalog import _common as c
from regkit.course.recipes import CPU_GR, CPU_SAM_NOISE

STEM = "04_gradient_norm_penalty_hessian_free"
KNOBS = (
    c.DATASET, Knob("cnn_steps", int, "training steps of each SGD / SAM / GNP run", minimum=1),
    Knob("vit_steps", int, "training steps of each Adam (+GR) run (> warmup)", minimum=1),
    Knob("train_size", int, "training images used (full: all)", minimum=1), c.SEEDS, c.THREADS, c.DEVICE,
    Knob("rho", float, "SAM's ascent radius", minimum=0),
    Knob("alpha", float, "GNP's mixing weight lam / r on the CNN", minimum=0),
    Knob("r", float, "GNP's finite-difference radius (CNN and ViT)", minimum=0),
    Knob("difference", str, "GNP's difference scheme", choices=("forward", "central", "exact")),
    Knob("warmup", int, "lr and GR warmup steps of the ViT runs", minimum=0),
)
_PENALTY = {"rho": 0.1, "alpha": 0.8, "r": 0.1, "difference": "forward"}
PROFILES = {
    "quick": dict(
        dataset="fashion_mnist_subset", train_size=4096, test_size=5000, seeds=[0], threads=1, device="auto",
        augment=False, cnn="small_cnn", cnn_kwargs={"width": 8}, cnn_steps=200, cnn_batch=64, cnn_lr=0.05,
        cnn_wd=5e-4, cnn_warmup=10, vit_name="vit_d64x2", vit_kwargs={"dim": 64, "depth": 2, "heads": 2, "mlp_ratio": 2},
        vit_grid=4, vit_steps=200, vit_batch=32, warmup=40, evals=4,
        timing_model="small_cnn", timing_kwargs={"width": 8}, timing_batch=64, timing_repeats=8, **_PENALTY,
    ),
    "full": dict(  # the published recipes (recipes/*.sh of github.com/zhaoyang-0204/gnp)
        dataset="cifar10", train_size=None, test_size=10000, seeds=[0], threads=8, device="auto", augment=True,
        cnn="resnet18", cnn_kwargs={"width": 64}, cnn_steps=200 * 195, cnn_batch=256, cnn_lr=0.1, cnn_wd=1e-3,
        cnn_warmup=0, vit_name="vit_ti", vit_kwargs={"dim": 192, "depth": 12, "heads": 3, "mlp_ratio": 4, "dropout": 0.1},
        vit_grid=8, vit_steps=300 * 195, vit_batch=256, warmup=40 * 195, evals=20,
        timing_model="resnet18", timing_kwargs={"width": 64}, timing_batch=128, timing_repeats=32, **_PENALTY,
    ),
}
# The cpu profile (evidence/DESIGN.md "04"): sections 1-6 run as in quick (full Fashion-MNIST, the first seed);
# the evidence section runs the two designs on full Fashion-MNIST: SGD / SAM / GNP under 40% label noise with
# every seed, Adam (+GR) on the ViT with the first ``gr_seeds`` seeds (evidence/04.json).
PROFILES["cpu"] = PROFILES["quick"] | {"dataset": "fashion_mnist", "seeds": [0, 1, 2, 3, 4], "device": "cpu",
                                       "sam_noise": CPU_SAM_NOISE, "gr": CPU_GR, "gr_seeds": 3}
