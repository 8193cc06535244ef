"""The plain path (`Message.plain`: no escape, subcomponent or `""` after MSH-2) reads what the
general path reads: the header and the patient of generated ADT messages, field by field.

Generated messages mix custom separators, repetitions, missing and extra components, empty
fields, several NK1s, MRG, Z-segments and, in some, the characters that make a message not
plain (so both paths run; the general one is the reference).
"""

from __future__ import annotations

from dataclasses import asdict

from hypothesis import given, settings
from hypothesis import strategies as st

from openslots.connectors.hl7.parser import Message, extract_patient, identifiers, parse
from tests import hl7_messages as m

SEPARATORS = [("|", "^~\\&"), ("#", "$%\\*")]
TEXT = st.text(alphabet=st.sampled_from("aZé0 9@.-_"), max_size=5)
ODD = st.sampled_from(["\\", '""', "&", "*", "\\F\\", "\\X41\\"])


def _general(message: Message) -> Message:
    """The same tokens, read by the general path."""
    return Message(message.encoding, message.segments, message.text, plain=False)


@st.composite
def adt_text(draw: st.DrawFn) -> str:
    field, chars = draw(st.sampled_from(SEPARATORS))
    comp, rep = chars[0], chars[1]
    odd = draw(st.booleans()) and draw(st.integers(0, 3)) == 0

    def value() -> str:
        text = draw(TEXT)
        if odd and draw(st.booleans()):
            text += draw(ODD)
        return text

    def components(low: int, high: int) -> str:
        return comp.join(value() for _ in range(draw(st.integers(low, high))))

    def repeated(low: int, high: int, most: int = 3) -> str:
        return rep.join(components(low, high) for _ in range(draw(st.integers(0, most))))

    def segment(name: str, fields: int) -> str:
        return field.join([name, *(repeated(0, 8) for _ in range(draw(st.integers(0, fields))))])

    event = draw(st.sampled_from(["A04", "A08", "A28", "A40", "A31"]))
    kind = comp.join(draw(st.sampled_from([["ADT", event], ["ADT", event, "ADT_A01"], ["ADT"]])))
    msh = [components(0, 2), components(0, 2), value(), value(), components(0, 2), value()]
    msh += [kind, components(1, 2), value(), components(1, 2)]  # MSH-10: one component or more
    msh += [value() for _ in range(draw(st.integers(0, 7)))]
    segments = [f"MSH{field}{chars}{field}" + field.join(msh[: draw(st.integers(6, len(msh)))])]
    segments.append(f"EVN{field}{event}")
    pid = ["1", "", repeated(1, 6), "", repeated(0, 4, 2), "", components(0, 2)]
    pid += ["", "", "", "", "", repeated(0, 8), repeated(0, 8), value()]
    if draw(st.integers(0, 9)):
        segments.append(field.join(["PID", *pid[: draw(st.integers(0, len(pid)))]]))
    for _ in range(draw(st.integers(0, 3))):
        relation = draw(st.sampled_from(["MTH", "fth", "GRD", "SPO", "", value()]))
        nk1 = ["1", repeated(0, 3, 2), relation + comp + value(), "", "", repeated(0, 8)]
        nk1 += [repeated(0, 8)]
        segments.append(field.join(["NK1", *nk1[: draw(st.integers(0, len(nk1)))]]))
    if draw(st.booleans()):
        segments.append(segment("PV1", 9))
    if event == "A40" or draw(st.integers(0, 4)) == 0:
        segments.append(field.join(["MRG", repeated(0, 6)]))
    if draw(st.booleans()):
        segments.append(segment("ZPD", 3))
    return draw(st.sampled_from(["\r", "\n", "\r\n"])).join(segments)


@settings(max_examples=300, deadline=None)
@given(adt_text(), st.sampled_from([None, "NORTH", "a"]))
def test_the_plain_path_reads_what_the_general_path_reads(text: str, authority: str | None) -> None:
    message = parse(text)
    general = _general(message)
    assert message.header == general.header
    assert asdict(extract_patient(message, authority)) == asdict(
        extract_patient(general, authority)
    )


def test_plain_is_decided_by_what_follows_msh_2() -> None:
    assert parse(m.EPIC_A04).plain
    assert not parse(m.CUSTOM_SEPARATORS_A31).plain  # escapes in PID-11
    assert not parse(m.EPIC_A04.replace("|F|", '|""|', 1)).plain
    assert not parse(m.EPIC_A04.replace("Inés", "In&es", 1)).plain


def test_every_sample_message_reads_the_same_either_way() -> None:
    for text in m.ALL_ADT:
        message = parse(text)
        assert message.header == _general(message).header
        assert asdict(extract_patient(message)) == asdict(extract_patient(_general(message)))


@settings(max_examples=200, deadline=None)
@given(adt_text())
def test_plain_identifiers_are_the_general_ones(text: str) -> None:
    message = parse(text)
    for segment in message.all("PID") + message.all("MRG"):
        for number in (1, 3):
            value = message.field(segment, number)
            assert identifiers(message, value) == identifiers(_general(message), value)
