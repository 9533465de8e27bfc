"""Published numbers the course compares to, keyed by the names notebooks ``record`` under.

Transcribed from the papers as summarized in the project's METHODS.md. Key scheme:
``<paper>.<dataset>.<model>.<method>.<metric>``. A notebook records under one of these keys only
when its experiment measures the same thing in the same unit; the course summary then shows our
value, the published one and the difference, next to the setting we actually ran (quick-profile
numbers are sanity checks, never reproductions).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Reference:
    """One published number: ``value`` in ``unit``, its ``source`` (paper, part) and the paper's ``setting``."""

    value: float
    unit: str
    source: str
    setting: str


CPR = "Franke et al., Constrained Parameter Regularization, NeurIPS 2024"
ADAMP = "Heo et al., AdamP, ICLR 2021"
GR_WARMUP = "Zhao, Zhang & Hu, When Will Gradient Regularization Be Harmful?, ICML 2024"
NOVACK = "Novack et al., Disentangling the Mechanisms Behind Implicit Regularization in SGD, ICLR 2023"


def _cpr() -> dict[str, Reference]:
    c100 = "CIFAR-100, ResNet-18, batch 128, 20k steps, lr 1e-3, warmup + cosine; best accuracy, mean of 3 seeds"
    src = f"{CPR}: CIFAR-100 experiment (values approximate, ~)"
    return {
        "cpr.cifar100.resnet18.adamw.acc": Reference(75.0, "% acc", src, f"{c100}; AdamW"),
        "cpr.cifar100.resnet18.cpr_ip.acc": Reference(76.0, "% acc", src, f"{c100}; AdamCPR, inflection-point kappa"),
        "cpr.cifar100.resnet18.cpr_warm_start.acc": Reference(
            77.0, "% acc", src, f"{c100}; AdamCPR, warm start s = 1k steps"
        ),
        "cpr.openwebtext.gpt2s.adamw.ppl": Reference(
            18.23, "perplexity", f"{CPR}: GPT-2 small on OpenWebText", "GPT-2 small, OpenWebText; best AdamW"
        ),
        "cpr.openwebtext.gpt2s.cpr_ip.ppl": Reference(
            17.94, "perplexity", f"{CPR}: GPT-2 small on OpenWebText", "GPT-2 small, OpenWebText; AdamCPR-IP"
        ),
        "cpr.imagenet.deit_s.adamw.acc": Reference(
            79.16, "% top-1", f"{CPR}: DeiT-S on ImageNet", "DeiT-S, ImageNet; AdamW"
        ),
        "cpr.imagenet.deit_s.cpr_ip.acc": Reference(
            79.84, "% top-1", f"{CPR}: DeiT-S on ImageNet", "DeiT-S, ImageNet; AdamCPR-IP"
        ),
    }


def _adamp() -> dict[str, Reference]:
    refs = {}
    imagenet = {
        "resnet50": ("ResNet-50", {"sgd": 76.64, "sgdp": 76.71, "adamw": 76.65, "adamp": 76.94}),
        "resnet18": ("ResNet-18", {"sgd": 70.28, "sgdp": 70.73, "adamw": 70.41, "adamp": 70.81}),
    }
    names = {"sgd": "SGD", "sgdp": "SGDP", "adamw": "AdamW", "adamp": "AdamP"}
    for model, (model_name, accs) in imagenet.items():
        for method, acc in accs.items():
            refs[f"adamp.imagenet.{model}.{method}.acc"] = Reference(
                acc, "% top-1", f"{ADAMP}: ImageNet classification", f"ImageNet, {model_name}; {names[method]}"
            )
    analysis = f"{ADAMP}: norm-growth analysis of scale-invariant weights"
    r18 = "ImageNet, ResNet-18, no weight decay"
    refs |= {
        "adamp.imagenet.resnet18.sgd_momentum.weight_norm": Reference(3.9, "weight norm", analysis, f"{r18}; SGD + momentum"),
        "adamp.imagenet.resnet18.sgdp.weight_norm": Reference(1.9, "weight norm", analysis, f"{r18}; SGDP"),
        "adamp.imagenet.resnet18.sgd.weight_norm": Reference(1.7, "weight norm", analysis, f"{r18}; SGD without momentum"),
        "adamp.imagenet.resnet18.sgd_momentum_nowd.acc": Reference(66.6, "% top-1", analysis, f"{r18}; SGD + momentum"),
        "adamp.imagenet.resnet18.sgdp_nowd.acc": Reference(69.0, "% top-1", analysis, f"{r18}; SGDP"),
        "adamp.toy2d.momentum0.9.weight_norm": Reference(
            2.93, "weight norm", f"{ADAMP}: 2-D toy on the project page",
            "minimize -cos(w, w*), GD + momentum 0.9, final ||w||; lr and steps unpublished",
        ),
        "adamp.toy2d.momentum0.99.weight_norm": Reference(
            27.87, "weight norm", f"{ADAMP}: 2-D toy on the project page",
            "minimize -cos(w, w*), GD + momentum 0.99, final ||w||; lr and steps unpublished",
        ),
        "adamp.imagenet.time_overhead": Reference(
            8.0, "% train time", f"{ADAMP}: cost of the projection", "AdamP/SGDP vs AdamW/SGD at batch 256"
        ),
    }
    return refs


def _gr_warmup() -> dict[str, Reference]:
    errors = {"ViT-Ti": (14.82, 13.92, 13.61), "ViT-S": (12.07, 12.40, 10.68), "ViT-B": (10.83, 12.36, 9.42)}
    methods = {"adam": "Adam", "adam_gr": "Adam + GR", "adam_gr_zero_warmup": "Adam + GR + zero-GR-warmup"}
    unpublished = (  # github.com/zhaoyang-0204/gnp README: the table names models and methods only
        "setting not published with this table (the recipe recipes/vit-cifar-basic-grwarmup.sh runs ViT-S/16, "
        "Adam lr 1e-3, wd 0.3, alpha 1, r 0.1, 40 warmup epochs, but is not tied to these numbers)"
    )
    return {
        f"gr.cifar10.{model.lower().replace('-', '_')}.{method}.err": Reference(
            error, "% error", f"{GR_WARMUP}: CIFAR-10 test error of the ViT family (code README)",
            f"CIFAR-10, {model}; {desc}; {unpublished}",
        )
        for model, row in errors.items()
        for (method, desc), error in zip(methods.items(), row, strict=True)
    }


def _novack_rows() -> dict[tuple[str, str], dict[str, tuple[float, str]]]:
    """(dataset, model) -> {method: (test accuracy, the lr / lambda / micro-batch that row was run with)}:
    the README of github.com/acmi-lab/imp-regularizers (its results tables and the settings tables beside
    them)."""
    def penalized(lr, gn, ft, aj, uj=None):
        rows = {"lb_gn": f"lr {lr}, lambda {gn}", "lb_ft": f"lr {lr}, lambda {ft}", "lb_aj": f"lr {lr}, lambda {aj}"}
        return rows | ({"lb_uj": f"lr {lr}, lambda {uj}"} if uj is not None else {})

    settings = {
        ("CIFAR-10", "ResNet-18"): {"sb_sgd": "lr 0.1", "lb_sgd": "lr 0.1", **penalized(0.1, 0.01, 0.01, 1e-3, 1e-3),
                                    "lb_gn_micro2560": "lr 0.5, lambda 0.0025", "graft_iterative": "lr 0.1",
                                    "graft_external": "lr 0.1", "ngd": "lr 0.2626"},
        ("CIFAR-100", "ResNet-18"): {"sb_sgd": "lr 0.1", "lb_sgd": "lr 0.5", **penalized(0.1, 0.01, 0.01, 5e-5, 1e-3),
                                     "lb_ft_micro2560": "lr 0.1, lambda 0.01", "graft_iterative": "lr 0.1",
                                     "graft_external": "lr 0.1", "ngd": "lr 0.3951"},
        ("CIFAR-10", "VGG-11"): {"sb_sgd": "lr 0.15", "lb_sgd": "lr 0.01", **penalized(0.01, 0.5, 0.5, 2e-5)},
    }
    accs = {
        ("CIFAR-10", "ResNet-18"): {"sb_sgd": 92.64, "lb_sgd": 89.83, "lb_gn": 91.75, "lb_ft": 91.50, "lb_aj": 90.13,
                                    "lb_uj": 90.15, "lb_gn_micro2560": 65.09, "graft_iterative": 92.12,
                                    "graft_external": 92.16, "ngd": 92.10},
        ("CIFAR-100", "ResNet-18"): {"sb_sgd": 71.31, "lb_sgd": 67.27, "lb_gn": 70.65, "lb_ft": 71.20, "lb_aj": 66.08,
                                     "lb_uj": 66.26, "lb_ft_micro2560": 64.89, "graft_iterative": 68.30,
                                     "graft_external": 68.40, "ngd": 66.83},
        ("CIFAR-10", "VGG-11"): {"sb_sgd": 78.19, "lb_sgd": 73.90, "lb_gn": 77.62, "lb_ft": 78.40, "lb_aj": 74.09},
    }
    return {table: {m: (acc, settings[table][m]) for m, acc in rows.items()} for table, rows in accs.items()}


def _novack() -> dict[str, Reference]:
    methods = {
        "sb_sgd": "small-batch SGD (b = 128)", "lb_sgd": "large-batch SGD (B = 5120, micro-batches of 128)",
        "lb_gn": "LB + gradient-norm penalty", "lb_ft": "LB + Fisher-trace penalty",
        "lb_aj": "LB + average-Jacobian penalty", "lb_uj": "LB + unit-Jacobian penalty",
        "lb_gn_micro2560": "LB + gradient-norm penalty on micro-batches of 2560",
        "lb_ft_micro2560": "LB + Fisher-trace penalty on micro-batches of 2560",
        "graft_iterative": "LB with iterative grafting", "graft_external": "LB with external grafting",
        "ngd": "LB normalized GD",
    }
    length = ("training length not published (the authors' code stops at the last of its --log-steps, "
              "default 1000,...,5000)")
    refs = {}
    for (dataset, model), rows in _novack_rows().items():
        prefix = f"novack.{dataset.lower().replace('-', '')}.{model.lower().replace('-', '')}"
        for method, (acc, hyper) in rows.items():
            part = "grafting results" if method in ("graft_iterative", "graft_external", "ngd") else "accuracy table"
            if method.endswith("micro2560"):
                part = "large micro-batch results"
            refs[f"{prefix}.{method}.acc"] = Reference(
                acc, "% acc", f"{NOVACK}: {part}",
                f"{dataset} (first 40k training images), {model}, plain SGD; {methods[method]}; {hyper}; {length}",
            )
    return refs


REFERENCES: dict[str, Reference] = _cpr() | _adamp() | _gr_warmup() | _novack()
