use super::*;

fn t(text: &str) -> Timestamp {
    text.parse().expect("a time")
}

fn s(text: &str) -> Schedule {
    Schedule::parse(text).expect("a schedule")
}

fn upcoming(schedule: &str, from: &str, n: usize) -> Vec<String> {
    s(schedule)
        .upcoming(t(from), n)
        .into_iter()
        .map(|x| x.to_string())
        .collect()
}

#[test]
fn an_interval_runs_on_its_default_anchor_whenever_it_is_asked() {
    assert_eq!(
        upcoming("every 1h", "2026-11-29T02:10:07Z", 3),
        [
            "2026-11-29T03:00:00Z",
            "2026-11-29T04:00:00Z",
            "2026-11-29T05:00:00Z"
        ]
    );
    assert_eq!(
        upcoming("every 24h", "2026-11-29T02:10:07Z", 2),
        ["2026-11-30T00:00:00Z", "2026-12-01T00:00:00Z"]
    );
    // A slot exactly at the time asked: `next_from` includes it, `next_after` does not.
    let sched = s("every 1s");
    assert_eq!(
        sched.next_from(t("2026-11-29T02:00:00Z")),
        Some(t("2026-11-29T02:00:00Z"))
    );
    assert_eq!(
        sched.next_after(t("2026-11-29T02:00:00Z")),
        Some(t("2026-11-29T02:00:01Z"))
    );
    assert_eq!(
        sched.latest_at_or_before(t("2026-11-29T02:00:00.900Z")),
        Some(t("2026-11-29T02:00:00Z"))
    );
}

#[test]
fn an_interval_from_an_anchor_starts_there_and_stops_at_until() {
    let text = "every 10m from 2026-11-29T06:05:00Z until 2026-11-29T06:30:00Z";
    assert_eq!(
        upcoming(text, "2026-11-01T00:00:00Z", 5),
        [
            "2026-11-29T06:05:00Z",
            "2026-11-29T06:15:00Z",
            "2026-11-29T06:25:00Z"
        ]
    );
    assert_eq!(s(text).latest_at_or_before(t("2026-11-29T06:00:00Z")), None);
    assert_eq!(
        s(text).latest_at_or_before(t("2026-12-29T06:00:00Z")),
        Some(t("2026-11-29T06:25:00Z"))
    );
    assert_eq!(s(text).to_string(), text);
}

#[test]
fn a_daily_interval_from_a_zoned_anchor_keeps_its_local_time_across_dst() {
    // Paris moved from +01:00 to +02:00 on 2026-03-29.
    assert_eq!(
        upcoming(
            "every 24h from 2026-03-27T06:00[Europe/Paris]",
            "2026-03-27T00:00:00Z",
            4
        ),
        [
            "2026-03-27T05:00:00Z",
            "2026-03-28T05:00:00Z",
            "2026-03-29T04:00:00Z",
            "2026-03-30T04:00:00Z"
        ]
    );
    // Shorter intervals are fixed durations, whatever the anchor's zone.
    assert_eq!(
        upcoming(
            "every 12h from 2026-03-28T18:00[Europe/Paris]",
            "2026-03-28T00:00:00Z",
            3
        ),
        [
            "2026-03-28T17:00:00Z",
            "2026-03-29T05:00:00Z",
            "2026-03-29T17:00:00Z"
        ]
    );
}

#[test]
fn cron_runs_in_its_time_zone() {
    assert_eq!(
        upcoming("cron 0 6 * * MON-FRI in Europe/Paris", "2026-11-27T12:00:00Z", 3),
        // Friday 27th is past 06:00 Paris; Saturday and Sunday are skipped.
        [
            "2026-11-30T05:00:00Z",
            "2026-12-01T05:00:00Z",
            "2026-12-02T05:00:00Z"
        ]
    );
    assert_eq!(
        upcoming("cron */15 * * * *", "2026-11-29T02:10:00Z", 2),
        ["2026-11-29T02:15:00Z", "2026-11-29T02:30:00Z"]
    );
    assert_eq!(
        upcoming("cron 30 * * * * *", "2026-11-29T02:10:00Z", 2),
        ["2026-11-29T02:10:30Z", "2026-11-29T02:11:30Z"],
        "6 fields: seconds first"
    );
    assert_eq!(
        upcoming("cron @daily", "2026-11-29T02:10:00Z", 1),
        ["2026-11-30T00:00:00Z"]
    );
}

#[test]
fn cron_across_dst_does_what_cron_users_expect() {
    // Spring: 02:00-03:00 does not exist in Paris on 2026-03-29. A job at 02:30 runs
    // right after the gap (03:00 local, 01:00Z)...
    assert_eq!(
        upcoming("cron 30 2 * * * in Europe/Paris", "2026-03-28T12:00:00Z", 2),
        ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"]
    );
    // ...and a job every 30 minutes skips it.
    assert_eq!(
        upcoming("cron */30 * * * * in Europe/Paris", "2026-03-29T00:15:00Z", 3),
        [
            "2026-03-29T00:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-29T01:30:00Z"
        ]
    );
    // Autumn: 02:00-03:00 happens twice on 2026-10-25. A job at 02:30 runs once...
    assert_eq!(
        upcoming("cron 30 2 * * * in Europe/Paris", "2026-10-24T12:00:00Z", 2),
        ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
    );
    // ...a job every 30 minutes runs in both halves.
    assert_eq!(
        upcoming("cron */30 2 * * * in Europe/Paris", "2026-10-24T23:50:00Z", 4),
        [
            "2026-10-25T00:00:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T01:30:00Z"
        ]
    );
}

#[test]
fn the_text_form_reads_back_as_written() {
    for text in [
        "every 24h",
        "every 1h30m",
        "every 500ms",
        "every 10s from 2026-01-01T06:00:00Z",
        "every 24h from 2026-03-27T06:00:00+01:00[Europe/Paris]",
        "cron 0 6 * * * in Europe/Paris",
        "cron */5 * * * * until 2027-01-01T00:00:00Z",
    ] {
        assert_eq!(s(text).to_string(), text);
        assert_eq!(s(&s(text).to_string()).to_string(), text);
    }
    assert_eq!(s("  every   1d ").to_string(), "every 24h");
}

#[test]
fn malformed_schedules_say_what_is_wrong() {
    let e = |text: &str| Schedule::parse(text).expect_err("malformed").to_string();
    assert_eq!(
        e("every 2 parsecs"),
        "malformed schedule `every 2 parsecs`: `2 parsecs` is not a duration (unknown time unit \"parsecs\"): \
         write it like `24h`, `1h30m`, `10s` or `500ms`"
    );
    assert_eq!(
        e("every 0s"),
        "malformed schedule `every 0s`: `0s` is an interval of zero: write one such as `10s` or `24h`"
    );
    assert_eq!(
        e("hourly"),
        "malformed schedule `hourly`: it starts with `hourly`, not `every` or `cron`; write `every 24h`, \
         `every 1h from 2026-01-01T06:00:00Z`, `cron 0 6 * * *` or `cron 0 6 * * * in Europe/Paris`, optionally \
         ending with `until <time>`"
    );
    assert_eq!(
        e("cron 0 6 * *"),
        "malformed schedule `cron 0 6 * *`: `0 6 * *` has 4 fields; a cron expression has 5 (minute hour day month \
         weekday, as `0 6 * * *`) or 6 (seconds first)"
    );
    assert_eq!(
        e("cron 0 25 * * *"),
        "malformed schedule `cron 0 25 * * *`: `0 25 * * *` is not a cron expression: its hour field `25` is not one \
         (number out of bounds; 0-23)"
    );
    assert_eq!(
        e("cron 0 6 * * FUNDAY"),
        "malformed schedule `cron 0 6 * * FUNDAY`: `0 6 * * FUNDAY` is not a cron expression: its day of week field \
         `FUNDAY` is not one (contains illegal character 'F' in part 'FUNDAY'; 0-7 or SUN-SAT)"
    );
    assert_eq!(
        e("cron 0 0 30 2 *"),
        "malformed schedule `cron 0 0 30 2 *`: `0 0 30 2 *` never matches a time"
    );
    assert_eq!(
        e("cron 0 6 * * * in Europe/Pariss"),
        "malformed schedule `cron 0 6 * * * in Europe/Pariss`: `Europe/Pariss` is not a time zone of the IANA \
         database: write one such as `UTC`, `Europe/Paris` or `America/New_York`"
    );
    assert!(e("every 1h from yesterday")
        .starts_with("malformed schedule `every 1h from yesterday`: `from yesterday`: not a time ("));
    assert_eq!(
        e("every 1h from 2026-02-01T00:00:00Z until 2026-01-01T00:00:00Z"),
        "malformed schedule `every 1h from 2026-02-01T00:00:00Z until 2026-01-01T00:00:00Z`: `until` is before \
         `from`: no slot would run"
    );
    assert_eq!(e(""), format!("malformed schedule ``: it is empty; {FORMS}"));
}

#[test]
fn a_scheduled_run_is_known_by_its_text_and_parameters() {
    let plain = ScheduledRun::new(s("every 1h"));
    assert_eq!(plain.key(), "every 1h");
    let with = ScheduledRun::new(s("every 1h")).param("batch_size", serde_json::json!(500));
    assert_eq!(with.key(), r#"every 1h {"batch_size":500}"#);
}

#[test]
fn policies_read_their_names() {
    assert_eq!("latest".parse::<Missed>(), Ok(Missed::Latest));
    assert_eq!(
        "some".parse::<Missed>(),
        Err("`some` is not a policy for missed runs: write `skip`, `latest` or `all`".to_owned())
    );
    assert_eq!("skip".parse::<WhenBusy>(), Ok(WhenBusy::Skip));
}
