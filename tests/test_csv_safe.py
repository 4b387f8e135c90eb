"""CSV files are safe to open in a spreadsheet: formula cells are escaped, numbers are not (issue 14, point 6)."""

from __future__ import annotations

import csv
import io

import pytest

from core import csv_safe
from core.datasets import export, versions
from core.review.agreement import campaign_report
from core.review.campaigns import create_campaign
from core.review.responses import save_answers
from core.review.results import agreement_csv, results_csv
from core.review.selection import Selection
from tests.curate_support import add_example
from tests.review_support import annotators, make_examples

FORMULAS = ["=1+1", "=HYPERLINK(\"http://evil\",\"x\")", "+SUM(A1)", "-2+3", "@SUM(A1)", "\t=1", "\r=1",
            "'=already quoted", "''-2+3", "-", "+"]
PLAIN = ["joy", "", "'quoted but harmless", "a=b", "-0.25", "+3", "12", "1e-3", "-.5", " =1"]


@pytest.mark.parametrize("text", FORMULAS)
def test_formula_cells_get_an_apostrophe_and_come_back_exactly(text):
    escaped = csv_safe.neutralise(text)
    assert escaped == "'" + text
    assert csv_safe.restore(escaped) == text


@pytest.mark.parametrize("text", PLAIN)
def test_plain_text_and_numbers_are_left_alone(text):
    assert csv_safe.neutralise(text) == text and csv_safe.restore(text) == text


def test_the_arrow_rule_is_the_same_rule():
    import pyarrow as pa

    texts = FORMULAS + PLAIN + [None]
    assert csv_safe.neutralise_array(pa.array(texts)).to_pylist() == [csv_safe.neutralise(t) for t in texts]
    assert csv_safe.neutralise(-1.5) == -1.5  # a number is no text


def test_dataset_csv_and_tsv_exports_escape_formulas_and_read_back_exactly(admin, tmp_path):
    texts = ["=HYPERLINK(\"http://evil\") click", "-2+3 minus", "A plain line", "-0.5"]
    for text in texts:
        add_example(text, {"joy": 0.9})
    version = versions.freeze(admin, "formulas", ratios={"train": 1.0})
    export.export_version(admin, version.id, tmp_path / "out", ("csv", "goemotions_tsv", "jsonl"), make_zip=False)
    with (tmp_path / "out" / "csv" / "train.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["text"] for r in rows) == sorted(["'=HYPERLINK(\"http://evil\") click", "'-2+3 minus",
                                                     "A plain line", "-0.5"])
    tsv = (tmp_path / "out" / "goemotions_tsv" / "train.tsv").read_text()
    assert "'=HYPERLINK" in tsv and "\n'-2+3 minus\t" in tsv
    assert "'=" not in (tmp_path / "out" / "jsonl" / "train.jsonl").read_text(), "JSONL holds the exact text"


def test_review_results_and_agreement_csv_escape_what_people_typed(admin):
    [evil] = annotators(admin, "@evil")
    [example] = make_examples([{"text": "=cmd|' /C calc'!A0", "labels": {"joy": 0.9}}])
    campaign = create_campaign(admin, name="=injected", task="verification", annotator_ids=[evil.id],
                               selection=Selection(example_ids=[example]))
    item = next(iter(_item_ids(campaign.id)))
    save_answers(evil, item, {"emotions": ["joy"], "comment": "=HYPERLINK(\"http://evil\")"}, submit=True)
    rows = list(csv.reader(io.StringIO(results_csv(admin, campaign.id))))
    cells = [cell for row in rows[1:] for cell in row]
    assert "'=injected" in cells and "'@evil" in cells and "'=HYPERLINK(\"http://evil\")" in cells
    assert not [c for c in cells if c and c[0] in "=+-@"], "no cell starts a formula"
    agreement = list(csv.reader(io.StringIO(agreement_csv(campaign_report(admin, campaign.id)))))
    assert "'@evil" in [cell for row in agreement for cell in row]


def _item_ids(campaign_id: int) -> list[int]:
    from sqlalchemy import select

    from db.models import CampaignItem
    from db.session import read_session

    with read_session() as session:
        return list(session.scalars(select(CampaignItem.id).where(CampaignItem.campaign_id == campaign_id)))
