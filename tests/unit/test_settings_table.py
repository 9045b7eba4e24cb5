"""The one settings table (config/settings.py SETTINGS) and every copy of it."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from backbeat.config.settings import (
    DEFAULT_DEADLINE_MS,
    DEFAULT_RETENTION_MS,
    DEFAULTS,
    DERIVED,
    SETTINGS,
    Settings,
    deadline_env,
    markdown_table,
)
from backbeat.provider.profiles import JOB_TYPES

ROOT = Path(__file__).resolve().parents[2]
#: the docs holding a copy of the table between the markers
COPIES = ("README.md",)
START, END = "<!-- settings:start -->\n", "<!-- settings:end -->"
#: a table row whose first cell is a variable: a hand-written settings table
HAND_ROW = re.compile(r"^\|\s*`BACKBEAT_\w+`", re.MULTILINE)


def _copy(doc: str) -> str:
    text = (ROOT / doc).read_text(encoding="utf-8")
    assert text.count(START) == 1 and text.count(END) == 1, f"{doc}: one pair of markers"
    return text.split(START, 1)[1].split(END, 1)[0]


@pytest.mark.parametrize("doc", COPIES)
def test_the_docs_copy_is_the_rendered_table(doc):
    """Given the doc's text between the markers, expect exactly ``markdown_table()``
    (regenerate with ``python -m backbeat.config.settings``)."""
    assert _copy(doc) == markdown_table()


def test_no_doc_keeps_a_hand_written_settings_table():
    """Given README and docs/ without their generated blocks, expect no row naming a variable."""
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        if START in text:
            head, rest = text.split(START, 1)
            text = head + rest.split(END, 1)[1]
        assert not HAND_ROW.findall(text), f"{path.name} lists BACKBEAT_* outside the table"


def test_the_module_prints_the_table():
    out = subprocess.run([sys.executable, "-m", "backbeat.config.settings"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert out == markdown_table()


def test_every_field_is_in_the_table_or_derived():
    """Given the Settings fields, expect each filled by one row or documented in DERIVED."""
    fields = [f.name for f in dataclasses.fields(Settings)]
    rows = [s.attr for s in SETTINGS if s.attr is not None]
    assert len(rows) == len(set(rows)), "a field filled by two rows"
    assert set(rows).isdisjoint(DERIVED)
    assert sorted(fields) == sorted([*rows, *DERIVED])
    envs = [s.env for s in SETTINGS]
    assert len(envs) == len(set(envs)) and all(e.startswith("BACKBEAT_") for e in envs)
    assert all(s.doc and "|" not in s.doc and "\n" not in s.doc for s in SETTINGS)


def test_a_deadline_per_job_type():
    envs = {s.env for s in SETTINGS}
    assert {deadline_env(t) for t in JOB_TYPES} <= envs
    s = Settings.from_env({"BACKBEAT_DEADLINE": "60", deadline_env(JOB_TYPES[-1]): "90"})
    assert [s.deadline_s(t) for t in JOB_TYPES] == [60.0] * (len(JOB_TYPES) - 1) + [90.0]


def test_defaults_agree():
    """Given no environment, expect from_env to equal the dataclass defaults, and the exported
    defaults to be read from the same rows."""
    assert Settings.from_env({}) == Settings() == DEFAULTS
    for s in SETTINGS:
        if s.attr is not None and not s.fallback:
            assert getattr(DEFAULTS, s.attr) == s.parse(s.default, s.env), s.env
    deadline = next(s for s in SETTINGS if s.env == "BACKBEAT_DEADLINE")
    assert DEFAULT_DEADLINE_MS == int(float(deadline.default) * 1000)
    assert DEFAULTS.deadline_s("not-a-type") * 1000 == DEFAULT_DEADLINE_MS
    assert DEFAULT_RETENTION_MS == int(DEFAULTS.retention_days * 86_400_000)


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.env)
def test_a_bad_value_names_its_variable(setting):
    """Given a nonsense value, expect it taken as text or refused with an error naming it."""
    try:
        Settings.from_env({setting.env: "not valid"})
    except ValueError as exc:
        assert setting.env in str(exc)
