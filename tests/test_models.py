"""regkit.models: shapes, parameter counts, grokking-model specs, scale invariance, dtypes, errors."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from regkit.models import MODELS, GrokTransformer, OneHotMLP, build_model, model_options
from regkit.models.attention import SelfAttention

TOKEN_MODELS = ("onehot_mlp", "grok_transformer")
IMAGE_MODELS = tuple(name for name in MODELS if name not in TOKEN_MODELS)
# Narrow versions for the tests that run every model several times.
SMALL = {
    "mlp": {"hidden": (32,)},
    "resnet18": {"width": 8},
    "vgg11": {"width_multiplier": 0.125},
    "vgg16_bn": {"width_multiplier": 0.125},
    "vit": {"dim": 32, "depth": 2, "heads": 2},
    "small_cnn": {"width": 8},
    "grok_transformer": {"width": 32, "mlp": 64},
    "onehot_mlp": {"hidden": 32},
}


def make(name, num_classes=10, in_channels=3, image_size=32, small=True):
    kw = SMALL[name] if small else {}
    return build_model(name, num_classes, in_channels=in_channels, image_size=image_size, **kw)


def tokens(p, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.randint(0, p, (n, 2), generator=g)
    return torch.cat([xy, torch.full((n, 1), p)], dim=1)


def example_input(name, num_classes=10):
    if name in TOKEN_MODELS:
        return tokens(num_classes)
    return torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))


# --- shapes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 1, 28, 28)])
@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_image_models_output_shape_at_default_size(name, shape):
    torch.manual_seed(0)
    n, c, s, _ = shape
    model = build_model(name, num_classes=7, in_channels=c, image_size=s)
    assert model(torch.randn(shape)).shape == (n, 7)


@pytest.mark.parametrize("name", TOKEN_MODELS)
def test_token_models_output_shape(name):
    model = build_model(name, num_classes=13)
    assert model(tokens(13, n=5)).shape == (5, 13)


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("name", ["vgg11", "vgg16_bn"])
def test_vgg_features_end_at_1x1_for_28_and_32(name, size):
    model = make(name)
    conv_stack = model.features[:-2]  # before the adaptive pool and flatten
    assert conv_stack(torch.randn(2, 3, size, size)).shape[-2:] == (1, 1)


def test_vit_tokens_per_image():
    model = build_model("vit", 10, in_channels=1, image_size=28)
    assert isinstance(model.position_embedding, nn.Embedding)
    assert model.position_embedding.num_embeddings == (28 // 4) ** 2


def test_mlp_flattens_images_in_logical_order():
    torch.manual_seed(0)
    model = build_model("mlp", 5, in_channels=2, image_size=4, hidden=(), bias=False)
    (linear,) = model.net
    x = torch.randn(3, 2, 4, 4)
    expected = x.reshape(3, 32) @ linear.weight.T
    torch.testing.assert_close(model(x), expected)
    torch.testing.assert_close(model(x.to(memory_format=torch.channels_last)), expected)


# --- ResNet-18 parameter count ---------------------------------------------------------------

def conv_bn_params(c_in, c_out, k):
    return k * k * c_in * c_out + 2 * c_out  # bias-free conv + BN (gamma, beta)


@pytest.mark.parametrize("width,num_classes,in_channels", [(64, 10, 3), (16, 100, 1)])
def test_resnet18_parameter_count_closed_form(width, num_classes, in_channels):
    w = width
    stem = conv_bn_params(in_channels, w, 3)
    # Stage 1: two identity blocks at w channels. Stages 2-4 (w -> 2w -> 4w -> 8w): the first
    # block halves the resolution, so it has a 1x1 projection shortcut; the second is identity.
    stage1 = 2 * 2 * conv_bn_params(w, w, 3)
    later = sum(
        conv_bn_params(c // 2, c, 3) + conv_bn_params(c, c, 3) + conv_bn_params(c // 2, c, 1)
        + 2 * conv_bn_params(c, c, 3)
        for c in (2 * w, 4 * w, 8 * w)
    )
    head = 8 * w * num_classes + num_classes
    model = build_model("resnet18", num_classes, in_channels=in_channels, width=width)
    assert sum(p.numel() for p in model.parameters()) == stem + stage1 + later + head


# --- attention vs torch's reference --------------------------------------------------------

@pytest.mark.parametrize("causal,bias", [(True, False), (False, True)])
def test_self_attention_equals_torch_multihead_attention(causal, bias):
    torch.manual_seed(0)
    dim, heads, t = 16, 4, 5
    ours = SelfAttention(dim, heads, bias=bias, causal=causal).double()
    ref = nn.MultiheadAttention(dim, heads, bias=bias, batch_first=True).double()
    with torch.no_grad():
        ref.in_proj_weight.copy_(ours.qkv.weight)
        ref.out_proj.weight.copy_(ours.proj.weight)
        if bias:
            ref.in_proj_bias.copy_(ours.qkv.bias)
            ref.out_proj.bias.copy_(ours.proj.bias)
    x = torch.randn(3, t, dim, dtype=torch.float64)
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), 1) if causal else None
    expected, _ = ref(x, x, x, attn_mask=mask, need_weights=False)
    torch.testing.assert_close(ours(x), expected)


# --- grokking transformer --------------------------------------------------------------------

def test_grok_transformer_is_causal():
    torch.manual_seed(0)
    p = 11
    model = GrokTransformer(p)
    a = tokens(p)
    b = a.clone()
    b[:, 2] = (b[:, 2] + 3) % (p + 1)  # change only the last token
    ha, hb = model.hidden_states(a), model.hidden_states(b)
    torch.testing.assert_close(ha[:, :2], hb[:, :2], rtol=0, atol=1e-6)
    assert (ha[:, 2] - hb[:, 2]).abs().max() > 1e-2
    torch.testing.assert_close(model(a), model.unembed(ha[:, -1]))


def test_grok_transformer_has_no_biases_and_embedding_modules():
    p, width = 113, 128
    model = GrokTransformer(p)
    assert all(param.ndim == 2 for param in model.parameters())
    assert not [n for n, _ in model.named_parameters() if "bias" in n]
    assert isinstance(model.token_embedding, nn.Embedding) and model.token_embedding.num_embeddings == p + 1
    assert isinstance(model.position_embedding, nn.Embedding) and model.position_embedding.num_embeddings == 3
    assert model.unembed.weight.shape == (p, width)
    with_bias = GrokTransformer(p, mlp_bias=True)
    mlp_biases = [b for n, b in with_bias.named_parameters() if n.endswith("bias")]
    assert len(mlp_biases) == 2 and all((b == 0).all() for b in mlp_biases)


def test_grok_transformer_init_std_is_one_over_sqrt_width():
    torch.manual_seed(0)
    width = 128
    model = GrokTransformer(113, width=width)
    std = 1 / math.sqrt(width)
    for name, w in model.named_parameters():
        n = w.numel()
        # 5 standard errors of the sample std (std / sqrt(2n)) and of the sample mean (std / sqrt(n)).
        assert abs(w.std().item() - std) < 5 * std / math.sqrt(2 * n), name
        assert abs(w.mean().item()) < 5 * std / math.sqrt(n), name


# --- one-hot MLP -----------------------------------------------------------------------------

def test_onehot_mlp_equals_explicit_one_hot_computation():
    torch.manual_seed(0)
    p = 17
    model = OneHotMLP(p, hidden=24, depth=2)
    assert not [n for n, _ in model.named_parameters() if "bias" in n]
    w1, w2, w3 = (layer.weight for layer in model.net if isinstance(layer, nn.Linear))
    t = tokens(p, n=32)
    z = torch.cat([F.one_hot(t[:, 0], p), F.one_hot(t[:, 1], p)], dim=1).float()
    expected = F.relu(F.relu(z @ w1.T) @ w2.T) @ w3.T
    torch.testing.assert_close(model(t), expected)
    torch.testing.assert_close(model(t[:, :2]), expected)  # the "=" column is not used


# --- scale invariance of conv weights that feed BatchNorm ------------------------------------

def float64_bn_model(name):
    """The model in float64, train mode, BN eps 1e-12: the invariance is exact only for eps -> 0
    (eps perturbs it by a relative O(eps / var)), so shrink eps to test it at rounding level."""
    model = make(name).double().train()
    for bn in (m for m in model.modules() if isinstance(m, nn.BatchNorm2d)):
        bn.eps = 1e-12
    return model


@pytest.mark.parametrize("name", ["small_cnn", "resnet18", "vgg16_bn"])
def test_scaling_conv_weights_before_bn_leaves_output_unchanged(name):
    torch.manual_seed(0)
    model = float64_bn_model(name)
    x = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    before = model(x)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for conv in convs:  # every conv here feeds a BN: scale each by its own factor
            conv.weight.mul_(torch.empty(()).uniform_(0.5, 4.0).item())
    torch.testing.assert_close(model(x), before, rtol=1e-9, atol=1e-12)
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        head.weight.mul_(2.0)  # the head is not scale-invariant: control
    assert not torch.allclose(model(x), before, rtol=1e-2)


def test_gradient_of_scale_invariant_conv_weight_is_orthogonal_to_it():
    torch.manual_seed(0)
    model = float64_bn_model("small_cnn")
    x = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    F.cross_entropy(model(x), torch.arange(8) % 10).backward()
    for conv in (m for m in model.modules() if isinstance(m, nn.Conv2d)):
        w, g = conv.weight, conv.weight.grad
        assert abs((w * g).sum()) < 1e-9 * w.norm() * g.norm()  # <grad f(w), w> = 0


# --- memory format, autocast, compile -------------------------------------------------------

@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_channels_last_matches_contiguous(name):
    torch.manual_seed(0)
    model = make(name).eval()
    x = example_input(name)
    expected = model(x)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.to(memory_format=torch.channels_last))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_bf16_autocast_forward_runs(name):
    torch.manual_seed(0)
    num_classes = 11
    model = make(name, num_classes=num_classes)
    x = example_input(name, num_classes)
    if name not in TOKEN_MODELS:
        model, x = model.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.shape == (x.shape[0], num_classes) and torch.isfinite(out).all()


def test_bf16_autocast_matches_fp32_within_tolerance():
    torch.manual_seed(0)
    model = build_model("resnet18", 10, width=16).eval()
    x = torch.randn(4, 3, 32, 32)
    expected = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.bfloat16
    assert (out.float() - expected).norm() < 0.05 * expected.norm()


@pytest.mark.parametrize("name", list(MODELS))
def test_forward_compiles_without_graph_breaks(name):
    torch.manual_seed(0)
    model = make(name).train()  # the training path: BN batch statistics, dropout branch
    x = example_input(name)
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # a graph break raises
    torch.testing.assert_close(compiled(x), model(x))


# --- errors --------------------------------------------------------------------------------

def test_unknown_model_name_lists_choices():
    with pytest.raises(ValueError, match="unknown model 'resnet19'; valid choices: .*'resnet18'.*'vit'"):
        build_model("resnet19", 10)


def test_unexpected_keyword_names_valid_ones():
    with pytest.raises(TypeError, match=r"build_model\('resnet18'\) got unexpected keyword argument\(s\) "
                                        r"\['depth'\]; valid: \['width'\]"):
        build_model("resnet18", 10, depth=4)
    with pytest.raises(TypeError, match="'config'"):  # fixed by the name, not a free option
        build_model("vgg11", 10, config="vgg16")
    assert model_options("vgg16_bn") == {"width_multiplier": 1.0}


@pytest.mark.parametrize("name,kw,message", [
    ("resnet18", {"width": 0}, "width must be a positive int, got 0"),
    ("vit", {"patch": 5}, r"image_size \(32\) must be divisible by patch \(5\)"),
    ("vit", {"heads": 5}, r"dim \(192\) must be divisible by heads \(5\)"),
    ("vit", {"dropout": 1.0}, "dropout must be in"),
    ("grok_transformer", {"heads": 3}, r"width \(128\) must be divisible by heads \(3\)"),
    ("onehot_mlp", {"depth": 0}, "depth must be a positive int, got 0"),
    ("mlp", {"hidden": 128}, r"hidden must be a tuple of positive ints \(one per hidden layer\), got 128"),
    ("mlp", {"hidden": (64, 0)}, r"hidden\[1\] must be a positive int, got 0"),
    ("mlp", {"activation": "swish"}, r"activation must be one of \['gelu', 'relu', 'tanh'\], got 'swish'"),
    ("vgg11", {"width_multiplier": -1}, "width_multiplier must be > 0, got -1"),
])
def test_bad_values_raise_value_error_naming_argument(name, kw, message):
    with pytest.raises(ValueError, match=message):
        build_model(name, 10, **kw)


def test_bad_shared_arguments_raise():
    with pytest.raises(ValueError, match="num_classes must be a positive int, got 0"):
        build_model("small_cnn", 0)
    with pytest.raises(ValueError, match="image_size must be a positive int, got 2.5"):
        build_model("vit", 10, image_size=2.5)


def test_token_models_reject_wrong_token_shapes():
    with pytest.raises(ValueError, match=r"tokens must have shape \(N, 2\) or \(N, 3\), got \(4, 5\)"):
        OneHotMLP(7)(torch.zeros(4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"1 <= T <= seq_len=3, got \(4, 4\)"):
        GrokTransformer(7, width=16, heads=2)(torch.zeros(4, 4, dtype=torch.long))
