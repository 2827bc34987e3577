//! Dates and times as spreadsheets write them: ISO (`2027-03-10`) always;
//! `10.03.2027`, `3/10/2027`, `2027/03/10` with a stated order (day, month,
//! year); 24-hour and 12-hour times (`09:00`, `9:00 AM`, `9 pm`). Pure.
//!
//! A date that reads two ways (`03/04/2027`) without an order is refused,
//! never guessed; one that reads only one way (`25/03/2027`) is taken.

use chrono::{NaiveDate, NaiveTime};
use serde::{Deserialize, Serialize};

/// The order of day, month and year in a file's dates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DateOrder {
    Dmy,
    Mdy,
    Ymd,
}

impl DateOrder {
    /// `dmy`, `mdy` or `ymd`.
    pub fn parse(text: &str) -> Option<DateOrder> {
        match text.trim().to_ascii_lowercase().as_str() {
            "dmy" => Some(DateOrder::Dmy),
            "mdy" => Some(DateOrder::Mdy),
            "ymd" => Some(DateOrder::Ymd),
            _ => None,
        }
    }
}

/// Splits `10.03.2027` into its three numbers (`/`, `.` or `-` between them).
fn parts(text: &str) -> Option<[u32; 3]> {
    let sep = text.chars().find(|c| matches!(c, '/' | '.' | '-'))?;
    let pieces: Vec<&str> = text.split(sep).collect();
    let [a, b, c] = pieces.as_slice() else {
        return None;
    };
    let num = |s: &str| {
        (!s.is_empty() && s.len() <= 4 && s.chars().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    Some([num(a)?, num(b)?, num(c)?])
}

fn ymd(y: u32, m: u32, d: u32) -> Option<NaiveDate> {
    (y >= 1000)
        .then(|| NaiveDate::from_ymd_opt(y as i32, m, d))
        .flatten()
}

/// Reads a date. `order`: the file's, if stated.
pub fn parse_date(text: &str, order: Option<DateOrder>) -> Result<NaiveDate, String> {
    let t = text.trim();
    if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
        return Ok(d);
    }
    let Some([a, b, c]) = parts(t) else {
        return Err(format!("`{t}` is not a date"));
    };
    let reading = |order: DateOrder| match order {
        DateOrder::Dmy => ymd(c, b, a),
        DateOrder::Mdy => ymd(c, a, b),
        DateOrder::Ymd => ymd(a, b, c),
    };
    if let Some(order) = order {
        return reading(order).ok_or_else(|| {
            format!("`{t}` is not a date in the order {order:?} (day, month, year as stated; the year in four digits)")
        });
    }
    let readings: Vec<NaiveDate> = [DateOrder::Dmy, DateOrder::Mdy, DateOrder::Ymd]
        .into_iter()
        .filter_map(reading)
        .collect();
    match readings.as_slice() {
        [] => Err(format!("`{t}` is not a date")),
        [one] => Ok(*one),
        [first, rest @ ..] if rest.iter().all(|d| d == first) => Ok(*first),
        _ => Err(format!(
            "`{t}` reads as more than one date (day/month or month/day) and the file states no order"
        )),
    }
}

/// Reads a time of day: `9:00`, `09:00:30`, `9:00 AM`, `9 pm`, `12:30 am`.
pub fn parse_time(text: &str) -> Result<NaiveTime, String> {
    let t = text.trim().to_ascii_lowercase().replace('.', "");
    let (clock, meridiem) = if let Some(c) = t.strip_suffix("am") {
        (c.trim(), Some(false))
    } else if let Some(c) = t.strip_suffix("pm") {
        (c.trim(), Some(true))
    } else {
        (t.as_str(), None)
    };
    let bad = || {
        format!(
            "`{}` is not a time of day (e.g. 09:00, 9:00 AM)",
            text.trim()
        )
    };
    let numbers: Vec<u32> = clock
        .split(':')
        .map(|p| {
            (!p.is_empty() && p.len() <= 2 && p.chars().all(|c| c.is_ascii_digit()))
                .then(|| p.parse().ok())
                .flatten()
        })
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    let (mut h, m, s) = match numbers.as_slice() {
        [h] if meridiem.is_some() => (*h, 0, 0),
        [h, m] => (*h, *m, 0),
        [h, m, s] => (*h, *m, *s),
        _ => return Err(bad()),
    };
    if let Some(pm) = meridiem {
        if !(1..=12).contains(&h) {
            return Err(bad());
        }
        h = match (h, pm) {
            (12, false) => 0,
            (12, true) => 12,
            (h, true) => h + 12,
            (h, false) => h,
        };
    }
    NaiveTime::from_hms_opt(h, m, s).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn dates_read_in_the_stated_order_and_never_by_a_guess() {
        assert_eq!(parse_date("2027-03-10", None), Ok(d(2027, 3, 10)));
        assert_eq!(
            parse_date("10.03.2027", Some(DateOrder::Dmy)),
            Ok(d(2027, 3, 10))
        );
        assert_eq!(
            parse_date("3/10/2027", Some(DateOrder::Mdy)),
            Ok(d(2027, 3, 10))
        );
        assert_eq!(
            parse_date("2027/3/10", Some(DateOrder::Ymd)),
            Ok(d(2027, 3, 10))
        );
        assert_eq!(
            parse_date("10-03-2027", Some(DateOrder::Dmy)),
            Ok(d(2027, 3, 10))
        );
        // One reading only: taken without an order.
        assert_eq!(parse_date("25/03/2027", None), Ok(d(2027, 3, 25)));
        assert_eq!(parse_date("3/25/2027", None), Ok(d(2027, 3, 25)));
        assert_eq!(parse_date("04/04/2027", None), Ok(d(2027, 4, 4)));
        // Two readings: refused.
        let e = parse_date("03/04/2027", None).unwrap_err();
        assert!(e.contains("more than one date"), "{e}");
        // Wrong for the stated order, two-digit years, garbage.
        assert!(parse_date("3/25/2027", Some(DateOrder::Dmy)).is_err());
        assert!(parse_date("10.03.27", Some(DateOrder::Dmy)).is_err());
        assert!(parse_date("next tuesday", None).is_err());
        assert!(parse_date("2027-02-30", None).is_err());
        assert_eq!(DateOrder::parse(" DMY "), Some(DateOrder::Dmy));
        assert_eq!(DateOrder::parse("dym"), None);
    }

    #[test]
    fn times_read_in_24_and_12_hours() {
        let t = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert_eq!(parse_time("09:00"), Ok(t(9, 0)));
        assert_eq!(parse_time("9:00 AM"), Ok(t(9, 0)));
        assert_eq!(parse_time("9 pm"), Ok(t(21, 0)));
        assert_eq!(parse_time("12:30 am"), Ok(t(0, 30)));
        assert_eq!(parse_time("12:15 PM"), Ok(t(12, 15)));
        assert_eq!(parse_time("9:00 a.m."), Ok(t(9, 0)));
        assert_eq!(
            parse_time("17:45:00"),
            Ok(NaiveTime::from_hms_opt(17, 45, 0).unwrap())
        );
        assert!(parse_time("13:00 pm").is_err());
        assert!(parse_time("25:00").is_err());
        assert!(parse_time("9").is_err(), "an hour alone needs AM or PM");
        assert!(parse_time("noon").is_err());
    }
}
