"""The release tool's version and changelog rules."""

import pytest
from release import bumped, section_entries

CHANGELOG = """# Changelog

## [Unreleased]

## [0.2.0] - 2026-11-26

### Added

- a feature

## [0.1.0] - 2026-11-01

- first
"""


@pytest.mark.parametrize(
    ("part", "expected"), [("patch", "0.2.1"), ("minor", "0.3.0"), ("major", "1.0.0")]
)
def test_bumped(part, expected):
    assert bumped("0.2.0", part) == expected


def test_bumped_rejects_non_semver():
    with pytest.raises(SystemExit, match=r"is not MAJOR\.MINOR\.PATCH"):
        bumped("0.2", "patch")


def test_section_entries_reads_one_section():
    assert "- a feature" in section_entries(CHANGELOG, "## [0.2.0]")
    assert "first" not in section_entries(CHANGELOG, "## [0.2.0]")
    with pytest.raises(SystemExit, match="lists no changes"):
        section_entries(CHANGELOG, "## [Unreleased]")
    with pytest.raises(SystemExit, match=r"has no .## \[0\.3\.0\]. section"):
        section_entries(CHANGELOG, "## [0.3.0]")
