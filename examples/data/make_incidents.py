#!/usr/bin/env python3
"""Generates examples/data/incident_event_log_sample.csv: a small, synthetic sample of an
IT incident management event log with the columns and value formats of the UCI "Incident
management process enriched event log" data set
(https://archive.ics.uci.edu/dataset/498/incident+management+process+enriched+event+log),
the event log of a ServiceNow instance.

Like the real file, every row is one update of an incident (its state after the update):
an incident is opened (`New`), assigned (`Active`, once per assignment group), may wait
on the caller (`Awaiting User Info`), is resolved (`Resolved`), sometimes reopened, and
closed (`Closed`). `sys_mod_count` counts the updates; the per-incident columns
(`opened_at`, `priority`, `resolved_at`, `closed_at`, ...) repeat on each of its rows.
`?` marks a missing value in any column; dates are `%d/%m/%Y %H:%M` with no zero padding
on the day and month (`24/2/2016 01:15`), the timestamps of the real file.

The values are plausible, not real: priority follows impact and urgency as in
ServiceNow's default matrix (more non-Moderate incidents than in the real file, which is
93% `3 - Moderate`), resolution takes longer the lower the priority, and some rows look
like the awkward rows of the real file: incidents still open when the log was taken
(`closed_at` is `?`; some are not resolved either), incidents with no priority (`?`),
rows that lost their `sys_updated_at` (`?`), and missing callers, symptoms and creators.

Deterministic: the same seed gives the same file, byte for byte.

    python3 examples/data/make_incidents.py            # writes next to this script
    python3 examples/data/make_incidents.py out.csv
"""

import csv
import math
import os
import random
import sys

SEED = 20160229
INCIDENTS = 440
FIRST_NUMBER = 45  # INC0000045, the first incident of the real file
START = (2016, 2, 29)  # the log starts on 29/2/2016 and covers about 100 days
DAYS = 100

COLUMNS = [
    "number", "incident_state", "active", "reassignment_count", "reopen_count",
    "sys_mod_count", "made_sla", "caller_id", "opened_by", "opened_at", "sys_created_by",
    "sys_created_at", "sys_updated_by", "sys_updated_at", "contact_type", "location",
    "category", "subcategory", "u_symptom", "cmdb_ci", "impact", "urgency", "priority",
    "assignment_group", "assigned_to", "knowledge", "u_priority_confirmation", "notify",
    "problem_id", "rfc", "vendor", "caused_by", "closed_code", "resolved_by",
    "resolved_at", "closed_at",
]

LEVELS = {1: "1 - High", 2: "2 - Medium", 3: "3 - Low"}
PRIORITIES = {1: "1 - Critical", 2: "2 - High", 3: "3 - Moderate", 4: "4 - Low"}
# Median hours from opening to resolution, by priority; lognormal around it.
RESOLUTION_HOURS = {1: 10.0, 2: 40.0, 3: 200.0, 4: 400.0}
SPREAD = 0.6  # sigma of the log of the resolution hours
# Hours within which an incident of that priority should be resolved.
SLA_HOURS = {1: 8, 2: 36, 3: 168, 4: 336}


def pick(rng, weighted):
    """One value out of [(value, weight), ...], using rng.random() only."""
    total = sum(w for _, w in weighted)
    x = rng.random() * total
    for value, w in weighted:
        x -= w
        if x < 0:
            return value
    return weighted[-1][0]


def between(rng, lo, hi):
    """A whole number in lo..=hi."""
    return lo + int(rng.random() * (hi - lo + 1))


def days_in_month(year, month):
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


def stamp(minutes):
    """`24/2/2016 01:15` for `minutes` after midnight of START."""
    year, month, day = START
    days, rest = divmod(minutes, 24 * 60)
    day += days
    while day > days_in_month(year, month):
        day -= days_in_month(year, month)
        month += 1
        if month > 12:
            month, year = 1, year + 1
    h, m = divmod(rest, 60)
    return f"{day}/{month}/{year} {h:02d}:{m:02d}"


def priority_of(impact, urgency):
    """ServiceNow's default priority matrix: 1+1 Critical, 3 High, 4 Moderate, more Low."""
    return min(impact + urgency - 1, 4)


def incident(rng, number):
    """The rows of one incident, in update order."""
    opened = int(rng.random() * DAYS * 24 * 60)
    impact, urgency = pick(rng, [
        ((1, 1), 0.06),
        ((1, 2), 0.05), ((2, 1), 0.05),
        ((2, 2), 0.70), ((1, 3), 0.02), ((3, 1), 0.01),
        ((2, 3), 0.05), ((3, 2), 0.04), ((3, 3), 0.02),
    ])
    priority = priority_of(impact, urgency)
    no_priority = rng.random() < 0.04
    hours = RESOLUTION_HOURS[priority] * math.exp(rng.gauss(0.0, SPREAD))
    resolved = opened + max(int(hours * 60), 10)
    closed = resolved + int(rng.random() ** 2 * 72 * 60)  # the caller confirms, or it auto-closes
    made_sla = hours <= SLA_HOURS[priority]
    # Still open when the log was taken: never closed, and a third never resolved.
    still_open = rng.random() < 0.06
    unresolved = still_open and rng.random() < 0.35
    reopened = not unresolved and rng.random() < 0.05

    fixed = {
        "number": f"INC{number:07d}",
        "caller_id": "?" if rng.random() < 0.01 else f"Caller {between(rng, 1, 5200)}",
        "opened_by": f"Opened by  {between(rng, 1, 250)}",  # two spaces, as in the real file
        "opened_at": stamp(opened),
        "contact_type": pick(rng, [("Phone", 0.94), ("Self service", 0.03), ("Email", 0.02),
                                   ("IVR", 0.005), ("Direct opening", 0.005)]),
        "location": f"Location {between(rng, 1, 230)}",
        "category": f"Category {between(rng, 1, 60)}",
        "subcategory": f"Subcategory {between(rng, 1, 250)}",
        "u_symptom": "?" if rng.random() < 0.2 else f"Symptom {between(rng, 1, 500)}",
        "cmdb_ci": "?",  # 99.7% missing in the real file
        "impact": LEVELS[impact],
        "urgency": LEVELS[urgency],
        "priority": "?" if no_priority else PRIORITIES[priority],
        "knowledge": "true" if rng.random() < 0.17 else "false",
        "u_priority_confirmation": "true" if rng.random() < 0.7 else "false",
        "notify": "Send Email" if rng.random() < 0.01 else "Do Not Notify",
        "problem_id": f"Problem ID  {between(rng, 1, 250)}" if rng.random() < 0.02 else "?",
        "rfc": f"CHG{between(rng, 1, 4300):07d}" if rng.random() < 0.01 else "?",
        "vendor": "code 8s" if rng.random() < 0.005 else "?",
        "caused_by": "?",
        "closed_code": "?" if still_open else f"code {between(rng, 1, 17)}",
        "resolved_by": "?" if unresolved else f"Resolved by {between(rng, 1, 220)}",
        "resolved_at": "?" if unresolved else stamp(resolved),
        "closed_at": "?" if still_open else stamp(closed),
    }
    # The first update (New) comes a few minutes after opening; the record is created in between.
    t = opened + between(rng, 0, 15)
    created = rng.random() < 0.63  # sys_created_by/at are missing in about a third of the real rows
    fixed["sys_created_by"] = f"Created by {between(rng, 1, 220)}" if created else "?"
    fixed["sys_created_at"] = stamp(between(rng, opened, t)) if created else "?"

    # The updates: (state, minutes, group, resolver, reassignments, reopens, active).
    updates = []
    group, resolver, reassignments, reopens = "?", "?", 0, 0
    updates.append(("New", t, group, resolver, reassignments, reopens, True))
    end = resolved if not unresolved else opened + int(max(hours, 1.0) * 60 * rng.random())
    steps = 1 + int(-math.log(1.0 - rng.random()) * 2.2)  # assignments and other updates
    for i in range(steps):
        t = max(t + 1, opened + int((end - opened) * (i + 1) / (steps + 1)))
        if i == 0 or rng.random() < 0.3:
            if group != "?":
                reassignments += 1
            group = f"Group {between(rng, 1, 80)}"
            resolver = f"Resolver {between(rng, 1, 230)}"
        state = "Awaiting User Info" if rng.random() < 0.12 else "Active"
        updates.append((state, t, group, resolver, reassignments, reopens, True))
    if not unresolved:
        if reopened:
            first = opened + int((resolved - opened) * 0.6)
            t = max(t + 1, first)
            updates.append(("Resolved", t, group, resolver, reassignments, reopens, True))
            reopens = 1
            t += between(rng, 30, 600)
            updates.append(("Active", t, group, resolver, reassignments, reopens, True))
        t = max(t + 1, resolved)
        updates.append(("Resolved", t, group, resolver, reassignments, reopens, True))
        if not still_open:
            t = max(t, closed)
            updates.append(("Closed", t, group, resolver, reassignments, reopens, False))

    rows = []
    for mod_count, (state, minutes, group, resolver, reassign, reopen, active) in enumerate(updates):
        row = dict(fixed)
        row.update({
            "incident_state": state,
            "active": "true" if active else "false",
            "reassignment_count": str(reassign),
            "reopen_count": str(reopen),
            "sys_mod_count": str(mod_count),
            "made_sla": "true" if made_sla else "false",
            "sys_updated_by": f"Updated by {between(rng, 1, 900)}",
            "sys_updated_at": "?" if rng.random() < 0.01 else stamp(minutes),
            "assignment_group": group,
            "assigned_to": resolver if rng.random() > 0.02 else "?",
        })
        rows.append([row[c] for c in COLUMNS])
    return rows


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "incident_event_log_sample.csv")
    rng = random.Random(SEED)
    rows = []
    number = FIRST_NUMBER
    for _ in range(INCIDENTS):
        rows.extend(incident(rng, number))
        number += between(rng, 1, 4)  # the real numbers have gaps
    with open(out, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        w.writerows(rows)
    print(f"wrote {len(rows)} events of {INCIDENTS} incidents to {out}")


if __name__ == "__main__":
    main()
