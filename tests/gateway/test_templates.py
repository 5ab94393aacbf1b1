"""gateway.templates: placeholders parsed and checked at save time, rendered per recipient."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.templates import MissingField, Template, TemplateError, parse

INVOICE = "Hi {contact_firstname}, your invoice {invoice_number} is due {invoice_duedate}"


def test_renders_every_placeholder_from_the_recipient_fields() -> None:
    t = Template.build("invoice", INVOICE)
    assert t.fields == ("contact_firstname", "invoice_number", "invoice_duedate")
    assert t.render({"contact_firstname": "Ana", "invoice_number": 42,
                     "invoice_duedate": "31/12"}) == "Hi Ana, your invoice 42 is due 31/12"


def test_missing_field_fails_the_recipient_by_default() -> None:
    t = Template.build("invoice", INVOICE)
    with pytest.raises(MissingField) as info:
        t.render({"contact_firstname": "Ana", "invoice_number": "7"})
    assert info.value.field == "invoice_duedate"
    with pytest.raises(MissingField):  # blank counts as missing
        t.render({"contact_firstname": " ", "invoice_number": "7", "invoice_duedate": "x"})


def test_default_policy_uses_the_default_value_or_empty() -> None:
    t = Template.build("invoice", INVOICE, "default", {"contact_firstname": "customer"})
    assert t.render({"invoice_number": "7"}) == "Hi customer, your invoice 7 is due "


def test_double_braces_are_literal_braces() -> None:
    t = Template.build("b", "{{not a field}} {x} }}")
    assert t.fields == ("x",)
    assert t.render({"x": "1"}) == "{not a field} 1 }"


def test_a_field_value_is_never_parsed_as_a_template() -> None:
    assert Template.build("t", "{m}").render({"m": "{evil} }{"}) == "{evil} }{"


@pytest.mark.parametrize(("text", "position"), [
    ("Hi {first name}", 3), ("Hi {1st}", 3), ("Hi {}", 3), ("Hi {name", 3), ("Hi name}", 7),
    ("Hi {na-me}", 3), ("{" + "a" * 65 + "}", 0), ("Hi {ñame}", 3),
])
def test_bad_placeholders_are_refused_with_their_position(text: str, position: int) -> None:
    with pytest.raises(TemplateError) as info:
        Template.build("t", text)
    assert info.value.position == position


@pytest.mark.parametrize(("name", "text", "policy", "defaults"), [
    ("", "x", "fail", None), ("bad name", "x", "fail", None), ("ok", "  ", "fail", None),
    ("ok", "x", "skip", None), ("ok", "x", "default", {"bad key": "v"}),
    ("ok", "x", "default", {"k": ["list"]}),
])
def test_bad_templates_are_refused(name: str, text: str, policy: str,
                                   defaults: dict[str, object] | None) -> None:
    with pytest.raises(TemplateError):
        Template.build(name, text, policy, defaults)


def test_document_round_trip() -> None:
    t = Template.build("inv", INVOICE, "default", {"invoice_duedate": "soon"}, "ucs2")
    assert Template.from_doc(t.to_doc()) == t


@settings(max_examples=200)
@given(st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=60),
       st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True), max_size=4),
       st.text(alphabet=st.characters(blacklist_characters="{}"), max_size=20))
def test_rendering_interleaves_literals_and_values(literal: str, names: list[str],
                                                   value: str) -> None:
    text = literal + "".join(f"{{{n}}}{literal}" for n in names)
    fields = {n: value + "x" for n in names}
    expected = literal + "".join(f"{value}x{literal}" for _ in names)
    assert Template.build("t", text + "!").render(fields) == expected + "!"
    assert parse(text.replace("{", "{{").replace("}", "}}")) in ((), ((False, text),)) or names
