//! Budget windows: calendar-aligned in UTC, or the whole lifetime.

use crate::Timestamp;
use crate::scope::str_enum;
use std::fmt;
use std::str::FromStr;
use time::{Date, Duration, Month, Time};

str_enum!(
    /// The period a budget's spend is counted over. Calendar windows start at the
    /// boundary in UTC (minute, hour, midnight, Monday midnight, the 1st of the month);
    /// a new window starts empty.
    Window, "window", {
        /// Calendar minute.
        Minute => "minute",
        /// Calendar hour.
        Hour => "hour",
        /// Calendar day (UTC).
        Day => "day",
        /// ISO week starting Monday 00:00 UTC.
        Week => "week",
        /// Calendar month (UTC).
        Month => "month",
        /// No reset: the lifetime of the budget.
        Total => "total",
    }
);

impl Window {
    /// The start of the window that contains `at`, or `None` for [`Window::Total`].
    pub fn start(self, at: Timestamp) -> Option<Timestamp> {
        let t = at.to_offset_date_time();
        let date = t.date();
        let start = match self {
            Window::Total => return None,
            Window::Minute => date.with_time(Time::from_hms(t.hour(), t.minute(), 0).ok()?),
            Window::Hour => date.with_time(Time::from_hms(t.hour(), 0, 0).ok()?),
            Window::Day => date.midnight(),
            Window::Week => {
                let back = i64::from(date.weekday().number_days_from_monday());
                date.checked_sub(Duration::days(back))?.midnight()
            }
            Window::Month => Date::from_calendar_date(date.year(), date.month(), 1).ok()?.midnight(),
        };
        Some(Timestamp::from_offset_date_time(start.assume_utc()))
    }

    /// The end of the window that contains `at` (the start of the next one), or `None`
    /// for [`Window::Total`].
    pub fn end(self, at: Timestamp) -> Option<Timestamp> {
        let start = self.start(at)?.to_offset_date_time();
        let end = match self {
            Window::Total => return None,
            Window::Minute => start.checked_add(Duration::minutes(1))?,
            Window::Hour => start.checked_add(Duration::hours(1))?,
            Window::Day => start.checked_add(Duration::days(1))?,
            Window::Week => start.checked_add(Duration::weeks(1))?,
            Window::Month => {
                let (y, m) = match start.month() {
                    Month::December => (start.year().checked_add(1)?, Month::January),
                    m => (start.year(), m.next()),
                };
                Date::from_calendar_date(y, m, 1).ok()?.midnight().assume_utc()
            }
        };
        Some(Timestamp::from_offset_date_time(end))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn check(w: Window, at: &str, start: &str, end: &str) {
        let at = ts(at);
        assert_eq!(w.start(at).map(|t| t.to_rfc3339()), Some(start.to_owned()), "{w} start");
        assert_eq!(w.end(at).map(|t| t.to_rfc3339()), Some(end.to_owned()), "{w} end");
    }

    #[test]
    fn windows_align_to_the_utc_calendar() {
        let at = "2026-02-28T23:59:30.250Z";
        check(Window::Minute, at, "2026-02-28T23:59:00Z", "2026-03-01T00:00:00Z");
        check(Window::Hour, at, "2026-02-28T23:00:00Z", "2026-03-01T00:00:00Z");
        check(Window::Day, at, "2026-02-28T00:00:00Z", "2026-03-01T00:00:00Z");
        // 2026-02-28 is a Saturday; its ISO week began Monday the 23rd.
        check(Window::Week, at, "2026-02-23T00:00:00Z", "2026-03-02T00:00:00Z");
        check(Window::Month, at, "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z");
        check(Window::Month, "2026-12-31T12:00:00Z", "2026-12-01T00:00:00Z", "2027-01-01T00:00:00Z");
        assert_eq!(Window::Total.start(ts(at)), None);
    }

    #[test]
    fn a_boundary_instant_belongs_to_the_new_window() {
        check(Window::Day, "2026-03-01T00:00:00Z", "2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z");
    }
}
