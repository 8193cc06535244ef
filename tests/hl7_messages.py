"""HL7 v2 test messages written for these tests (synthetic patients), each imitating an EHR style.

Named constants built with "\\r".join(...), as python-hl7 does; a few use other separators on
purpose, as real feeds do.
"""

from __future__ import annotations

# Epic-style ADT^A04: typed identifiers (MR beside SS), email as NET/Internet, a cell phone,
# PV1 attending doctor and assigned location, UTF-8 declared in MSH-18, accented name.
EPIC_A04 = "\r".join(
    [
        "MSH|^~\\&|EPIC|NORTHCLINIC|OPENSLOTS|OS|20261126120000||ADT^A04^ADT_A01|EPC0001|P|2.5.1"
        "|||||||UNICODE UTF-8",
        "EVN|A04|20261126120000",
        "PID|1||E1001^^^NORTH^MR~999-00-1111^^^SSA^SS||Núñez^Inés^M||19800102|F|||"
        "1 Main St^^Town^NY||^PRN^PH^^1^212^5550102~^PRN^CP^^1^917^5550147"
        "~^NET^Internet^ines.n@example.org",
        "PV1|1|O|CARDIO^101^1^NORTHCLINIC||||D77^Rivera^Maria^^^Dr|||||||||||V1",
    ]
)

# Cerner-style ADT^A08 with LF separators: one untyped identifier, no email, an old-style
# phone in XTN.1, no PV1 doctor.
CERNER_A08 = "\n".join(
    [
        "MSH|^~\\&|CERNER|SOUTHHOSP|OPENSLOTS|OS|202611261205||ADT^A08|CRN-88|P|2.3",
        "EVN|A08|202611261205",
        "PID|1||C2002||Okafor^Chidi||19751231|M|||||(212)555-0188",
        "PV1|1|I|WARD7^12^B^SOUTHHOSP",
    ]
)

# Meditech-style ADT^A28 for a minor: NK1 mother with her own email and cell; CRLF separators
# and a Z-segment.
MEDITECH_A28_MINOR = "\r\n".join(
    [
        "MSH|^~\\&|MEDITECH|KIDSCARE|OPENSLOTS|OS|20261126121000||ADT^A28^ADT_A05|MT-3003|P|2.4",
        "EVN|A28|20261126121000",
        "PID|1||K3003^^^KIDS^MR||Lindqvist^Alva||20190615|F",
        "NK1|1|Lindqvist^Karin|MTH^Mother|||^NET^Internet^karin.l@example.org~^PRN^CP^^^646^5550133",
        "PV1|1|O|PEDS^^^KIDSCARE||||D12^Osei^Kwame",
        "ZPD|custom|data",
    ]
)

# A feed with its own separators (MSH-1 '#', MSH-2 '$%\\*'), an escaped separator in PID-11.
CUSTOM_SEPARATORS_A31 = "\r".join(
    [
        "MSH#$%\\*#LEGACY#EASTSIDE#OPENSLOTS#OS#20261126122000##ADT$A31#LG-4004#P#2.5",
        "PID#1##L4004$$$EAST$MR##O'Neil-Jones$Pat##19600229#U###Unit 4\\F\\B$$Eastville",
        "PV1#1#O#ORTHO$$$EASTSIDE####D3$Haddad$Samir",
    ]
)

# ADT^A40 merge: the patient now known as M5005 was M5999.
MERGE_A40 = "\r".join(
    [
        "MSH|^~\\&|EPIC|NORTHCLINIC|OPENSLOTS|OS|20261126123000||ADT^A40^ADT_A39|EPC0040|P|2.5.1",
        "EVN|A40|20261126123000",
        "PID|1||M5005^^^NORTH^MR||Berg^Ola||19700101",
        "MRG|M5999^^^NORTH^MR",
    ]
)

SIU_TEMPLATE = "\r".join(
    [
        "MSH|^~\\&|EPIC|NORTHCLINIC|OPENSLOTS|OS|20261126124000||SIU^{event}^SIU_S12|{control}|P|2.5.1",
        "SCH|{placer}|{filler}^EPIC|||||ROUTINE|||||||||||||||||BOOKED",
        "AIS|1||CHECKUP^Checkup|{start}|||30|MIN",
        "AIP|1||D77^Rivera^Maria^^^Dr",
        "AIL|1||CARDIO^101^1^NORTHCLINIC",
    ]
)


def siu(event: str, filler: str, start: str, control: str) -> str:
    return SIU_TEMPLATE.format(
        event=event, filler=filler, start=start, control=control, placer="P" + filler
    )


SIU_S12_BOOKED = siu("S12", "APT1", "202612011000", "SIU-1")
SIU_S15_CANCELLED = siu("S15", "APT1", "202612011000", "SIU-2")
SIU_S17_DELETED = siu("S17", "APT2", "202612021400", "SIU-3")
SIU_S13_RESCHEDULED = siu("S13", "APT3", "202612031500", "SIU-4")
SIU_S26_NO_SHOW = siu("S26", "APT4", "202611201000", "SIU-5")

# Latin-1 bytes, declared in MSH-18 (8859/1).
LATIN1_A04 = "\r".join(
    [
        "MSH|^~\\&|OLDSYS|WESTCLINIC|OPENSLOTS|OS|20261126125000||ADT^A04|OLD-6006|P|2.3|||||||8859/1",
        "PID|1||W6006^^^WEST^MR||Müller^Jürgen||19550505|M|||||^PRN^PH^^^415^5550166",
        "PV1|1|O|GEN^^^WESTCLINIC||||D9^Weiß^Anna",
    ]
).encode("latin-1")

# Discharge: no new demographics (acknowledged, ignored).
DISCHARGE_A03 = "\r".join(
    [
        "MSH|^~\\&|EPIC|NORTHCLINIC|OPENSLOTS|OS|20261126126000||ADT^A03|EPC0003|P|2.5.1",
        "PID|1||E1001^^^NORTH^MR||Núñez^Inés||19800102",
    ]
)

LAB_RESULT = "\r".join(
    [
        "MSH|^~\\&|LAB|NORTHCLINIC|OPENSLOTS|OS|20261126127000||ORU^R01|LAB-1|P|2.5.1",
        "PID|1||E1001^^^NORTH^MR||Núñez^Inés||19800102",
        "OBR|1",
    ]
)

# Interface-engine-style ADT^A01 (as in Aidbox's test fixtures): phones split into XTN.6 area
# code and XTN.7 local number, zero-padded; hl7apy reads those as numbers (not in ALL_ADT).
ZERO_PADDED_A01 = "\r".join(
    [
        "MSH|^~\\&|LAB|HOSP|OPENSLOTS|HOSP|20260301101500||ADT^A01^ADT_A01|ZP0001|P|2.5",
        "PID|1||Z7001^^^HOSP^MR||Zeroes^Paddy||19900101||||||^PRN^PH^^1^555^0000001",
        "NK1|1|Zeroes^Guardian|PAR||^PRN^PH^^1^0555^0001234",
    ]
)

ALL_ADT = [EPIC_A04, CERNER_A08, MEDITECH_A28_MINOR, CUSTOM_SEPARATORS_A31, MERGE_A40]
ALL_SIU = [SIU_S12_BOOKED, SIU_S15_CANCELLED, SIU_S17_DELETED, SIU_S13_RESCHEDULED, SIU_S26_NO_SHOW]

# Epic-style ADT^A04 whose family name carries a suffix after a comma, the way registration
# clerks type it ("King, Jr."), and a birth date with time and UTC offset (DTM).
SUFFIX_NAME_A04 = "\r".join(
    [
        "MSH|^~\\&|EPIC|NORTHCLINIC|OPENSLOTS|OS|20261126130000||ADT^A04^ADT_A01|EPC0100|P|2.5.1",
        "PID|1||E1100^^^NORTH^MR||King, Jr.^Martin||198001021230+0100|M|||||^PRN^CP^^1^917^5550148",
        "PV1|1|O|CARDIO^101^1^NORTHCLINIC||||D77^Rivera^Maria^^^Dr",
    ]
)

# A go-live test patient as interface vendors' test scripts register them: digits in the
# names (TEST1), which a roster row may not have and an EHR feed may.
TEST_PATIENT_A01 = "\r".join(
    [
        "MSH|^~\\&|SENDER|FACILITY|OPENSLOTS|OS|20261126131000||ADT^A01^ADT_A01|TST-1|P|2.5.1",
        "PID|1||T9001^^^HOSPITAL^MR||TEST1^PATIENT2||19900515|F",
    ]
)

# A practice-management system that puts a phone number in the NET/Internet entry's address
# (XTN-4) and a home number too short to be anyone's mobile: both contacts are junk.
JUNK_CONTACT_A08 = "\r".join(
    [
        "MSH|^~\\&|PMSYS|WESTCLINIC|OPENSLOTS|OS|20261126132000||ADT^A08^ADT_A08|PM-77|P|2.5.1",
        "PID|1||W7007^^^WEST^MR||Haddad^Leila||19850707|F|||||^PRN^PH^^^^555"
        "~^NET^Internet^5553331234",
        "PV1|1|O|GEN^^^WESTCLINIC||||D9^Weiß^Anna",
    ]
)

# Redox-style ADT^A04: PID-3 repeats identifiers without type codes (the authority names
# MR/EHRID instead): no way to tell which one is the MRN.
UNTYPED_IDENTIFIERS_A04 = "\r".join(
    [
        "MSH|^~\\&|REDOX|RDX|OPENSLOTS|OS|20261126133000||ADT^A04|RDX-1|T|2.3",
        "PID|||0000000042^^^MR~f00d-cafe^^^EHRID||Bixby^Tim||20080106|M",
    ]
)

# A batch file as interface engines write them: FHS/BHS headers, two messages, BTS/FTS.
BATCH_FILE = "\r".join(
    [
        "FHS|^~\\&|ENGINE|NORTHCLINIC|OPENSLOTS|OS|20261126134000",
        "BHS|^~\\&|ENGINE|NORTHCLINIC|OPENSLOTS|OS|20261126134000",
        EPIC_A04,
        MERGE_A40,
        "BTS|2",
        "FTS|1",
    ]
)
