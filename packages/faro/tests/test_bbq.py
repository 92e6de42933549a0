"""``load_bbq`` on small files in BBQ's JSONL schema written by the test."""

import json

import pytest
from faro import load_bbq


def bbq_row(
    example_id,
    *,
    polarity="neg",
    condition="ambig",
    category="Age",
    label=2,
    answers=(("grandfather", "old"), ("grandson", "nonOld"), ("Can't be determined", "unknown")),
    stereotyped=("old",),
    question="Who was not comfortable using the phone?",
):
    return {
        "example_id": example_id,
        "question_index": "1",
        "question_polarity": polarity,
        "context_condition": condition,
        "category": category,
        "answer_info": {f"ans{i}": list(answer) for i, answer in enumerate(answers)},
        "additional_metadata": {
            "subcategory": "None",
            "stereotyped_groups": list(stereotyped),
            "version": "a",
            "source": "test",
        },
        "context": f"Context {example_id}.",
        "question": question,
        **{
            f"ans{i}": text if tag == "unknown" else f"The {text}"
            for i, (text, tag) in enumerate(answers)
        },
        "label": label,
    }


def write(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


SES = (("low-income", "lowSES"), ("Not known", "unknown"), ("wealthy", "highSES"))
GENDER = (("Not enough info", "unknown"), ("man", "man"), ("woman", "woman"))


def test_bbq_rows_become_oriented_preference_pairs_with_groups(tmp_path):
    age = [
        # ambiguous, negative question: gold "unknown" (2), stereotype picks the grandfather (0)
        bbq_row(0),
        # disambiguated against the stereotype: gold grandson (1), stereotype grandfather (0)
        bbq_row(1, condition="disambig", label=1),
        # disambiguated with the stereotype: gold grandfather (0) = stereotype -> rejected unknown
        bbq_row(2, condition="disambig", label=0),
        # non-negative question: the stereotype picks the other group (grandson, 1) = gold
        bbq_row(3, polarity="nonneg", condition="disambig", label=1),
        # tags that do not identify the stereotyped answer: skipped
        bbq_row(4, stereotyped=()),
    ]
    other = [
        # BBQ spells groups differently in tags and metadata: "low SES" vs "lowSES" ...
        bbq_row(5, category="SES", label=1, answers=SES, stereotyped=("low SES",)),
        # ... and "F" vs "woman"; gold woman (2) = stereotype -> rejected is "unknown" (0)
        bbq_row(6, category="Gender_identity", label=2, answers=GENDER, stereotyped=("F",)),
    ]
    dataset, categories = load_bbq(
        [write(tmp_path / "Age.jsonl", age), write(tmp_path / "o.jsonl", other)]
    )
    assert categories == ["Age", "Gender_identity", "SES"]
    assert dataset.column_names == ["prompt", "chosen", "rejected", "group", "orientation", "label"]
    rows = dataset.to_list()
    assert len(rows) == 6
    expected = [
        # chosen, rejected, group, orientation, label
        ("Can't be determined", "The grandfather", 0, -1, 0),
        ("The grandson", "The grandfather", 0, -1, 0),
        ("The grandfather", "Can't be determined", 0, 1, 1),
        ("The grandson", "Can't be determined", 0, 1, 1),
        ("Not known", "The low-income", 2, -1, 0),
        ("The woman", "Not enough info", 1, 1, 1),
    ]
    for row, (chosen, rejected, group, orientation, label) in zip(rows, expected, strict=True):
        assert (row["chosen"], row["rejected"]) == (chosen, rejected)
        assert (row["group"], row["orientation"], row["label"]) == (group, orientation, label)
    assert rows[0]["prompt"] == "Context 0.\nWho was not comfortable using the phone?\n"
    # the canonical first response is always the stereotype-consistent answer
    for row in rows:
        first = row["chosen"] if row["orientation"] == 1 else row["rejected"]
        assert first in ("The grandfather", "The grandson", "The low-income", "The woman")


def test_bbq_single_path_and_nationality_tags_by_text(tmp_path):
    # Nationality tags name regions; the stereotyped group is matched on the answer text
    answers = (("Nigerian", "Africa"), ("British", "Europe"), ("Unknown", "unknown"))
    row = bbq_row(0, category="Nationality", answers=answers, stereotyped=("Nigerian",))
    dataset, categories = load_bbq(write(tmp_path / "Nationality.jsonl", [row]))
    assert categories == ["Nationality"]
    assert dataset[0]["rejected"] == "The Nigerian"
    assert dataset[0]["orientation"] == -1


def without(row, field):
    return {key: value for key, value in row.items() if key != field}


@pytest.mark.parametrize(
    ("row", "match"),
    [
        (without(bbq_row(0), "label"), r"lacks the field\(s\) \['label'\]"),
        (without(bbq_row(0), "answer_info"), r"lacks the field\(s\) \['answer_info'\]"),
        (bbq_row(0, label=3), "'label' must be 0, 1 or 2.*got 3"),
        (bbq_row(0, label="2"), "'label' must be 0, 1 or 2.*got '2'"),
        (bbq_row(0, label=True), "'label' must be 0, 1 or 2"),
        (bbq_row(0, polarity="negative"), "'question_polarity' must be 'neg' or 'nonneg'"),
        ({**bbq_row(0), "answer_info": {"ans0": ["a", "old"]}}, "'answer_info' must map"),
        (["not", "an", "object"], "must be a JSON object"),
    ],
)
def test_malformed_bbq_rows_raise_clear_errors(tmp_path, row, match):
    path = write(tmp_path / "bad.jsonl", [bbq_row(7), row])
    with pytest.raises(ValueError, match=match) as info:
        load_bbq(path)
    assert "bad.jsonl:2" in str(info.value)


def test_bbq_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_bbq(tmp_path / "missing.jsonl")
    with pytest.raises(ValueError, match="at least one"):
        load_bbq([])
    broken = tmp_path / "broken.jsonl"
    broken.write_text(json.dumps(bbq_row(0)) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"broken\.jsonl:2 is not valid JSON"):
        load_bbq(broken)
    with pytest.raises(ValueError, match="no BBQ rows"):
        load_bbq(write(tmp_path / "empty.jsonl", []))
    with pytest.raises(ValueError, match="no usable BBQ items"):
        load_bbq(write(tmp_path / "none.jsonl", [bbq_row(0, stereotyped=())]))
