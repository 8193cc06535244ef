"""Synthetic rosters for the demo and the benchmarks: made-up people, seeded, never real.

Phone numbers use the 555-01xx range reserved for fiction where the region allows, emails the
reserved example.org domain.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from openslots.domain import clock

FIRST = (
    "Ana",
    "Ben",
    "Chloé",
    "Dmitri",
    "Eve",
    "Farah",
    "Gus",
    "Hana",
    "Iker",
    "Jo",
    "Kai",
    "Lena",
    "Maël",
    "Nia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sven",
    "Tariq",
    "Uma",
    "Vik",
    "Wen",
    "Xavi",
    "Yara",
    "Zoë",
)
LAST = (
    "Abbott",
    "Bauer",
    "Castillo",
    "D'Souza",
    "Eriksen",
    "Fischer",
    "García",
    "Haddad",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lefèvre",
    "Müller",
    "Nakamura",
    "O'Neill",
    "Petrov",
    "Quint",
    "Rossi",
    "Smith-Jones",
    "Tanaka",
    "Ueda",
    "Varga",
    "Weiß",
    "Xu",
    "Yilmaz",
    "Zhou",
)
HEADER = [
    "Client ID",
    "First Name",
    "Last Name",
    "Date of Birth",
    "Email",
    "Mobile Phone",
    "Guardian First Name",
    "Guardian Last Name",
]
# US area codes that phonenumbers accepts as mobile-capable; 555-01xx stays fictional.
AREA_CODES = ("212", "312", "415", "617", "646", "702", "713", "808", "917", "971")


@dataclass(frozen=True)
class SyntheticPerson:
    client_id: str
    first_name: str
    last_name: str
    date_of_birth: str
    email: str
    mobile_phone: str
    guardian_first_name: str = ""
    guardian_last_name: str = ""

    def row(self) -> list[str]:
        return [
            self.client_id,
            self.first_name,
            self.last_name,
            self.date_of_birth,
            self.email,
            self.mobile_phone,
            self.guardian_first_name,
            self.guardian_last_name,
        ]


def people(
    count: int,
    seed: int = 7,
    id_prefix: str = "",
    dependents: float = 0.1,
    phone_share: float = 0.7,
) -> Iterator[SyntheticPerson]:
    """`count` distinct synthetic clients; Client IDs are zero-padded to keep leading zeros."""
    rng = random.Random(seed)
    width = max(6, len(str(count)))
    today = clock.today()
    for n in range(1, count + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        dependent = rng.random() < dependents
        age_days = rng.randint(365, 17 * 365) if dependent else rng.randint(18 * 365, 95 * 365)
        dob = (today - dt.timedelta(days=age_days)).isoformat()
        phone = ""
        if rng.random() < phone_share:
            phone = f"({rng.choice(AREA_CODES)}) 555-01{n % 100:02d}"
        email = f"{first.lower()}.{last.lower()}.{id_prefix}{n}@example.org"
        email = email.encode("ascii", "ignore").decode().replace("'", "")
        if dependent:
            yield SyntheticPerson(
                f"{id_prefix}{n:0{width}d}", first, last, dob, email, phone, rng.choice(FIRST), last
            )
        else:
            yield SyntheticPerson(f"{id_prefix}{n:0{width}d}", first, last, dob, email, phone)


def write_roster(path: Path, rows: Iterator[list[str]] | list[list[str]]) -> int:
    """Write a roster CSV with the template header; returns the number of data rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


def messy_rows() -> list[list[str]]:
    """Rows an Excel export really contains, each wrong in one documented way."""
    return [
        ["900001", "Mara", "Quint", "03/04/1971", "mara.q@example.org", "", "", ""],  # US date
        ["900002", "", "Bauer", "1980-05-06", "no.first@example.org", "", "", ""],  # no name
        ["900003", "Theo", "Ito", "1981-02-30", "theo.ito@example.org", "", "", ""],  # Feb 30
        ["900004", "Lou", "Rossi", "1979-01-01", "lou.rossi.example.org", "", "", ""],  # email
        ["900005", "Ida", "Varga", "2090-01-01", "ida.varga@example.org", "", "", ""],  # future
        ["900006", "Sam", "Xu", "1988-08-08", "sam.xu@example.org", "12345", "", ""],  # phone
        [
            "900007",
            "Pia",
            "Zhou",
            "2015-06-01",
            "pia.parent@example.org",
            "",
            "Lin",
            "",
        ],  # guardian
    ]
