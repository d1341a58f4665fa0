"""Identities: one normal form, only known users, and no look-alike of a known user passes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.identity import Directory, IdentityError, normalise, people_in_workflows, skeleton, well_formed
from tests.unit.factories import workflow_folder

PEOPLE = Directory(["alice", "bob", "carol", "dave.smith@example.com"])


@pytest.mark.parametrize(("written", "normal"), [
    ("alice", "alice"), ("Alice", "alice"), ("  ALICE\t", "alice"), ("Ａｌｉｃｅ", "alice"),  # fullwidth
    ("ﬁona", "fiona"),  # the ligature ﬁ
    ("Straße", "strasse"),  # casefold, not lower
    ("Dave.Smith@Example.COM", "dave.smith@example.com"),
])
def test_normalise(written, normal):
    assert normalise(written) == normal


@pytest.mark.parametrize("written", ["alice", "Alice", " ALICE ", "Ａｌｉｃｅ"])
def test_a_known_user_however_written(written):
    assert PEOPLE.resolve(written) == "alice" and written in PEOPLE


@pytest.mark.parametrize(("name", "says"), [
    ("\u0430lice", "U+0430 CYRILLIC SMALL LETTER A"),  # Cyrillic 'а'
    ("b\u03bfb", "U+03BF GREEK SMALL LETTER OMICRON"),
    ("ali\u0441e", "CYRILLIC SMALL LETTER ES"),
    ("alice\u200b", "U+200B ZERO WIDTH SPACE"),  # invisible
    ("ali\u0301ce", "U+00ED LATIN SMALL LETTER I WITH ACUTE"),  # NFKC composes i + combining acute
    ("álice", "U+00E1"),
    ("a lice", "U+0020 SPACE"),
    ("b0b", "looks like the known user 'bob'"),
    ("caro1", "looks like the known user 'carol'"),
    ("rnallory", "not a known user"),  # no known user looks like it
    ("mallory", "not a known user"),
    ("", "empty"),
    ("-alice", "must start with a letter or a digit"),
    ("a" * 129, "longer than 128"),
])
def test_refused(name, says):
    with pytest.raises(IdentityError) as refused:
        PEOPLE.resolve(name)
    assert says in str(refused.value)
    assert name not in PEOPLE


def test_a_directory_refuses_two_users_that_look_alike():
    with pytest.raises(IdentityError, match="'modest' and 'rnodest' look alike"):
        Directory(["modest", "rnodest"])
    with pytest.raises(IdentityError, match="known user 'b\u043eb'"):
        Directory(["bob", "b\u043eb"])
    for pair in (["clark", "c1ark"], ["dl", "c1l"]):  # 'c1' folds to 'cl', and 'cl' on to 'd'
        with pytest.raises(IdentityError, match="look alike"):
            Directory(pair)


def test_the_same_user_twice_is_one():
    assert Directory(["Bob", "bob", " BOB "]).users == {"bob"}


@given(st.text(max_size=40))
def test_whatever_resolves_is_a_known_user_in_normal_form(name):
    try:
        user = PEOPLE.resolve(name)
    except IdentityError:
        return
    assert user in PEOPLE.users and normalise(name) == user


@given(st.text(max_size=40))
def test_well_formed_is_ascii_and_idempotent(name):
    try:
        user = well_formed(name)
    except IdentityError:
        return
    assert user.isascii() and well_formed(user) == user and skeleton(user).isascii()


def test_people_in_workflows_and_groups(tmp_path):
    folder = workflow_folder(tmp_path / "workflows", "risk: [dave, erin]\nleads: [Bob]\n", default="""\
name: default
default: true
steps:
  - name: manual_approval
    type: approval
    inputs: {approvers: ['alice', 'group:leads'], escalate_to: ['frank'], break_glass: ['oncall']}
""")
    assert sorted(people_in_workflows(folder)) == ["Bob", "alice", "dave", "erin", "frank", "oncall"]
    people = Directory.from_workflows(folder, extra=["zoe"])
    assert people.users == {"alice", "bob", "dave", "erin", "frank", "oncall", "zoe"}
    assert "risk" not in people and "group:leads" not in people


def test_no_workflow_folder_knows_only_the_extra(tmp_path):
    assert Directory.from_workflows(tmp_path / "missing", ["zoe"]).users == {"zoe"}
