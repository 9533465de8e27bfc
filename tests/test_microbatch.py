"""regkit.penalties.microbatch: penalties against explicit autograd and finite differences,
vectorized == serial (gradients and BatchNorm buffers), Monte Carlo and exact identities."""

import copy
import itertools
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from regkit.penalties import PENALTIES, accumulate_microbatches, microbatch_grad_fn
from regkit.penalties import microbatch as mb

B, b, C = 8, 2, 3


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, C)).double()


def bn_net(seed=0, momentum=0.1):
    """Conv + BatchNorm2d + BatchNorm1d: ghost BN and both running-stat layouts."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.BatchNorm2d(3, momentum=momentum),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(3 * 3 * 3, 5),
        nn.BatchNorm1d(5, momentum=momentum),
        nn.Tanh(),
        nn.Linear(5, C),
    ).double()


class SharedNorm(nn.Module):
    """One BatchNorm1d (cumulative average) called twice per forward."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.inp, self.mid, self.out = nn.Linear(4, 5), nn.Linear(5, 5), nn.Linear(5, C)
        self.norm = nn.BatchNorm1d(5, momentum=None)

    def forward(self, x):
        h = torch.tanh(self.norm(self.inp(x)))
        return self.out(torch.tanh(self.norm(self.mid(h))))


def batch(model_kind, n=B, seed=1):
    g = torch.Generator().manual_seed(seed)
    shape = (n, 2, 3, 3) if model_kind == "bn" else (n, 4)
    return torch.randn(shape, generator=g, dtype=torch.float64), torch.randint(0, C, (n,), generator=g)


MODELS = {"mlp": mlp, "bn": bn_net}


def grads(model):
    return [p.grad.clone() for p in model.parameters()]


def assert_grads_close(got, want, rtol=1e-8):
    """Relative to each tensor, with an absolute floor relative to the largest gradient entry
    (biases feeding a BatchNorm have zero gradient up to rounding)."""
    scale = max(w.abs().max().item() for w in want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=rtol, atol=1e-11 * scale)


def explicit(model, x, y, penalty, lam, seed):
    """Per-micro-batch penalties written out with plain autograd on a copy of the model.

    Random inputs are redrawn from the same seed: Fisher labels by inverse CDF from uniforms
    (searchsorted), unit directions from normalized Gaussians."""
    model = copy.deepcopy(model)
    params = list(model.parameters())
    k = x.shape[0] // b
    g = torch.Generator().manual_seed(seed)
    uniforms = torch.rand(k, b, generator=g, dtype=torch.float64) if penalty == "fisher" else None
    z = torch.randn(k, C, generator=g, dtype=torch.float64) if penalty == "unit_jacobian" else None
    total = [torch.zeros_like(p) for p in params]
    losses, pens, norms = [], [], []
    for j in range(k):
        logits = model(x[j * b : (j + 1) * b])
        loss = F.cross_entropy(logits, y[j * b : (j + 1) * b])
        if penalty == "gn":
            s = loss
        elif penalty == "fisher":
            cdf = torch.softmax(logits.detach(), -1).cumsum(-1)
            labels = torch.searchsorted(cdf, uniforms[j].unsqueeze(-1)).squeeze(-1)
            s = F.cross_entropy(logits, labels)
        elif penalty == "avg_jacobian":
            s = logits.mean(0).sum()
        elif penalty == "unit_jacobian":
            s = logits.mean(0) @ (z[j] / z[j].norm())
        if penalty is None:
            pen = torch.zeros((), dtype=torch.float64)
        else:
            pen = sum(gp.pow(2).sum() for gp in torch.autograd.grad(s, params, create_graph=True))
        g_loss = torch.autograd.grad(loss, params, retain_graph=True)
        g_obj = torch.autograd.grad(loss + lam * pen, params)
        total = [t + go / k for t, go in zip(total, g_obj, strict=True)]
        losses.append(loss.detach())
        pens.append(pen.detach())
        norms.append(math.sqrt(sum(float(gl.pow(2).sum()) for gl in g_loss)))
    return total, torch.stack(losses), torch.stack(pens), torch.tensor(norms, dtype=torch.float64)


@pytest.mark.parametrize("vectorized", [False, True])
@pytest.mark.parametrize("model_kind", ["mlp", "bn"])
@pytest.mark.parametrize("penalty", PENALTIES)
def test_penalty_equals_explicit_computation(penalty, model_kind, vectorized):
    model = MODELS[model_kind]()
    x, y = batch(model_kind)
    total, losses, pens, norms = explicit(model, x, y, penalty, 0.7, seed=3)
    stats = accumulate_microbatches(
        model, F.cross_entropy, x, y, b, penalty, 0.7, vectorized, torch.Generator().manual_seed(3)
    )
    assert stats.vectorized is vectorized
    assert_grads_close(grads(model), total)
    torch.testing.assert_close(stats.loss, losses, rtol=1e-12, atol=0)
    torch.testing.assert_close(stats.penalty, pens, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(stats.grad_norm, norms, rtol=1e-10, atol=0)
    if penalty == "gn":
        torch.testing.assert_close(stats.penalty, stats.grad_norm**2, rtol=1e-12, atol=0)


@pytest.mark.parametrize("penalty", PENALTIES)
def test_gradient_is_the_derivative_of_the_reported_objective(penalty):
    """Exact double backprop: <grad, v> equals a central difference of mean(L_M + lam P_M)."""
    lam, h, seed = 0.5, 1e-5, 4
    model = bn_net()
    x, y = batch("bn")
    accumulate_microbatches(
        model, F.cross_entropy, x, y, b, penalty, lam, True, torch.Generator().manual_seed(seed)
    )
    g = torch.Generator().manual_seed(11)
    v = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in model.parameters()]
    directional = sum((p.grad * vi).sum() for p, vi in zip(model.parameters(), v, strict=True))

    def objective(sign):
        shifted = copy.deepcopy(model)
        with torch.no_grad():
            for p, vi in zip(shifted.parameters(), v, strict=True):
                p.add_(sign * h * vi)
        s = accumulate_microbatches(
            shifted, F.cross_entropy, x, y, b, penalty, 0.0, True, torch.Generator().manual_seed(seed)
        )
        return (s.loss + lam * s.penalty).mean()

    fd = (objective(1) - objective(-1)) / (2 * h)
    torch.testing.assert_close(directional, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize(
    "make",
    [bn_net, lambda: bn_net(momentum=None), lambda: SharedNorm().double()],
    ids=["ema", "cma", "shared"],
)
@pytest.mark.parametrize("penalty", [None, *PENALTIES])
def test_vectorized_equals_serial_with_batchnorm_buffers(penalty, make):
    base = make()
    x, y = batch("mlp" if isinstance(base, SharedNorm) else "bn", n=12)
    lam = 0.0 if penalty is None else 0.3
    runs = []
    for vectorized in (False, True):
        model = copy.deepcopy(base)
        gen = torch.Generator().manual_seed(5)
        for micro in (2, 3):  # two calls: buffers evolve from a non-initial state
            stats = accumulate_microbatches(
                model, F.cross_entropy, x, y, micro, penalty, lam, vectorized, gen
            )
        runs.append((model, stats))
    (serial, s0), (vector, s1) = runs
    assert (s0.vectorized, s1.vectorized) == (False, True)
    assert_grads_close(grads(vector), grads(serial))
    for (name, got), want in zip(vector.named_buffers(), serial.buffers(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14, msg=name)
        if name.endswith("num_batches_tracked"):
            per_call = 2 if isinstance(base, SharedNorm) else 1
            assert int(got) == per_call * (6 + 4)
    for field in ("loss", "penalty", "param_grad_norms"):
        a, c = getattr(s1, field), getattr(s0, field)
        if a is None:
            assert c is None and penalty is None
        else:
            torch.testing.assert_close(a, c, rtol=1e-10, atol=1e-14)


def test_fisher_penalty_expectation_is_fisher_trace_over_b():
    """P_M = ||(1/b) sum_i grad l(x_i, y_hat_i)||^2 with y_hat_i ~ p(.|x_i) independent: the score
    has zero mean, so cross terms vanish and E P_M = (1/b^2) sum_i tr F(x_i) = tr(F_M)/b."""
    model = mlp()
    x_m, _ = batch("mlp", n=b * 2)  # one micro-batch of 4 examples
    micro = x_m.shape[0]
    params = list(model.parameters())
    trace = 0.0
    for xi in x_m:
        log_p = torch.log_softmax(model(xi[None]), -1)[0]
        for c in range(C):
            score = torch.autograd.grad(log_p[c], params, retain_graph=True)
            trace += log_p[c].exp().item() * sum(s.pow(2).sum().item() for s in score)
    expected = trace / micro / micro  # tr(F_M) / b with F_M the mean over the micro-batch
    draws = 4000  # the micro-batch repeated: independent labels in each copy
    x = x_m.repeat(draws, 1)
    y = torch.zeros(x.shape[0], dtype=torch.long)
    stats = accumulate_microbatches(
        model, F.cross_entropy, x, y, micro, "fisher", 0.0, True, torch.Generator().manual_seed(0)
    )
    mean, se = stats.penalty.mean().item(), stats.penalty.std().item() / math.sqrt(draws)
    assert se < 0.05 * expected  # the test can tell tr(F)/b from a wrong scaling
    assert abs(mean - expected) < 4 * se, (mean, expected, se)


def test_decomposition_of_expected_micro_batch_gradient_norm():
    """E ||g_M||^2 = ||g_bar||^2 + tr(Sigma)/b exactly, over all N^b micro-batches drawn with
    replacement; over all subsets (without replacement) tr(Sigma)/b gets the factor (N-b)/(N-1)."""
    model = mlp()
    n, micro = 5, 3
    x, y = batch("mlp", n=n)
    params = list(model.parameters())
    per_example = torch.stack(
        [
            torch.cat(
                [
                    g.flatten()
                    for g in torch.autograd.grad(F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]), params)
                ]
            )
            for i in range(n)
        ]
    )
    g_bar = per_example.mean(0)
    trace_sigma = (per_example - g_bar).pow(2).sum(1).mean()

    tuples = torch.tensor(list(itertools.product(range(n), repeat=micro))).flatten()
    stats = accumulate_microbatches(model, F.cross_entropy, x[tuples], y[tuples], micro, "gn", 0.0, True)
    expected = g_bar.pow(2).sum() + trace_sigma / micro
    torch.testing.assert_close(stats.grad_norm.pow(2).mean(), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(stats.penalty.mean(), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(torch.cat([p.grad.flatten() for p in params]), g_bar, rtol=1e-10, atol=1e-14)

    subsets = torch.tensor(list(itertools.combinations(range(n), micro))).flatten()
    stats = accumulate_microbatches(model, F.cross_entropy, x[subsets], y[subsets], micro, None, 0.0, False)
    expected = g_bar.pow(2).sum() + trace_sigma / micro * (n - micro) / (n - 1)
    torch.testing.assert_close(stats.grad_norm.pow(2).mean(), expected, rtol=1e-12, atol=0)


def test_accumulates_into_existing_grad_like_backward():
    model = mlp()
    x, y = batch("mlp")
    reference = copy.deepcopy(model)
    F.cross_entropy(reference(x), y).backward()  # no BN: the mean of micro-batch gradients
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    accumulate_microbatches(model, F.cross_entropy, x, y, b)
    for p, r in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, r.grad + 1, rtol=1e-12, atol=1e-14)


def test_zero_lam_reports_the_penalty_without_changing_the_gradient():
    model, plain = mlp(), mlp()
    x, y = batch("mlp")
    stats = accumulate_microbatches(model, F.cross_entropy, x, y, b, "gn", 0.0)
    accumulate_microbatches(plain, F.cross_entropy, x, y, b)
    assert_grads_close(grads(model), grads(plain), rtol=1e-12)
    torch.testing.assert_close(stats.penalty, stats.grad_norm**2, rtol=1e-12, atol=0)


def test_auto_choice_follows_free_memory(monkeypatch):
    x, y = batch("bn")
    monkeypatch.setattr(mb, "_free_memory", lambda device: 0)
    assert not accumulate_microbatches(bn_net(), F.cross_entropy, x, y, b, "gn", 0.1).vectorized
    monkeypatch.setattr(mb, "_free_memory", lambda device: 2**40)
    assert accumulate_microbatches(bn_net(), F.cross_entropy, x, y, b, "gn", 0.1).vectorized


def test_chunked_vectorized_path_equals_serial(monkeypatch):
    """Free memory for about two micro-batches per chunk: vmap(chunk_size=2) over k = 4."""
    x, y = batch("bn")
    serial = bn_net()
    accumulate_microbatches(serial, F.cross_entropy, x, y, b, "gn", 0.1, False)
    probe_bytes, _ = mb._probe(bn_net(), x[:b])
    param_bytes = sum(p.numel() * 8 for p in serial.parameters())
    monkeypatch.setattr(mb, "_free_memory", lambda device: 2 * 2 * 4 * (probe_bytes + param_bytes) + 1)
    assert mb._chunk_size(list(serial.parameters()), probe_bytes, 4, True) == 2
    chunked = bn_net()
    assert accumulate_microbatches(chunked, F.cross_entropy, x, y, b, "gn", 0.1).vectorized
    assert_grads_close(grads(chunked), grads(serial))
    for got, want in zip(chunked.buffers(), serial.buffers(), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)


def test_unsupported_batchnorm_falls_back_to_serial_with_warning():
    model = nn.Sequential(nn.Linear(4, 5), nn.SyncBatchNorm(5), nn.Linear(5, C)).double()
    x, y = batch("mlp")
    with pytest.warns(UserWarning, match=r"SyncBatchNorm\) cannot be vmapped; using the serial path"):
        stats = accumulate_microbatches(model, F.cross_entropy, x, y, b, "gn", 0.1, vectorized=True)
    assert not stats.vectorized and int(model[1].num_batches_tracked) == B // b


class DataDependent(nn.Module):
    """A Python branch on a tensor value: cannot run under vmap."""

    def forward(self, x):
        return x if x.sum().item() > 0 else -x


def test_vmap_failure_falls_back_to_serial_with_warning():
    model = nn.Sequential(nn.Linear(4, C), DataDependent()).double()
    x, y = batch("mlp")
    reference = copy.deepcopy(model)
    accumulate_microbatches(reference, F.cross_entropy, x, y, b, "gn", 0.2, vectorized=False)
    with pytest.warns(UserWarning, match="vectorized path failed"):
        stats = accumulate_microbatches(model, F.cross_entropy, x, y, b, "gn", 0.2, vectorized=True)
    assert not stats.vectorized
    assert_grads_close(grads(model), grads(reference), rtol=1e-12)


def test_dropout_runs_vectorized():
    model = nn.Sequential(nn.Linear(4, 6), nn.Dropout(0.5), nn.Linear(6, C)).double()
    x, y = batch("mlp")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        stats = accumulate_microbatches(model, F.cross_entropy, x, y, b, "fisher", 0.1, vectorized=True)
    assert stats.vectorized and all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_grad_fn_returns_the_large_batch_loss_and_hands_over_stats():
    model = mlp()
    x, y = batch("mlp")
    seen = []
    loss = microbatch_grad_fn(F.cross_entropy, b, "gn", 0.1, on_stats=seen.append)(model, x, y)
    torch.testing.assert_close(loss, F.cross_entropy(model(x), y), rtol=1e-12, atol=0)
    assert len(seen) == 1 and seen[0].loss.shape == (B // b,)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(micro_batch_size=3), "micro_batch_size=3 must divide the batch size 8"),
        (dict(micro_batch_size=0), "micro_batch_size must be a positive int, got 0"),
        (
            dict(penalty="gradnorm"),
            "penalty='gradnorm' is not one of None, 'gn', 'fisher', 'avg_jacobian', 'unit_jacobian'",
        ),
        (dict(penalty="gn", lam=-0.1), "lam must be a finite number >= 0, got -0.1"),
        (dict(lam=0.1), "lam=0.1 needs a penalty"),
        (dict(vectorized="yes"), "vectorized must be None, True or False, got 'yes'"),
    ],
)
def test_invalid_arguments_raise(kwargs, match):
    x, y = batch("mlp")
    args = dict(micro_batch_size=b) | kwargs
    with pytest.raises(ValueError, match=match):
        accumulate_microbatches(mlp(), F.cross_entropy, x, y, **args)


def test_mismatched_batch_and_non_class_logits_raise():
    x, y = batch("mlp")
    with pytest.raises(ValueError, match="same batch size, got 8 and 7"):
        accumulate_microbatches(mlp(), F.cross_entropy, x, y[:-1], b)
    model = nn.Sequential(nn.Linear(4, C), nn.Flatten(0))
    with pytest.raises(ValueError, match=r"needs logits of shape \(batch, num_classes\)"):
        accumulate_microbatches(model.double(), lambda out, t: out.sum(), x, y, b, "avg_jacobian", 0.1, False)


def test_auto_choice_on_cpu_follows_the_micro_batch_size_rule(monkeypatch):
    """On the CPU, vectorized=None vmaps only while the probe's saved bytes stay within the limit."""
    x, y = batch("bn")
    monkeypatch.setattr(mb, "_free_memory", lambda device: 2**40)
    saved, _ = mb._probe(bn_net(), x[:b])
    monkeypatch.setattr(mb, "CPU_VMAP_MAX_SAVED_BYTES", saved)
    assert accumulate_microbatches(bn_net(), F.cross_entropy, x, y, b, "gn", 0.1).vectorized
    monkeypatch.setattr(mb, "CPU_VMAP_MAX_SAVED_BYTES", saved - 1)
    assert not accumulate_microbatches(bn_net(), F.cross_entropy, x, y, b, "gn", 0.1).vectorized
    assert accumulate_microbatches(bn_net(), F.cross_entropy, x, y, b, "gn", 0.1, vectorized=True).vectorized


@pytest.mark.parametrize("vectorized", [False, True])
def test_micro_batch_grad_norms_measure_without_side_effects(vectorized):
    model = bn_net().eval()
    x, y = batch("bn")
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = [buf.clone() for buf in model.buffers()]
    norms = mb.micro_batch_grad_norms(model, F.cross_entropy, x, y, b, vectorized=vectorized)

    reference = bn_net().train()  # same weights: the norms of a training-mode accumulation
    want = accumulate_microbatches(reference, F.cross_entropy, x, y, b).grad_norm
    torch.testing.assert_close(norms, want, rtol=1e-10, atol=0)
    assert not model.training
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters())
    assert all(torch.equal(got, saved) for got, saved in zip(model.buffers(), before, strict=True))


def test_micro_grad_norm_hook_logs_mean_norm_and_mean_square():
    model = bn_net()
    x, y = batch("bn")
    with torch.no_grad():  # train() calls hooks outside autograd too; the hook must enable it
        values = mb.micro_grad_norm_hook(x, y, b)(0, model, None)
    norms = mb.micro_batch_grad_norms(model, F.cross_entropy, x, y, b)
    assert values == pytest.approx({"micro_grad_norm": norms.mean().item(),
                                    "micro_grad_norm_sq": norms.pow(2).mean().item()}, rel=1e-12)
    with pytest.raises(ValueError, match="micro_batch_size=3 must divide the batch size 8"):
        mb.micro_grad_norm_hook(x, y, 3)
