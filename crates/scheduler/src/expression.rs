//! Schedule expressions as EventBridge Scheduler reads them: `rate(5 minutes)`,
//! `cron(0 12 ? * MON-FRI *)` (six fields, evaluated in the schedule's time zone) and
//! `at(2026-11-25T09:00:00)` (a wall-clock time in that zone).

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

#[derive(Debug, Clone)]
pub enum Expression {
    /// Every `interval` ms from the schedule's anchor (its start date, else the time
    /// it was created or last updated).
    Rate {
        interval_ms: i64,
    },
    Cron(Box<Cron>),
    /// Once, at this wall-clock time.
    At(DateTime),
}

/// The time zone a schedule's `cron` and `at` expressions are read in.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None => Ok(TimeZone::UTC),
        Some(name) => TimeZone::get(name).map_err(|_| format!("Invalid time zone: {name}")),
    }
}

impl Expression {
    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = |why: &str| format!("Invalid Schedule Expression {text}: {why}");
        let (kind, body) = text
            .strip_suffix(')')
            .and_then(|t| t.split_once('('))
            .ok_or_else(|| invalid("expected rate(...), cron(...) or at(...)"))?;
        match kind {
            "rate" => {
                let (value, unit) = body
                    .trim()
                    .split_once(' ')
                    .ok_or_else(|| invalid("expected rate(value unit)"))?;
                let value: i64 = value
                    .parse()
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| invalid("the value must be a positive whole number"))?;
                let unit_ms = match unit.trim() {
                    "minute" | "minutes" => 60_000,
                    "hour" | "hours" => 3_600_000,
                    "day" | "days" => 86_400_000,
                    _ => return Err(invalid("the unit must be minutes, hours or days")),
                };
                let interval_ms = value
                    .checked_mul(unit_ms)
                    .ok_or_else(|| invalid("the rate is too long"))?;
                Ok(Self::Rate { interval_ms })
            }
            "cron" => {
                let fields: Vec<&str> = body.split_whitespace().collect();
                let [_, _, day_of_month, _, day_of_week, _] = fields.as_slice() else {
                    return Err(invalid(
                        "expected six fields: minutes hours day-of-month month day-of-week year",
                    ));
                };
                // croner takes an empty list item (`,`, `1,,2`) as matching nothing,
                // and a cron that never fires is searched for years ahead.
                if fields.iter().any(|f| f.split(',').any(str::is_empty)) {
                    return Err(invalid("a field has an empty list item"));
                }
                // AWS's rule: one of the two day fields must be `?`, not both.
                if (*day_of_month == "?") == (*day_of_week == "?") {
                    return Err(invalid(
                        "exactly one of day-of-month and day-of-week must be '?'",
                    ));
                }
                let cron = CronParser::builder()
                    .seconds(Seconds::Required)
                    .year(Year::Required)
                    // Sunday is 1, as in AWS's (Quartz's) cron.
                    .alternative_weekdays(true)
                    .sloppy_ranges(true)
                    .build()
                    .parse(&format!("0 {}", fields.join(" ")))
                    .map_err(|err| invalid(&err.to_string()))?;
                Ok(Self::Cron(Box::new(cron)))
            }
            "at" => {
                let at: DateTime = body
                    .trim()
                    .parse()
                    .map_err(|_| invalid("expected at(yyyy-mm-ddThh:mm:ss)"))?;
                Ok(Self::At(at))
            }
            _ => Err(invalid("expected rate(...), cron(...) or at(...)")),
        }
    }

    pub fn is_one_time(&self) -> bool {
        matches!(self, Self::At(_))
    }

    /// The first time this expression names at or after `from` (ms since the epoch),
    /// or strictly after it when `inclusive` is false.
    pub fn next(&self, from: i64, inclusive: bool, anchor: i64, zone: &TimeZone) -> Option<i64> {
        match self {
            Self::Rate { interval_ms } => {
                if from < anchor || (inclusive && from == anchor) {
                    return Some(anchor);
                }
                let elapsed = from - anchor;
                let mut steps = elapsed / interval_ms;
                if !(inclusive && elapsed % interval_ms == 0) {
                    steps += 1;
                }
                anchor.checked_add(steps.checked_mul(*interval_ms)?)
            }
            Self::Cron(cron) => {
                let start = Timestamp::from_millisecond(from)
                    .ok()?
                    .to_zoned(zone.clone());
                let next: Zoned = cron.find_next_occurrence(&start, inclusive).ok()?;
                Some(next.timestamp().as_millisecond())
            }
            Self::At(at) => {
                let at = at.to_zoned(zone.clone()).ok()?.timestamp().as_millisecond();
                (at > from || (inclusive && at == from)).then_some(at)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    #[test]
    fn rates_count_from_their_anchor() {
        let rate = Expression::parse("rate(5 minutes)").unwrap();
        let anchor = ms("2026-01-01T00:00:00Z");
        assert_eq!(rate.next(anchor, true, anchor, &utc()), Some(anchor));
        assert_eq!(
            rate.next(anchor, false, anchor, &utc()),
            Some(anchor + 300_000)
        );
        assert_eq!(
            rate.next(anchor + 1, true, anchor, &utc()),
            Some(anchor + 300_000)
        );
        assert_eq!(rate.next(anchor - 10, false, anchor, &utc()), Some(anchor));
        assert!(Expression::parse("rate(1 minute)").is_ok());
        for bad in [
            "rate(0 minutes)",
            "rate(5 seconds)",
            "rate(five minutes)",
            "rate(5)",
        ] {
            assert!(Expression::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cron_reads_aws_fields_in_the_schedule_zone() {
        // 10:15 on weekdays, Sunday being 1.
        let cron = Expression::parse("cron(15 10 ? * 2-6 *)").unwrap();
        // Saturday 2026-01-03 → Monday 2026-01-05.
        assert_eq!(
            cron.next(ms("2026-01-03T00:00:00Z"), false, 0, &utc()),
            Some(ms("2026-01-05T10:15:00Z"))
        );
        let berlin = time_zone(Some("Europe/Berlin")).unwrap();
        assert_eq!(
            cron.next(ms("2026-01-03T00:00:00Z"), false, 0, &berlin),
            Some(ms("2026-01-05T09:15:00Z"))
        );
        // Last day of the month, and the year field.
        let last = Expression::parse("cron(0 0 L * ? 2027)").unwrap();
        assert_eq!(
            last.next(ms("2026-02-10T00:00:00Z"), false, 0, &utc()),
            Some(ms("2027-01-31T00:00:00Z"))
        );
        let every = Expression::parse("cron(0/15 * * * ? *)").unwrap();
        assert_eq!(
            every.next(ms("2026-01-01T00:00:00Z"), false, 0, &utc()),
            Some(ms("2026-01-01T00:15:00Z"))
        );
        for bad in [
            "cron(* * * * *)",
            "cron(0 0 * * * *)",
            "cron(0 0 ? * ? *)",
            "cron(61 0 * * ? *)",
            // Found by the schedule fuzz target: an empty list item made a cron that
            // never fires, and each search for its next time ran for seconds.
            "cron(, 12 ? * MON-FRI *)",
            "cron(0 1,,2 ? * MON *)",
            "cron(0 12 ? * MON, *)",
        ] {
            assert!(Expression::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn at_is_a_wall_clock_time_once() {
        let at = Expression::parse("at(2026-03-29T02:30:00)").unwrap();
        assert!(at.is_one_time());
        let tokyo = time_zone(Some("Asia/Tokyo")).unwrap();
        assert_eq!(
            at.next(ms("2026-01-01T00:00:00Z"), false, 0, &tokyo),
            Some(ms("2026-03-28T17:30:00Z"))
        );
        assert_eq!(at.next(ms("2026-03-28T17:30:00Z"), false, 0, &tokyo), None);
        assert!(Expression::parse("at(tomorrow)").is_err());
        assert!(time_zone(Some("Mars/Olympus")).is_err());
    }
}
