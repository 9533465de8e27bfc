"""The README's evidence table is exactly what `python -m regkit.course evidence --markdown` prints."""

from pathlib import Path

from regkit.course.evidence import CLAIMS, evaluate_claims, format_table

README = Path(__file__).resolve().parents[1] / "README.md"
START = "<!-- evidence-table: python -m regkit.course evidence --markdown -->"
END = "<!-- /evidence-table -->"


def test_readme_evidence_table_matches_the_packaged_results():
    text = README.read_text()
    assert START in text and END in text, f"README.md must hold the evidence table between {START} and {END}"
    table = text.split(START, 1)[1].split(END, 1)[0].strip()
    expected = format_table(evaluate_claims(None, None), markdown=True).strip()
    assert table == expected, "README's evidence table is stale: paste `python -m regkit.course evidence --markdown`"


def test_at_least_ten_claims_each_with_three_seeds_and_an_interval():
    rows = evaluate_claims(None, None)
    measured = [r for r in rows if r.verdict.treatment is not None and r.verdict.treatment.n >= 3]
    assert len(CLAIMS) >= 10 and len(measured) >= 10, [r.verdict.claim.key for r in rows if r not in measured]
    assert not any(r.stale for r in rows)
