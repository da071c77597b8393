"""The state scheme: round trip, length, alphabet, and foreign states never crash."""

import string

from hypothesis import given, settings
from hypothesis import strategies as st

from channels_app.state import MAX_LENGTH, encode_state, parse_state

ALPHABET = set(string.ascii_letters + string.digits)
ids = st.integers(min_value=1, max_value=36**10 - 1)


@settings(max_examples=300)
@given(kind=st.sampled_from(["native", "referral", "group"]), object_id=ids)
def test_round_trip_single_id(kind, object_id):
    state = encode_state(kind, object_id)
    assert len(state) <= MAX_LENGTH
    assert set(state) <= ALPHABET
    parsed = parse_state(state)
    assert (parsed.kind, parsed.object_id, parsed.second_id) == (kind, object_id, None)


@settings(max_examples=300)
@given(code_id=ids, slot_id=ids)
def test_round_trip_landing_slot(code_id, slot_id):
    state = encode_state("landing", code_id, slot_id)
    assert len(state) <= MAX_LENGTH
    assert set(state) <= ALPHABET
    parsed = parse_state(state)
    assert (parsed.kind, parsed.object_id, parsed.second_id) == ("landing", code_id, slot_id)


@settings(max_examples=200)
@given(a=st.tuples(st.sampled_from(["native", "referral", "group"]), ids),
       b=st.tuples(st.sampled_from(["native", "referral", "group"]), ids))  # fmt: skip
def test_distinct_objects_never_share_a_state(a, b):
    if a != b:
        assert encode_state(*a) != encode_state(*b)


@settings(max_examples=500)
@given(st.text(max_size=80))
def test_any_string_parses_without_error(text):
    parsed = parse_state(text)
    assert parsed.kind in {"", "foreign", "native", "landing", "referral", "group"}
    if parsed.is_ours:
        assert encode_state(parsed.kind, parsed.object_id, parsed.second_id) == text


def test_foreign_and_tampered_states_are_kept_as_foreign():
    state = encode_state("native", 12345)
    tampered = state[:-1] + ("0" if state[-1] != "0" else "1")
    for raw in ["teststate", "ixj:42", "channelCode-7", tampered, state[:-2], "scN0a" + state[-2:]]:
        parsed = parse_state(raw)
        assert parsed.kind == "foreign"
        assert parsed.raw == raw
    assert parse_state("").kind == ""
    assert parse_state(None).kind == ""
