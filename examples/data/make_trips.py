#!/usr/bin/env python3
"""Generates examples/data/yellow_tripdata_sample.csv: a small, synthetic sample of NYC
yellow taxi trips with the columns and value formats of the TLC trip record files
(https://www.nyc.gov/site/tlc/about/tlc-trip-record-data.page), as the 2023 files look
when exported to CSV (pandas writes the nullable integer columns as `1.0`).

Two dates x twelve hours of pickups (24 chunks for the `generous_riders` example), about
40 trips per hour. The values are plausible, not real: fares follow the 2023 meter rates
roughly, tips are recorded mostly for card payments (payment_type 1), total_amount is the
sum of its components, and a few rows look like the awkward rows of the real files:
empty passenger_count / RatecodeID / store_and_fwd_flag / congestion_surcharge /
airport_fee with payment_type 0, refunds with negative amounts, and zero-total trips.

Deterministic: the same seed gives the same file, byte for byte.

    python3 examples/data/make_trips.py            # writes next to this script
    python3 examples/data/make_trips.py out.csv
"""

import csv
import math
import os
import random
import sys

SEED = 20230101
DATES = ["2023-01-01", "2023-01-02"]
HOURS = range(8, 20)  # 08h .. 19h: 12 hours per date

COLUMNS = [
    "VendorID", "tpep_pickup_datetime", "tpep_dropoff_datetime", "passenger_count",
    "trip_distance", "RatecodeID", "store_and_fwd_flag", "PULocationID", "DOLocationID",
    "payment_type", "fare_amount", "extra", "mta_tax", "tip_amount", "tolls_amount",
    "improvement_surcharge", "total_amount", "congestion_surcharge", "airport_fee",
]

# TLC taxi zones: busy Manhattan zones (pickups and drop-offs there pay the congestion
# surcharge), a few outer-borough zones, and the airports.
MANHATTAN = [4, 13, 43, 48, 50, 68, 79, 87, 90, 100, 107, 113, 114, 125, 140, 141, 142,
             143, 144, 148, 151, 161, 162, 163, 164, 170, 186, 229, 230, 231, 233, 234,
             236, 237, 238, 239, 246, 249, 261, 262, 263]
OUTER = [7, 25, 33, 65, 66, 74, 75, 97, 112, 145, 146, 181, 223, 255, 256, 260]
JFK, LGA = 132, 138
AIRPORTS = [JFK, LGA]


def pick(rng, weighted):
    """One value out of [(value, weight), ...], using rng.random() only."""
    total = sum(w for _, w in weighted)
    x = rng.random() * total
    for value, w in weighted:
        x -= w
        if x < 0:
            return value
    return weighted[-1][0]


def choice(rng, items):
    return items[int(rng.random() * len(items))]


def money(cents):
    """A dollar amount as the TLC CSVs print it: 14.2, 23.04, 0.0, -3.5."""
    return repr(round(cents / 100, 2))


def clock(date, seconds):
    """`2023-01-01 08:32:10` for `seconds` after midnight of `date` (may roll over)."""
    day = int(date[-2:]) + seconds // 86400
    seconds %= 86400
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{date[:-2]}{day:02d} {h:02d}:{m:02d}:{s:02d}"


def trip(rng, date, hour):
    pickup = hour * 3600 + int(rng.random() * 3600)
    vendor = pick(rng, [(2, 0.72), (1, 0.28)])
    unknown = rng.random() < 0.03  # the rows with no passenger count, as in the real files
    airport = rng.random() < 0.07

    if airport:
        pu = choice(rng, AIRPORTS)
        do = choice(rng, MANHATTAN + OUTER)
        distance = 9.0 + rng.random() * 11.0
    else:
        pu = choice(rng, MANHATTAN) if rng.random() < 0.88 else choice(rng, OUTER)
        do = choice(rng, MANHATTAN) if rng.random() < 0.85 else choice(rng, OUTER)
        distance = min(max(math.exp(rng.gauss(0.45, 0.75)), 0.3), 18.0)
    distance = round(distance, 2)

    speed = 7.0 + rng.random() * 13.0  # mph, Manhattan traffic to highway
    minutes = distance / speed * 60 + 1.5 + rng.random() * 3
    dropoff = pickup + int(minutes * 60)

    ratecode = 2 if (pu == JFK and do in MANHATTAN) else 1
    if ratecode == 2:
        fare = 7000  # JFK <-> Manhattan flat fare
    else:
        fare = 300 + distance * 350 + max(minutes - distance * 3, 0) * 35
        fare = int(round(fare / 10)) * 10  # meters tick in dimes
    rush = date == "2023-01-02" and 16 <= hour < 20
    extra = 250 if rush and ratecode == 1 else 0
    mta_tax = 50
    improvement = 100
    congestion = 250 if (pu in MANHATTAN or do in MANHATTAN) else 0
    airport_fee = 125 if pu in AIRPORTS else 0
    if unknown:  # these rows leave both columns empty, and the total has neither
        congestion = airport_fee = 0
    tolls = 655 if (airport and rng.random() < 0.4) or rng.random() < 0.02 else 0

    if unknown:
        payment = 0
    else:
        payment = pick(rng, [(1, 0.76), (2, 0.20), (3, 0.015), (4, 0.025)])

    tip = 0
    if payment == 1 or (payment == 0 and rng.random() < 0.6):
        base = fare + extra + mta_tax + improvement + congestion + tolls + airport_fee
        r = rng.random()
        if r < 0.12:
            ratio = 0.0
        elif r < 0.97:
            ratio = pick(rng, [(0.20, 0.45), (0.25, 0.25), (0.30, 0.15), (0.15, 0.15)])
            ratio += (rng.random() - 0.5) * 0.04
        else:
            ratio = 0.5 + rng.random() * 0.9  # the generous riders
        tip = int(round(base * ratio))

    total = fare + extra + mta_tax + tip + tolls + improvement + congestion + airport_fee
    amounts = [fare, extra, mta_tax, tip, tolls, improvement, congestion, airport_fee]

    # A refund: the meter records the trip again with every amount negated.
    if payment in (3, 4) and rng.random() < 0.7:
        amounts = [-a for a in amounts]
        total = -total
    # A trip with nothing charged (cancelled at the curb).
    if payment == 2 and rng.random() < 0.02:
        distance, dropoff = 0.0, pickup + 20 + int(rng.random() * 60)
        amounts, total, congestion, airport_fee = [0] * 8, 0, 0, 0

    fare, extra, mta_tax, tip, tolls, improvement, congestion, airport_fee = amounts
    passengers = pick(rng, [(1, 0.72), (2, 0.14), (3, 0.04), (4, 0.02), (5, 0.03),
                            (6, 0.02), (0, 0.03)])
    flag = "Y" if rng.random() < 0.005 else "N"

    return [
        vendor,
        clock(date, pickup),
        clock(date, dropoff),
        "" if unknown else f"{passengers}.0",
        repr(distance),
        "" if unknown else f"{ratecode}.0",
        "" if unknown else flag,
        pu,
        do,
        payment,
        money(fare),
        money(extra),
        money(mta_tax),
        money(tip),
        money(tolls),
        money(improvement),
        money(total),
        "" if unknown else money(congestion),
        "" if unknown else money(airport_fee),
    ]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "yellow_tripdata_sample.csv")
    rng = random.Random(SEED)
    rows = []
    for date in DATES:
        for hour in HOURS:
            n = 34 + int(rng.random() * 13)  # 34..46 trips in the hour
            hour_rows = [trip(rng, date, hour) for _ in range(n)]
            hour_rows.sort(key=lambda r: r[1])
            rows.extend(hour_rows)
    with open(out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        w.writerows(rows)
    print(f"wrote {len(rows)} trips to {out}")


if __name__ == "__main__":
    main()
