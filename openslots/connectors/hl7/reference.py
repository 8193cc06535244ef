"""The same extraction as `parser`, read from hl7apy's own parse tree: the reference the fast
path is tested against. About 100x slower; not used on the hot path."""

from __future__ import annotations

from typing import Any

from openslots.connectors.hl7 import parser as fast
from openslots.connectors.hl7.parser import Appointment, Encoding, Patient


def _parse(text: str) -> Any:
    from hl7apy.parser import parse_message

    normalised = "\r".join(fast.SEGMENT_SPLIT.split(text.strip()))
    return parse_message(normalised, find_groups=False)


def _text(value: Any) -> str:
    """hl7apy gives str for most values and datatype objects (ST, ...) for some."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return str(value.to_er7()) if hasattr(value, "to_er7") else str(value)


class _Tree:
    """Positional access to hl7apy elements: field n, repetition, component n, subcomponent."""

    def __init__(self, message: Any):
        self.message = message
        chars = _text(message.msh.msh_2.value)
        separator = _text(message.msh.msh_1.value)
        self.encoding = Encoding(separator, chars[0], chars[1], chars[2], chars[3])

    def segments(self, name: str) -> list[Any]:
        return [s for s in self.message.children if s.name == name]

    def first(self, name: str) -> Any | None:
        found = self.segments(name)
        return found[0] if found else None

    def reps(self, segment: Any | None, number: int) -> list[Any]:
        if segment is None:
            return []
        name = f"{segment.name}_{number}"
        return [child for child in segment.children if child.name == name]

    def comp(self, rep: Any, number: int, sub: int = 1) -> str:
        if rep is None:
            return ""
        children = [c for c in rep.children if "_" in c.name]
        if not children:  # a primitive field (its only child is its datatype): component 1
            return fast.unescape(_text(rep.value), self.encoding) if (number, sub) == (1, 1) else ""
        match = [c for c in children if c.name.endswith(f"_{number}")]
        if not match:
            return ""
        component = match[0]
        # Subcomponents are named like FN_1 or HD_2; a leaf's only child is its datatype (ST).
        subs = [s for s in component.children if "_" in s.name]
        if subs:
            match_sub = [s for s in subs if s.name.endswith(f"_{sub}")]
            value = _text(match_sub[0].value) if match_sub else ""
        else:
            value = _text(component.value) if sub == 1 else ""
        return fast.unescape(value, self.encoding)


def _ids(tree: _Tree, segment: Any, number: int) -> list[fast.Identifier]:
    return [
        fast.Identifier(tree.comp(rep, 1), tree.comp(rep, 4), tree.comp(rep, 5).upper())
        for rep in tree.reps(segment, number)
        if tree.comp(rep, 1)
    ]


def _contacts(tree: _Tree, segment: Any, *numbers: int) -> tuple[str, str]:
    email = phone = cell = ""
    for number in numbers:
        for rep in tree.reps(segment, number):
            use, kind = tree.comp(rep, 2).upper(), tree.comp(rep, 3).upper()
            address = tree.comp(rep, 4)
            if address and (use == "NET" or kind in ("INTERNET", "X.400") or "@" in address):
                email = email or address
                continue
            area, local = tree.comp(rep, 6), tree.comp(rep, 7)
            value = f"{area}{local}" if local else tree.comp(rep, 1)
            if not value:
                continue
            if kind == "CP" or use == "PRS":
                cell = cell or value
            phone = phone or value
    return email, cell or phone


def _name(tree: _Tree, segment: Any, number: int) -> tuple[str, str]:
    reps = tree.reps(segment, number)
    return (tree.comp(reps[0], 1), tree.comp(reps[0], 2)) if reps else ("", "")


def _doctor(tree: _Tree, segment: Any, number: int) -> tuple[str, str]:
    reps = tree.reps(segment, number)
    rep = reps[0] if reps else None
    name = " ".join(p for p in (tree.comp(rep, 3), tree.comp(rep, 2)) if p)
    return tree.comp(rep, 1), name


def _place(tree: _Tree, segment: Any, number: int) -> str:
    reps = tree.reps(segment, number)
    rep = reps[0] if reps else None
    return tree.comp(rep, 4) or tree.comp(rep, 1)


def reference_patient(text: str, authority: str | None = None) -> Patient:
    tree = _Tree(_parse(text))
    pid = tree.first("PID")
    family, given = _name(tree, pid, 5)
    email, phone = _contacts(tree, pid, 13, 14)
    dob_reps = tree.reps(pid, 7)
    patient = Patient(
        mrn=fast.choose_mrn(_ids(tree, pid, 3), authority),
        family=family,
        given=given,
        dob=tree.comp(dob_reps[0], 1)[:8] if dob_reps else "",
        email=email,
        phone=phone,
    )
    nk1s = tree.segments("NK1")
    guardian = next(
        (
            n
            for n in nk1s
            if (tree.comp((tree.reps(n, 3) or [None])[0], 1).upper() in fast.GUARDIAN_RELATIONSHIPS)
        ),
        nk1s[0] if nk1s else None,
    )
    if guardian is not None:
        patient.guardian_family, patient.guardian_given = _name(tree, guardian, 2)
        patient.guardian_email, patient.guardian_phone = _contacts(tree, guardian, 5, 6)
    pv1 = tree.first("PV1")
    patient.provider_id, patient.provider_name = _doctor(tree, pv1, 7)
    patient.location = _place(tree, pv1, 3)
    mrg = tree.first("MRG")
    if mrg is not None:
        patient.merged_mrn = fast.choose_mrn(_ids(tree, mrg, 1), authority)
    return patient


def reference_appointment(text: str, authority: str | None = None) -> Appointment:
    tree = _Tree(_parse(text))
    sch, ais = tree.first("SCH"), tree.first("AIS")

    def first_comp(segment: Any, number: int, component: int = 1) -> str:
        reps = tree.reps(segment, number)
        return tree.comp(reps[0], component) if reps else ""

    filler = first_comp(sch, 2) or first_comp(sch, 1)
    start = first_comp(ais, 4)
    duration_text, units = first_comp(ais, 7), first_comp(ais, 8).upper()
    if not start:
        start = first_comp(tree.first("TQ1"), 7)
    if not start:
        start = first_comp(sch, 11, 4)
    if not duration_text:
        duration_text = first_comp(sch, 9)
        units = units or first_comp(sch, 10).upper()
    duration = None
    if duration_text.isdigit():
        duration = int(duration_text) * (60 if units.startswith(("H", "HR")) else 1)
    provider_id, provider_name = _doctor(tree, tree.first("AIP"), 3)
    location = _place(tree, tree.first("AIL"), 3)
    visit_code = first_comp(ais, 3)
    pid = tree.first("PID")
    mrn = "" if pid is None else fast.choose_mrn(_ids(tree, pid, 3), authority)
    return Appointment(
        filler, start, duration, provider_id, provider_name, location, visit_code, mrn
    )
