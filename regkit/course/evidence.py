"""The course's evidence: each notebook's claims, its packaged ``cpu``-profile results and their verdicts.

A claim compares per-seed values that a notebook packages at the end of a ``cpu``-profile run::

    regkit.course.evidence.package("04", {"sam_acc": [81.5, 81.9, 81.7], "sgd_acc": [64.1, 65.0, 63.8]},
                                   dict(cfg), wall_time_s=300.0)

which writes ``evidence/04.json`` atomically: every seed's value, the settings, the commit, device,
threads, wall time and date. ``python -m regkit.course evidence`` prints the claim table (plain text, or
``--markdown`` for the README) and exits 1 when a packaged result was made with settings other than the
notebook's current ``cpu`` settings (``current_settings(notebook)``).

Verdicts come from the numbers alone. A *paired* claim takes the per-seed differences
``d = direction * (treatment - baseline)`` (same seed, same data order, same initial weights) and their 95%
Student-t interval ``[lo, hi]``: *shown* if ``lo > -margin``, *opposite* if ``hi < -margin``, else *not shown*
(``margin = 0``: the interval excludes 0 in the claimed direction). A *bound* claim (an invariant such as
``R(W) <= kappa``) is shown if every seed's ``direction * (value - bound) >= 0``, opposite if none is.
"""

from __future__ import annotations

import json
import math
import os
import sys
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from regkit.course.recording import to_json_value, write_json_atomically
from regkit.course.references import REFERENCES
from regkit.course.runner import REPO_ROOT, environment
from regkit.course.stats import Interval, t_interval
from regkit.device import processor_name

EVIDENCE_DIR = REPO_ROOT / "evidence"
FORMAT = 1
SHOWN, NOT_SHOWN, OPPOSITE, NO_RESULT = "shown", "not shown", "opposite", "no result"


# --- claims -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Claim:
    """One claim of a notebook, decided from the per-seed values it packages.

    ``treatment``/``baseline``: names of packaged values (lists over the same seeds); ``baseline=None`` with
    ``bound`` set makes a bound claim. ``direction``: +1 if larger treatment values support the claim, -1 if
    smaller do. ``margin``: a non-inferiority margin in the metric's unit ("matches or beats": the difference
    may be down to ``-margin``). ``published``: REFERENCES keys ``(treatment, baseline)`` where the paper's
    numbers are comparable in kind, else None.
    """

    notebook: str
    key: str
    text: str
    source: str
    metric: str
    treatment: str
    baseline: str | None = None
    direction: int = 1
    margin: float = 0.0
    bound: float | None = None
    published: tuple[str, str] | None = None

    def __post_init__(self):
        if self.direction not in (1, -1):
            raise ValueError(f"claim {self.notebook}/{self.key}: direction must be +1 or -1, got {self.direction!r}")
        if (self.baseline is None) == (self.bound is None):
            raise ValueError(f"claim {self.notebook}/{self.key}: give exactly one of baseline (paired) or bound")


@dataclass(frozen=True)
class Verdict:
    """A claim's outcome: the treatment's and the baseline's intervals, the paired difference's, the verdict."""

    claim: Claim
    verdict: str
    treatment: Interval | None = None
    baseline: Interval | None = None
    difference: Interval | None = None


def _seed_values(package: Mapping[str, Any], name: str) -> dict[str, float]:
    return {seed: float(v) for seed, v in package["values"][name].items()}


def decide(claim: Claim, package: Mapping[str, Any] | None) -> Verdict:
    """The verdict of ``claim`` on a packaged result (None, or a result without the claim's values: no result)."""
    needed = [claim.treatment] if claim.baseline is None else [claim.treatment, claim.baseline]
    if package is None or any(name not in package["values"] for name in needed):
        return Verdict(claim, NO_RESULT)
    treated = _seed_values(package, claim.treatment)
    if claim.bound is not None:
        ok = [claim.direction * (v - claim.bound) >= 0 for v in treated.values()]
        verdict = SHOWN if all(ok) else OPPOSITE if not any(ok) else NOT_SHOWN
        return Verdict(claim, verdict, t_interval(list(treated.values())))
    base = _seed_values(package, claim.baseline)
    if treated.keys() != base.keys():
        raise ValueError(f"notebook {package['notebook']}: {claim.treatment} and {claim.baseline} were measured "
                         f"on different seeds ({sorted(treated)} vs {sorted(base)}); a paired claim needs the same")
    seeds = sorted(treated)
    diff = t_interval([treated[s] - base[s] for s in seeds])
    lo, hi = sorted((claim.direction * diff.low, claim.direction * diff.high))
    verdict = NOT_SHOWN if math.isnan(lo) else SHOWN if lo > -claim.margin else OPPOSITE if hi < -claim.margin \
        else NOT_SHOWN
    return Verdict(claim, verdict, t_interval([treated[s] for s in seeds]), t_interval([base[s] for s in seeds]),
                   diff)


LOSHCHILOV = "Loshchilov & Hutter, Decoupled Weight Decay Regularization, ICLR 2019"
HEO = "Heo et al., AdamP, ICLR 2021"
FRANKE = "Franke et al., Constrained Parameter Regularization, NeurIPS 2024"
FORET = "Foret et al., Sharpness-Aware Minimization, ICLR 2021"
ZHAO_GNP = "Zhao, Zhang & Hu, Penalizing Gradient Norm, ICML 2022"
ZHAO_GR = "Zhao, Zhang & Hu, When Will Gradient Regularization Be Harmful?, ICML 2024"
NOVACK = "Novack et al., implicit regularization in SGD, ICLR 2023"
POWER = "Power et al., Grokking, 2022; Franke et al. (CPR) for the CPR variant"
WANG_AITCHISON = "Wang & Aitchison, How to set AdamW's weight decay as you scale model and dataset size, ICML 2025"
KOSSON = "Kosson, Messmer & Jaggi, Rotational Equilibrium, ICML 2024"
DEFAZIO = "Defazio, Why Gradients Rapidly Increase Near the End of Training (AdamC), 2025"
COMPOSED = "Franke et al. (CPR, NeurIPS 2024) and Foret et al. (SAM, ICLR 2021), through regkit's composing wrappers"

CLAIMS: tuple[Claim, ...] = (
    Claim("01", "decoupled_separable", "decoupled decay makes the best lr and wd nearly independent (AdamW's good "
          "region is axis-aligned, Adam+L2's diagonal)", LOSHCHILOV,
          "|slope| of log10 best decay vs log10 lr (Adam+L2: L2 coefficient; AdamW: lr*wd)", "adamw_abs_slope",
          "adam_l2_abs_slope", -1),
    Claim("01", "adamw_best_cell", "AdamW's best (lr, wd) cell is at least as good as Adam+L2's", LOSHCHILOV,
          "best-cell test error (%)", "adamw_best_err", "adam_l2_best_err", -1, margin=0.25),
    Claim("02", "norm_held", "momentum inflates the norm of scale-invariant weights; AdamP holds it", HEO,
          "||w_T|| / ||w_0|| of scale-invariant weights", "adamp_norm_ratio", "adam_norm_ratio", -1),
    Claim("02", "sgdp_norm_held", "SGDP holds the norm that SGD with momentum inflates", HEO,
          "||w_T|| / ||w_0|| of scale-invariant weights", "sgdp_norm_ratio", "sgd_norm_ratio", -1,
          published=("adamp.imagenet.resnet18.sgdp.weight_norm", "adamp.imagenet.resnet18.sgd_momentum.weight_norm")),
    Claim("02", "adamp_faster", "AdamP reaches a given accuracy in fewer steps than Adam", HEO,
          "steps to the target test accuracy", "adamp_steps_to_acc", "adam_steps_to_acc", -1),
    Claim("03", "cpr_bound", "CPR keeps every R(W) <= kappa (max over steps and tensors of R/kappa - 1 <= 1e-3)",
          FRANKE, "max (R(W) / kappa - 1)", "cpr_max_violation", bound=1e-3, direction=-1),
    Claim("03", "cpr_vs_adamw", "CPR (no wd to tune) matches or beats the best AdamW of a wd sweep", FRANKE,
          "test accuracy (%)", "cpr_acc", "adamw_best_acc", margin=0.5,
          published=("cpr.cifar100.resnet18.cpr_ip.acc", "cpr.cifar100.resnet18.adamw.acc")),
    Claim("04", "sam_vs_sgd", "SAM generalizes better than SGD at equal epochs", FORET, "test accuracy (%)",
          "sam_acc", "sgd_acc"),
    Claim("04", "gnp_vs_sgd", "GNP generalizes better than SGD at equal epochs", ZHAO_GNP, "test accuracy (%)",
          "gnp_acc", "sgd_acc"),
    Claim("04", "gr_zero_warmup", "Adam+GR needs a warmup: zero-warmup beats GR from step 0", ZHAO_GR,
          "test error (%)", "adam_gr_zero_warmup_err", "adam_gr_err", -1,
          published=("gr.cifar10.vit_ti.adam_gr_zero_warmup.err", "gr.cifar10.vit_ti.adam_gr.err")),
    Claim("05", "lb_gap", "large batch generalizes worse than small batch at equal epochs", NOVACK,
          "test accuracy (%)", "sb_acc", "lb_acc",
          published=("novack.cifar10.resnet18.sb_sgd.acc", "novack.cifar10.resnet18.lb_sgd.acc")),
    Claim("05", "gn_recovers", "a micro-batch gradient-norm penalty (GN) recovers part of the gap", NOVACK,
          "test accuracy (%)", "lb_gn_acc", "lb_acc",
          published=("novack.cifar10.resnet18.lb_gn.acc", "novack.cifar10.resnet18.lb_sgd.acc")),
    Claim("05", "ft_recovers", "a micro-batch Fisher-trace penalty (FT) recovers part of the gap", NOVACK,
          "test accuracy (%)", "lb_ft_acc", "lb_acc",
          published=("novack.cifar10.resnet18.lb_ft.acc", "novack.cifar10.resnet18.lb_sgd.acc")),
    Claim("06", "rescaling_grok", "weight-norm rescaling shortens the grokking delay", POWER,
          "steps from 99% train to 99% validation accuracy", "rescaling_delay", "adamw_delay", -1),
    Claim("06", "cpr_grok", "CPR shortens the grokking delay", POWER,
          "steps from 99% train to 99% validation accuracy", "cpr_delay", "adamw_delay", -1),
    Claim("09", "tau_transfer_err", "the best decay stays put across training-set sizes as tau_epoch, not as wd "
          "(test error)", WANG_AITCHISON, "|slope| of log2 best tau_epoch (vs: wd) vs log2 N",
          "tau_abs_slope_err", "wd_abs_slope_err", -1),
    Claim("09", "tau_transfer_loss", "the best decay stays put across training-set sizes as tau_epoch, not as wd "
          "(test loss)", WANG_AITCHISON, "|slope| of log2 best tau_epoch (vs: wd) vs log2 N",
          "tau_abs_slope_loss", "wd_abs_slope_loss", -1),
    Claim("09", "equilibrium_norm", "AdamW: the RMS row norm of normalized layers settles within 10% of "
          "sqrt(lr C / (2 wd))", KOSSON, "worst layer's |norm / predicted - 1|", "eq_norm_error", bound=0.1,
          direction=-1),
    Claim("09", "equilibrium_angle", "AdamW: the RMS angular update settles within 10% of "
          "sqrt(2 lr wd (1 - beta1) / (1 + beta1))", KOSSON, "worst layer's |angle / predicted - 1|",
          "eq_angle_error", bound=0.1, direction=-1),
    Claim("09", "grad_norm_rise", "under a cosine schedule the gradient norm of normalized layers rises at the end "
          "(by at least 10%)", DEFAZIO, "grad norm, last 10% / 30-40% of the run", "plain_grad_rise", bound=1.1),
    Claim("09", "corrected_smaller_rise", "corrected=True (decay proportional to lr_t / lr_max) shrinks that rise",
          DEFAZIO, "grad norm, last 10% / 30-40% of the run", "corrected_grad_rise", "plain_grad_rise", -1),
    Claim("09", "corrected_no_rise", "with corrected=True the gradient norm rises by at most 10% at the end",
          DEFAZIO, "grad norm, last 10% / 30-40% of the run", "corrected_grad_rise", bound=1.1, direction=-1),
    Claim("10", "sgd_cpr_vs_sgd", "SGD+CPR (with_cpr(SGD), no wd to tune) matches or beats SGD with the wd best on "
          "validation", COMPOSED, "test accuracy (%)", "sgd_cpr_acc", "sgd_best_acc", margin=0.5),
    Claim("10", "sam_over_cpr", "SAM over AdamCPR generalizes better than AdamCPR (40% label noise)", COMPOSED,
          "test accuracy (%)", "sam_adamcpr_acc", "adamcpr_acc"),
)
"""Every claim of the course, in notebook order. The names are the packaged values each notebook writes."""


# --- packaged results -------------------------------------------------------------------------------------

def _notebook_id(notebook: str) -> str:
    if not (isinstance(notebook, str) and len(notebook) == 2 and notebook.isdigit()):
        raise ValueError(f"notebook must be a two-digit number like '04', got {notebook!r}")
    return notebook


def _per_seed(name: str, values: Mapping[int, float] | Sequence[float]) -> dict[str, float]:
    items = values.items() if isinstance(values, Mapping) else enumerate(values)
    out = {str(seed): float(v) for seed, v in items}
    if not out or not all(math.isfinite(v) for v in out.values()):
        raise ValueError(f"value {name!r} must hold one finite number per seed, got {values!r}")
    return out


def package(notebook: str, results: Mapping[str, Mapping[int, float] | Sequence[float]],
            settings: Mapping[str, Any], *, wall_time_s: float, directory: str | os.PathLike | None = None,
            threads: int | None = None) -> Path:
    """Write ``<directory>/<notebook>.json`` atomically (default ``evidence/`` at the repository root) and
    return its path.

    ``results``: ``{value name: per-seed values}`` (a list: seeds 0, 1, ...; a mapping: ``{seed: value}``).
    ``settings``: the ``cpu``-profile settings the run used (compared with ``current_settings`` later).
    Stored beside them: the commit (``+dirty`` with uncommitted changes), torch, device, torch threads,
    ``wall_time_s``, the UTC date and the host's processor.
    """
    import torch

    notebook = _notebook_id(notebook)
    data = {
        "format": FORMAT, "notebook": notebook, "profile": "cpu",
        "values": {name: _per_seed(name, values) for name, values in results.items()},
        "settings": to_json_value(dict(settings), "settings"),
        **environment(), "threads": threads or torch.get_num_threads(), "processor": processor_name(),
        "wall_time_s": round(float(wall_time_s), 1), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    path = Path(directory or EVIDENCE_DIR) / f"{notebook}.json"
    write_json_atomically(path, data)
    return path


def load(notebook: str, directory: str | os.PathLike | None = None) -> dict[str, Any] | None:
    """The packaged result of ``notebook`` (None when there is none yet)."""
    path = Path(directory or EVIDENCE_DIR) / f"{_notebook_id(notebook)}.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}): delete it and rerun notebook {notebook} with "
                         "--profile cpu") from e
    if data.get("format") != FORMAT or data.get("notebook") != notebook:
        raise ValueError(f"{path}: format {data.get('format')!r} / notebook {data.get('notebook')!r}, expected "
                         f"format {FORMAT} for notebook {notebook}: rerun the notebook with --profile cpu")
    return data


# --- staleness --------------------------------------------------------------------------------------------

SettingsLookup = Callable[[str], Mapping[str, Any]]
"""``current_settings(notebook) -> dict``: a notebook's current ``cpu``-profile settings."""


def catalog_settings(notebook: str) -> Mapping[str, Any]:
    """The current ``cpu``-profile settings of ``notebook``: its catalog's ``cpu`` row
    (``regkit/course/catalog/nbNN.py``), exactly the dict its notebook passes to `package`."""
    from regkit.course.catalog import load as load_catalog

    return load_catalog(notebook).row("cpu")


def stale_keys(packaged: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """The setting names whose values differ (after a JSON round trip: tuples == lists) or exist on one side only."""
    a, b = to_json_value(dict(packaged), "packaged"), to_json_value(dict(current), "current")
    return sorted(k for k in set(a) | set(b) if k not in a or k not in b or a[k] != b[k])


# --- the table --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """A line of the claim table: the verdict and the settings keys that changed since the result was packaged."""

    verdict: Verdict
    stale: list[str]


def evaluate_claims(current_settings: SettingsLookup | None = None, directory: str | os.PathLike | None = None,
                    claims: Sequence[Claim] = CLAIMS) -> list[Row]:
    """Every claim's verdict on its notebook's packaged result, with the settings keys that went stale
    (``current_settings``: default `catalog_settings`)."""
    lookup = current_settings or catalog_settings
    packages = {nb: load(nb, directory) for nb in dict.fromkeys(c.notebook for c in claims)}
    rows = []
    for claim in claims:
        data = packages[claim.notebook]
        stale = [] if data is None else stale_keys(data["settings"], lookup(claim.notebook))
        rows.append(Row(decide(claim, data), stale))
    return rows


def _published(claim: Claim) -> str:
    if claim.published is None:
        return "-"
    a, b = (REFERENCES[k] for k in claim.published)
    return f"{a.value:g} vs {b.value:g} ({a.setting.split(';')[0]})"


def table_rows(rows: Sequence[Row]) -> list[dict[str, str]]:
    """The claim table as strings: notebook, claim, source, metric, ours (treatment vs baseline), difference,
    published, verdict (``stale`` appended when the settings changed)."""
    out = []
    for row in rows:
        v, c = row.verdict, row.verdict.claim
        ours = "-" if v.treatment is None else str(v.treatment) if v.baseline is None \
            else f"{v.treatment} vs {v.baseline}"
        difference = "-" if v.difference is None else f"{v.difference.mean:+.4g} ± {v.difference.half_width:.3g}"
        if c.bound is not None and v.treatment is not None:
            difference = f"bound {c.bound:g} on every seed"
        out.append({"notebook": c.notebook, "claim": c.text, "source": c.source, "metric": c.metric, "ours": ours,
                    "difference": difference, "published": _published(c),
                    "verdict": v.verdict + (" (stale settings)" if row.stale else "")})
    return out


def format_table(rows: Sequence[Row], markdown: bool = False) -> str:
    """The claim table as aligned plain text, or as a Markdown table (``markdown=True``) for the README."""
    cells = table_rows(rows)
    header = list(cells[0]) if cells else ["notebook", "claim", "verdict"]
    if markdown:
        def line(values):
            return "| " + " | ".join(str(v).replace("|", "\\|") for v in values) + " |"
        return "\n".join([line(header), line(["---"] * len(header)), *(line(c.values()) for c in cells)])
    widths = {h: max(len(h), *(len(c[h]) for c in cells)) for h in header}
    lines = ["  ".join(h.ljust(widths[h]) for h in header).rstrip()]
    lines += ["  ".join(c[h].ljust(widths[h]) for h in header).rstrip() for c in cells]
    return "\n".join(lines)


def main(markdown: bool = False, directory: str | os.PathLike | None = None,
         current_settings: SettingsLookup | None = None) -> int:
    """Print the claim table; 1 when a packaged result was made with other settings than the current cpu
    profile (``current_settings``: default `catalog_settings`; each such notebook and its differing keys named
    on stderr), else 0."""
    rows = evaluate_claims(current_settings, directory)
    print(format_table(rows, markdown))
    stale = {r.verdict.claim.notebook: r.stale for r in rows if r.stale}
    for notebook, keys in stale.items():
        print(f"error: evidence/{notebook}.json was made with other settings than the current cpu profile "
              f"(differing: {', '.join(keys)}); rerun: python -m regkit.course run --profile cpu --only {notebook}",
              file=sys.stderr)
    return 1 if stale else 0


def provenance(notebook: str, directory: str | os.PathLike | None = None) -> str:
    """One line saying where the packaged result of ``notebook`` comes from (file, commit, date, device,
    threads, wall time), or how to make it when there is none."""
    data = load(notebook, directory)
    if data is None:
        return (f"no packaged result for notebook {notebook} yet: python -m regkit.course run --profile cpu "
                f"--only {notebook}")
    return (f"packaged results from evidence/{notebook}.json: commit {data['git_commit']}, {data['date']}, "
            f"{data['device']} ({data['threads']} thread(s), {data['processor'] or 'processor unknown'}), "
            f"torch {data['torch']}, {data['wall_time_s']:.0f} s")


def plot_claims(notebook: str, directory: str | os.PathLike | None = None, claims: Sequence[Claim] = CLAIMS) -> list:
    """One figure per claim of ``notebook`` with a packaged result: each compared method's per-seed values, mean
    and 95% interval (`regkit.plots.plot_intervals`), titled with the claim and its verdict."""
    from regkit.plots import plot_intervals

    data = load(notebook, directory)
    figures = []
    for claim in claims:
        verdict = decide(claim, data)
        if claim.notebook != notebook or verdict.verdict == NO_RESULT:
            continue
        names = [claim.treatment] if claim.baseline is None else [claim.treatment, claim.baseline]
        fig, ax = plot_intervals({name: list(_seed_values(data, name).values()) for name in names},
                                 title=f"{textwrap.fill(claim.text, 40)}\n({verdict.verdict})",
                                 ylabel=textwrap.fill(claim.metric, 30))
        if claim.bound is not None:
            ax.axhline(claim.bound, color="black", ls=":", lw=1)
        ax.title.set_fontsize(9)
        figures.append(fig)
    return figures
