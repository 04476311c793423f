"""The load generator of the local platform: keeps the business registers changing the way a
department's daily work does — residents move house, newborns are registered, people leave the
register (and some come back); companies change status, new ones are registered, some are struck off.

    python -m local_platform.load --residents 10000 --entities 2000 [--interval 1] [--changes 6]

Started in the background by `make up` (pid in build/local/load/load.pid, one line a minute in its
log), stopped by `make down`.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from local_platform import business, processes
from local_platform.sample_data import TOWNS, legal_entity, resident
from local_platform.state import LocalState
from local_platform.topology import LEGAL_ENTITY, POPULATION, provider_of

STATUSES = ["存续", "在业", "迁出", "吊销", "注销"]


def pid_file(state: LocalState) -> Path:
    return state.root / "load" / "load.pid"


def start(state: LocalState, *, residents: int, entities: int) -> None:
    processes.stop(pid_file(state))
    processes.spawn(
        pid_file(state),
        state.root / "load" / "load.log",
        [sys.executable, "-m", "local_platform.load", "--state", str(state.root),
         "--residents", str(residents), "--entities", str(entities)],
    )  # fmt: skip


def stop(state: LocalState) -> None:
    processes.stop(pid_file(state))


def change_residents(conn: Any, rng: random.Random, population: int, changes: int) -> int:
    """Upserts and now and then a deletion; serials run 5% past the seeded ones, so rows appear too."""
    done = 0
    for _ in range(changes):
        n = rng.randrange(int(population * 1.05) + 1)
        if rng.random() < 0.1:
            conn.execute("DELETE FROM population WHERE id_number = %s", (resident(n)["id_number"],))
        else:
            person = resident(n)
            conn.execute(
                """
                INSERT INTO population (id_number, name, gender, birth_date, address, household_size)
                VALUES (%s, %s, %s, %s, %s, %s)
                ON CONFLICT (id_number) DO UPDATE SET address = EXCLUDED.address,
                    household_size = EXCLUDED.household_size
                """,
                (person["id_number"], person["name"], person["gender"], person["birth_date"],
                 f"张家港市{rng.choice(TOWNS)}{rng.randint(1, 300)}号", rng.randint(1, 6)),
            )  # fmt: skip
        done += 1
    return done


def change_entities(conn: Any, rng: random.Random, entities: int, changes: int) -> int:
    done = 0
    with conn.cursor() as cur:
        for _ in range(changes):
            n = rng.randrange(int(entities * 1.05) + 1)
            entity = legal_entity(n)
            if rng.random() < 0.05:
                cur.execute("DELETE FROM legal_entity WHERE credit_code = %s", (entity["credit_code"],))
            else:
                cur.execute(
                    """
                    INSERT INTO legal_entity (credit_code, name, legal_representative, registered_capital,
                        established, status)
                    VALUES (%s, %s, %s, %s, %s, %s)
                    ON DUPLICATE KEY UPDATE status = VALUES(status), registered_capital = VALUES(registered_capital)
                    """,
                    (entity["credit_code"], entity["name"], entity["legal_representative"],
                     rng.randint(10, 5000) * 10_000, entity["established"], rng.choice(STATUSES)),
                )  # fmt: skip
            done += 1
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local_platform.load", description=__doc__.splitlines()[0])
    parser.add_argument("--state", default=str(LocalState().root), help="the local platform's state folder")
    parser.add_argument("--residents", type=int, required=True, help="residents seeded (serials 0..N-1)")
    parser.add_argument("--entities", type=int, required=True, help="legal entities seeded")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between rounds (default 1)")
    parser.add_argument("--changes", type=int, default=6, help="rows changed per register per round (default 6)")
    args = parser.parse_args(argv)
    state = LocalState(root=Path(args.state))
    stopping = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    rng = random.Random()  # noqa: S311 - sample changes, not secrets
    gaj, scjgj = provider_of(POPULATION).business_db, provider_of(LEGAL_ENTITY).business_db
    assert gaj is not None
    assert scjgj is not None
    total, failures, reported = 0, 0, time.monotonic()
    while not stopping:
        try:
            with business.connect(gaj, state) as pg, business.connect(scjgj, state) as my:
                while not stopping:
                    total += change_residents(pg, rng, args.residents, args.changes)
                    total += change_entities(my, rng, args.entities, args.changes)
                    if time.monotonic() - reported >= 60:
                        print(f"load: {total} changes so far", flush=True)
                        reported = time.monotonic()
                    time.sleep(args.interval)
        except Exception as exc:  # a database away for a while (the e2e test cuts links): retry
            failures += 1
            print(f"load: {type(exc).__name__}: {exc}; retrying in 5 s", flush=True)
            time.sleep(5)
    print(f"load: stopped after {total} changes ({failures} connection failures)", flush=True)


if __name__ == "__main__":
    main()
