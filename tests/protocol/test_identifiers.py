"""Names and room names under Unicode's rules: UTS #39 skeletons and identifier
characters, the RFC 8265 username profile, invisible characters, canonical rooms."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatserver.protocol import (
    ErrorCode,
    ProtocolError,
    check_name,
    check_room,
    name_key,
    validation,
)

HANGUL_FILLER = "\u3164"
HALFWIDTH_HANGUL_FILLER = "\uffa0"
MYANMAR_ZERO = "\u1040"
DOTLESS_I = "\u0131"
SMALL_CAPITAL_A = "\u1d00"


def refused_name(name: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        check_name(name)
    assert info.value.code is ErrorCode.BAD_NAME, info.value
    return info.value


def refused_room(room: str) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        check_room(room)
    assert info.value.code is ErrorCode.BAD_ROOM, info.value
    return info.value


# ---------------------------------------------------------------------------
# One name, many spellings: the skeleton key


@pytest.mark.parametrize(
    "twin",
    [
        "ALICE",
        "\uff41\uff4c\uff49\uff43\uff45",  # fullwidth
        "\U0001d41a\U0001d425\U0001d422\U0001d41c\U0001d41e",  # mathematical bold
        f"al{DOTLESS_I}ce",
        "a|ice",  # a vertical line for the l
        "aIice",  # a capital i for the l
        "al1ce",
        "AL\u0399CE",  # a Greek capital iota: refused by check_name, its key is still alice's
    ],
)
def test_look_alikes_share_the_key_of_the_real_name(twin: str) -> None:
    assert name_key(twin) == name_key("alice")


def test_digits_that_pass_for_letters_share_the_key() -> None:
    # The skeleton maps 0 to O: b0b is BOB in capitals, and BOB is bob.
    assert name_key("B0B") == name_key("b0b") == name_key("bob") == name_key("BOB")
    assert name_key("bob_1") == name_key("bob_l") == name_key("bob_I") == name_key("BOB_i")
    assert name_key("m") == name_key("rn") == name_key("RN")


def test_a_whole_script_look_alike_shares_the_key() -> None:
    # All Cyrillic, so no script mix to refuse: a name of its own, but not beside paypal.
    cyrillic = "\u0440\u0430\u0443\u0440\u0430\u0456"
    assert check_name(cyrillic) == cyrillic
    assert name_key(cyrillic) == name_key("paypal")


def test_different_names_keep_different_keys() -> None:
    keys = {name_key(n) for n in ["alice", "alicia", "bob", "Дмитрий", "田中", "Zoë", "Zoe"]}
    assert len(keys) == 7


def test_the_shown_name_is_the_users_own_spelling() -> None:
    assert check_name("ALICE") == "ALICE"
    assert check_name(f"al{DOTLESS_I}ce") == f"al{DOTLESS_I}ce"
    assert check_name("\uff21lice") == "Alice"  # NFKC, not the key


def test_name_key_is_cached() -> None:
    name_key.cache_clear()
    name_key("carol")
    name_key("carol")
    info = name_key.cache_info()
    assert (info.hits, info.misses) == (1, 1)


# ---------------------------------------------------------------------------
# What is refused, and why


@pytest.mark.parametrize(
    "name",
    [
        "alice" + HANGUL_FILLER,
        "alice" + HALFWIDTH_HANGUL_FILLER,
        HANGUL_FILLER * 3,  # a name made only of fillers
        HALFWIDTH_HANGUL_FILLER,
        "\u115f\u1160",  # the conjoining fillers themselves
        "ali\u200bce",  # zero-width space
        "alice\u200d",  # zero-width joiner
        "alice\ufe0f",  # variation selector
        "al\u00adice",  # soft hyphen
        "alice\u2060",  # word joiner
    ],
)
def test_invisible_characters_are_refused(name: str) -> None:
    assert "invisible" in refused_name(name).message


def test_a_digit_of_another_script_is_refused() -> None:
    assert "scripts" in refused_name(f"b{MYANMAR_ZERO}b").message


def test_characters_unicode_does_not_recommend_for_names_are_refused() -> None:
    # UTS #39 Identifier_Status: small capitals are "technical", Cherokee "limited use".
    assert "U+1D00" in refused_name(SMALL_CAPITAL_A + "lice").message
    assert "U+13DA" in refused_name("\u13daam").message


@pytest.mark.parametrize(
    "name",
    [
        "\u0301alice",  # a combining mark with nothing to sit on
        "ali\u0301\u0301ce",  # the same mark twice
        "abc\u0661",  # Latin then an Arabic-Indic digit: breaks the bidi rule
        "1\u0661",  # two digit systems
    ],
)
def test_marks_digits_and_directions_that_mislead_are_refused(name: str) -> None:
    refused_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "Дмитрий",
        "田中さん",
        "Ελένη",
        "محمد",
        "김민준",
        "अमित",  # a vowel sign (a combining mark) after its letter
        "தமிழ்",
        "José-Luis",
        "a_b-c.d[e]f{g}h^i|j",
        "x" * 32,
        "e\u0301" * 20,  # 40 code points, 20 letters once composed
    ],
)
def test_names_in_one_script_are_welcome(name: str) -> None:
    assert check_name(name)


def test_allowed_ascii_passes_every_unicode_check() -> None:
    # check_identifier skips PRECIS and ICU for ASCII: that must change no answer.
    ascii_name = "azAZ09" + validation._NAME.punct
    validation._USERNAME.enforce(ascii_name)
    assert validation._NAME.checker.check(ascii_name) == 0
    ascii_room = "azAZ09" + validation._ROOM.punct
    assert validation._ROOM.checker.check(ascii_room) == 0


@given(st.text(max_size=40))
def test_an_accepted_name_is_accepted_again_unchanged(value: str) -> None:
    try:
        name = check_name(value)
    except ProtocolError as exc:
        assert exc.code is ErrorCode.BAD_NAME
        return
    assert check_name(name) == name
    assert name_key(name) == name_key(value)


# ---------------------------------------------------------------------------
# Rooms: the canonical form is what is bounded


def test_a_room_that_grows_when_folded_is_bounded_by_its_folded_form() -> None:
    refused_room("ß" * 20)  # 40 characters once folded
    canonical = check_room("ß" * 16)
    assert canonical == "s" * 32
    for spelling in ("ß" * 16, "ẞ" * 16, "SS" * 16, canonical, "#" + canonical):
        assert check_room(spelling) == canonical


def test_a_decomposed_spelling_longer_than_32_is_the_same_room() -> None:
    assert check_room("e\u0301" * 20) == check_room("é" * 20) == "é" * 20


@pytest.mark.parametrize("room", ["dev\u200b", "d\u00adev", HANGUL_FILLER, "dev\ufe0f"])
def test_invisible_characters_are_refused_in_rooms(room: str) -> None:
    assert "invisible" in refused_room(room).message


@given(st.text(max_size=40))
def test_an_accepted_room_is_accepted_in_its_canonical_spelling(value: str) -> None:
    try:
        room = check_room(value)
    except ProtocolError as exc:
        assert exc.code is ErrorCode.BAD_ROOM
        return
    assert 1 <= len(room) <= 32
    assert check_room(room) == room
    assert check_room("#" + room) == room
