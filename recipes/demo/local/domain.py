"""The demo's closed domain: spoken commands to a voice assistant, drawn from a small grammar.

    python recipes/demo/local/domain.py --out sentences.txt [--n 40000] [--seed 0]

writes N distinct upper-case sentences, one per line, such as

    CALL DIANA AT FIVE SEVEN SEVEN TWO ONE
    SET AN ALARM FOR SEVEN FORTY FIVE ON SATURDAY
    TURN OFF THE HEATER IN THE LIVING ROOM

About 200 words over 16 templates: names, digit strings, times, days, dates, numbers, rooms,
devices and places. Ten minutes of labels hold each word many times, while the templates' slots
make far more word combinations than any split uses, so `w2v prepare synth` (which keeps the
dev and test sentences disjoint from training) gives dev and test sentences never heard in
training. The same list, without the dev and test sentences, is the demo's LM text.
"""

from __future__ import annotations

import argparse
import os
import random
from pathlib import Path

NAMES = ("ALICE BRIAN CAROL DIANA EDWARD FIONA GEORGE HANNAH ISAAC JULIA KEVIN LAURA MARTIN NORA "
         "OSCAR PETER RACHEL SIMON TERESA VICTOR WENDY HELEN DANIEL SOPHIE").split()
DIGITS = "ZERO ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE".split()
HOURS = "ONE TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE".split()
MINUTES = ["O'CLOCK", "FIFTEEN", "THIRTY", "FORTY FIVE", "TEN", "TWENTY", "FIFTY", "FIVE"]
DAYS = "MONDAY TUESDAY WEDNESDAY THURSDAY FRIDAY SATURDAY SUNDAY TODAY TOMORROW".split()
MONTHS = "JANUARY FEBRUARY MARCH APRIL MAY JUNE JULY AUGUST SEPTEMBER OCTOBER NOVEMBER DECEMBER".split()
ORDINALS = ("FIRST SECOND THIRD FOURTH FIFTH SIXTH SEVENTH EIGHTH NINTH TENTH ELEVENTH TWELFTH "
            "THIRTEENTH FOURTEENTH FIFTEENTH SIXTEENTH SEVENTEENTH EIGHTEENTH NINETEENTH TWENTIETH").split()
ORDINALS += [f"TWENTY {o}" for o in ORDINALS[:9]] + ["THIRTIETH", "THIRTY FIRST"]
NUMBERS = ("TWO THREE FOUR FIVE SIX SEVEN EIGHT NINE TEN ELEVEN TWELVE FIFTEEN TWENTY "
           "TWENTY ONE TWENTY TWO TWENTY FIVE THIRTY FORTY FIFTY SIXTY").split(" ")
NUMBERS = ["TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE", "TEN", "ELEVEN", "TWELVE",
           "FIFTEEN", "EIGHTEEN", "TWENTY", "TWENTY ONE", "TWENTY TWO", "TWENTY FOUR", "THIRTY", "FORTY"]
ROOMS = ["KITCHEN", "BEDROOM", "LIVING ROOM", "BATHROOM", "GARAGE", "OFFICE", "HALLWAY", "GARDEN"]
DEVICES = ["LIGHTS", "HEATER", "FAN", "TELEVISION", "RADIO", "OVEN", "COFFEE MACHINE", "WASHING MACHINE"]
CITIES = "PARIS LONDON BOSTON CHICAGO DENVER MADRID BERLIN TOKYO SYDNEY DUBLIN".split()
GENRES = ["JAZZ", "ROCK", "CLASSICAL MUSIC", "THE NEWS", "A PODCAST", "SOME BLUES", "COUNTRY MUSIC"]
ERRANDS = ["BUY MILK", "CALL THE DOCTOR", "WATER THE PLANTS", "PAY THE RENT", "FEED THE CAT",
           "TAKE OUT THE TRASH", "BOOK A TAXI", "CHECK THE MAIL"]
MESSAGES = ["I WILL BE LATE", "I AM ON MY WAY", "CALL ME BACK", "SEE YOU SOON", "DINNER IS READY"]
THINGS = ["MEETING", "ALARM", "REMINDER", "APPOINTMENT"]


def _pick(rng: random.Random, xs) -> str:
    return rng.choice(xs)


def _digits(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(DIGITS) for _ in range(rng.randint(lo, hi)))


def _time(rng: random.Random) -> str:
    return f"{_pick(rng, HOURS)} {_pick(rng, MINUTES)}"


def _day(rng: random.Random) -> str:
    d = _pick(rng, DAYS)
    return d if d in ("TODAY", "TOMORROW") else f"ON {d}"


def _date(rng: random.Random) -> str:
    return f"ON {_pick(rng, MONTHS)} THE {_pick(rng, ORDINALS)}"


TEMPLATES = [
    lambda r: f"CALL {_pick(r, NAMES)}" + (f" AT {_digits(r, 3, 7)}" if r.random() < 0.6 else ""),
    lambda r: f"DIAL {_digits(r, 4, 8)}",
    lambda r: f"SEND A MESSAGE TO {_pick(r, NAMES)} SAYING {_pick(r, MESSAGES)}",
    lambda r: f"SET AN ALARM FOR {_time(r)}" + (f" {_day(r)}" if r.random() < 0.6 else ""),
    lambda r: f"TURN {_pick(r, ['ON', 'OFF'])} THE {_pick(r, DEVICES)} IN THE {_pick(r, ROOMS)}",
    lambda r: f"REMIND ME TO {_pick(r, ERRANDS)} AT {_time(r)} {_day(r)}",
    lambda r: f"WHAT IS THE WEATHER IN {_pick(r, CITIES)} {_day(r)}",
    lambda r: f"PLAY {_pick(r, GENRES)} IN THE {_pick(r, ROOMS)}",
    lambda r: f"SCHEDULE A MEETING WITH {_pick(r, NAMES)} {_date(r)} AT {_time(r)}",
    lambda r: f"SET THE TEMPERATURE IN THE {_pick(r, ROOMS)} TO {_pick(r, NUMBERS)} DEGREES",
    lambda r: f"BOOK A TABLE FOR {_pick(r, NUMBERS)} PEOPLE AT {_time(r)} {_day(r)}",
    lambda r: f"MY CODE IS {_digits(r, 4, 6)}",
    lambda r: f"CANCEL MY {_pick(r, THINGS)} {_day(r)}",
    lambda r: f"HOW LONG DOES IT TAKE TO GET TO {_pick(r, CITIES)}",
    lambda r: f"READ MY MESSAGES FROM {_pick(r, NAMES)}",
    lambda r: f"MOVE MY {_pick(r, THINGS)} WITH {_pick(r, NAMES)} TO {_pick(r, MONTHS)} THE {_pick(r, ORDINALS)}",
]


def sentences(n: int, seed: int = 0) -> list[str]:
    """`n` distinct sentences of the grammar, in a seeded order."""
    rng, seen, out = random.Random(seed), set(), []
    for _ in range(n * 50):
        s = _pick(rng, TEMPLATES)(rng)
        if s not in seen:
            seen.add(s)
            out.append(s)
            if len(out) == n:
                return out
    raise SystemExit(f"domain.py: the grammar made only {len(out)} distinct sentences of {n}")


def vocabulary() -> set[str]:
    """Every word the grammar can say."""
    words = set()
    for slot in (NAMES, DIGITS, HOURS, MINUTES, DAYS, MONTHS, ORDINALS, NUMBERS, ROOMS, DEVICES, CITIES, GENRES,
                 ERRANDS, MESSAGES, THINGS):
        for x in slot:
            words.update(x.split())
    for s in sentences(5000):
        words.update(s.split())
    return words


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=40000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)  # the quickstart writes exp/sentences.txt into a fresh clone
    lines = sentences(args.n, args.seed)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(s + "\n" for s in lines)
    os.replace(tmp, out)
    words = len({w for s in lines for w in s.split()})
    print(f"domain.py: wrote {len(lines)} sentences ({words} distinct words) to {out}")


if __name__ == "__main__":
    main()
