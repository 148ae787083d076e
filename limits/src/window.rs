//! Fixed calendar windows: the minute, hour or day that contains an instant, in a time zone
//! given as a fixed UTC offset (a "day" for a team in UTC+8 starts at 16:00 UTC) or as a named
//! time zone whose offset follows its daylight saving rules ([`Calendar`]): in `Europe/Berlin`
//! a day starts at local midnight all year, and the days the clocks change last 23 or 25 hours.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Window length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Minute,
    Hour,
    Day,
}

impl Period {
    pub fn millis(self) -> u64 {
        match self {
            Period::Minute => 60_000,
            Period::Hour => 3_600_000,
            Period::Day => 86_400_000,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Period::Minute => "minute",
            Period::Hour => "hour",
            Period::Day => "day",
        }
    }
}

/// One window: `[start_ms, end_ms)` in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: u64,
    pub end_ms: u64,
}

impl Window {
    /// The window of `period` containing `now_ms`, with calendar boundaries at `utc_offset_secs`.
    pub fn containing(now_ms: u64, period: Period, utc_offset_secs: i32) -> Window {
        let len = period.millis() as i64;
        let offset = i64::from(utc_offset_secs) * 1000;
        let local = now_ms as i64 + offset;
        let start_local = local.div_euclid(len) * len;
        let start = (start_local - offset).max(0) as u64;
        Window {
            start_ms: start,
            end_ms: start + period.millis(),
        }
    }

    /// Milliseconds from `now_ms` to the end of the window.
    pub fn remaining_ms(&self, now_ms: u64) -> u64 {
        self.end_ms.saturating_sub(now_ms)
    }
}

/// Where a calendar's windows start.
#[derive(Debug, Clone)]
pub enum Calendar {
    /// A fixed offset, seconds east of UTC.
    Offset(i32),
    /// A named (IANA) time zone.
    Zone(Arc<ZoneCalendar>),
}

impl Default for Calendar {
    fn default() -> Self {
        Calendar::Offset(0)
    }
}

impl Calendar {
    /// `UTC`, a UTC offset (`+08:00`), or a time zone name (`Asia/Shanghai`,
    /// `America/New_York`) from the system's time zone database, else from the copy built in.
    pub fn parse(text: &str) -> Option<Calendar> {
        if let Some(secs) = parse_utc_offset(text) {
            return Some(Calendar::Offset(secs));
        }
        let name = text.trim();
        // Names only: `TimeZone::get` would also take a path-like or POSIX rule string.
        if name.is_empty() || name.starts_with('/') || name.contains("..") {
            return None;
        }
        let tz = TimeZone::get(name).ok()?;
        Some(Calendar::Zone(Arc::new(ZoneCalendar {
            tz,
            cached: AtomicU64::new(0),
        })))
    }

    /// The window of `period` containing `now_ms`.
    pub fn window(&self, now_ms: u64, period: Period) -> Window {
        match self {
            Calendar::Offset(secs) => Window::containing(now_ms, period, *secs),
            Calendar::Zone(zone) => zone.window(now_ms, period),
        }
    }
}

/// A named time zone, with the last window it computed: finding a day's bounds takes a few
/// time zone lookups, so they are done once per window, not on every request.
pub struct ZoneCalendar {
    tz: TimeZone,
    /// `start_secs << 24 | len_secs << 2 | period tag` (0: nothing yet). One word, so a reader
    /// never sees the start of one window with the length of another.
    cached: AtomicU64,
}

impl std::fmt::Debug for ZoneCalendar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("ZoneCalendar")
            .field(&self.tz.iana_name().unwrap_or("?"))
            .finish()
    }
}

const LEN_BITS: u32 = 22;

fn period_tag(period: Period) -> u64 {
    match period {
        Period::Minute => 1,
        Period::Hour => 2,
        Period::Day => 3,
    }
}

impl ZoneCalendar {
    fn window(&self, now_ms: u64, period: Period) -> Window {
        let packed = self.cached.load(Ordering::Relaxed);
        if packed & 3 == period_tag(period) {
            let start_ms = (packed >> 24) * 1000;
            let end_ms = start_ms + ((packed >> 2) & ((1 << LEN_BITS) - 1)) * 1000;
            if start_ms <= now_ms && now_ms < end_ms {
                return Window { start_ms, end_ms };
            }
        }
        let w = self.compute(now_ms, period);
        let (start_s, len_s) = (w.start_ms / 1000, (w.end_ms - w.start_ms) / 1000);
        // Whole seconds that fit the packing (always, for tz database offsets and dates before
        // the year 36000); anything else is simply not cached.
        if w.start_ms.is_multiple_of(1000)
            && w.end_ms.is_multiple_of(1000)
            && start_s < 1 << 40
            && len_s < 1 << LEN_BITS
        {
            self.cached
                .store((start_s << 24) | (len_s << 2) | period_tag(period), Ordering::Relaxed);
        }
        w
    }

    fn compute(&self, now_ms: u64, period: Period) -> Window {
        let Ok(ts) = i64::try_from(now_ms)
            .map_err(drop)
            .and_then(|ms| Timestamp::from_millisecond(ms).map_err(drop))
        else {
            return Window::containing(now_ms, period, 0);
        };
        let offset = self.tz.to_offset(ts).seconds();
        if period != Period::Day {
            // Offsets move by whole minutes (whole hours nearly everywhere): the minute or hour
            // at the instant's own offset.
            return Window::containing(now_ms, period, offset);
        }
        let today = ts.to_zoned(self.tz.clone());
        let bounds = today
            .start_of_day()
            .and_then(|start| Ok((start, today.tomorrow()?.start_of_day()?)));
        match bounds {
            Ok((start, end)) => {
                let ms = |z: &jiff::Zoned| z.timestamp().as_millisecond().max(0) as u64;
                Window {
                    start_ms: ms(&start),
                    end_ms: ms(&end),
                }
            }
            Err(_) => Window::containing(now_ms, period, offset),
        }
    }
}

/// Parse `UTC`, `Z`, `+08:00`, `-05:30` or `+0800` into seconds east of UTC.
pub fn parse_utc_offset(text: &str) -> Option<i32> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("utc") || t == "Z" {
        return Some(0);
    }
    let (sign, rest) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let h: i32 = digits[..2].parse().ok()?;
    let m: i32 = digits[2..].parse().ok()?;
    if h > 14 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-25T07:30:15Z
    const NOW: u64 = 1_795_591_815_000;

    #[test]
    fn day_windows_follow_the_time_zone() {
        let utc = Window::containing(NOW, Period::Day, 0);
        assert_eq!(utc.start_ms, 1_795_564_800_000); // 2026-11-25T00:00Z
        assert_eq!(utc.end_ms - utc.start_ms, 86_400_000);
        let shanghai = Window::containing(NOW, Period::Day, 8 * 3600);
        assert_eq!(shanghai.start_ms, 1_795_536_000_000); // 2026-11-24T16:00Z = 25 Nov 00:00 +08
        let new_york = Window::containing(NOW, Period::Day, -5 * 3600);
        assert_eq!(new_york.start_ms, 1_795_582_800_000); // 2026-11-25T05:00Z = 25 Nov 00:00 -05
        assert!(new_york.start_ms <= NOW && NOW < new_york.end_ms);
    }

    #[test]
    fn edges_belong_to_the_next_window() {
        let w = Window::containing(NOW, Period::Minute, 0);
        assert_eq!(Window::containing(w.end_ms, Period::Minute, 0).start_ms, w.end_ms);
        assert_eq!(Window::containing(w.end_ms - 1, Period::Minute, 0), w);
        assert_eq!(w.remaining_ms(w.end_ms - 1), 1);
        assert_eq!(Window::containing(NOW, Period::Hour, 0).start_ms, 1_795_590_000_000);
    }

    fn zone(name: &str) -> Calendar {
        Calendar::parse(name).unwrap_or_else(|| panic!("{name} is a time zone"))
    }

    const HOUR: u64 = 3_600_000;

    #[test]
    fn named_zone_days_start_at_local_midnight_and_follow_daylight_saving() {
        // 2026-11-25, no DST in force: New York is UTC-5, as the fixed offset says.
        let ny = zone("America/New_York");
        assert_eq!(
            ny.window(NOW, Period::Day),
            Window::containing(NOW, Period::Day, -5 * 3600)
        );
        // 2026-07-01T12:00Z: summer time, UTC-4; the day starts at 04:00Z.
        let july = 1_782_907_200_000;
        let w = ny.window(july, Period::Day);
        assert_eq!(w.start_ms, 1_782_878_400_000);
        assert_eq!(w.end_ms - w.start_ms, 24 * HOUR);
        // 2026-03-08: clocks go forward, a 23-hour day; 2026-11-01: back, a 25-hour day.
        let spring = ny.window(1_772_971_200_000, Period::Day); // 2026-03-08T12:00Z
        assert_eq!(spring.start_ms, 1_772_946_000_000); // 05:00Z = local midnight, UTC-5
        assert_eq!(spring.end_ms - spring.start_ms, 23 * HOUR);
        let autumn = ny.window(1_793_534_400_000, Period::Day); // 2026-11-01T12:00Z
        assert_eq!(autumn.start_ms, 1_793_505_600_000); // 04:00Z = local midnight, UTC-4
        assert_eq!(autumn.end_ms - autumn.start_ms, 25 * HOUR);
        // Consecutive days touch: the next day starts where this one ends.
        assert_eq!(ny.window(autumn.end_ms, Period::Day).start_ms, autumn.end_ms);
        assert_eq!(ny.window(autumn.end_ms - 1, Period::Day), autumn);
    }

    #[test]
    fn named_zone_hours_and_minutes_use_the_offset_in_force() {
        let kolkata = zone("Asia/Kolkata"); // UTC+05:30: local hours start at :30 UTC
        let w = kolkata.window(NOW, Period::Hour);
        assert_eq!(w, Window::containing(NOW, Period::Hour, 5 * 3600 + 1800));
        assert_eq!(w.start_ms % HOUR, HOUR / 2);
        let shanghai = zone("Asia/Shanghai");
        assert_eq!(
            shanghai.window(NOW, Period::Day),
            Window::containing(NOW, Period::Day, 8 * 3600)
        );
        assert_eq!(
            shanghai.window(NOW, Period::Minute),
            Window::containing(NOW, Period::Minute, 0)
        );
    }

    #[test]
    fn a_cached_window_is_only_reused_inside_it_and_for_its_period() {
        let ny = zone("America/New_York");
        let day = ny.window(NOW, Period::Day);
        assert_eq!(ny.window(NOW + 1, Period::Day), day);
        let hour = ny.window(NOW, Period::Hour);
        assert_eq!(hour.end_ms - hour.start_ms, HOUR);
        assert_eq!(ny.window(NOW, Period::Day), day);
        assert_eq!(ny.window(day.start_ms - 1, Period::Day).end_ms, day.start_ms);
        assert_eq!(ny.window(day.end_ms, Period::Day).start_ms, day.end_ms);
    }

    #[test]
    fn calendars_parse_offsets_and_zone_names_only() {
        assert!(matches!(Calendar::parse("+08:00"), Some(Calendar::Offset(28_800))));
        assert!(matches!(Calendar::parse("UTC"), Some(Calendar::Offset(0))));
        assert!(matches!(Calendar::parse("Europe/Berlin"), Some(Calendar::Zone(_))));
        for bad in [
            "Mars/Olympus_Mons",
            "",
            "/etc/passwd",
            "../../etc/passwd",
            "EST5EDT,M3.2.0,M11.1.0x",
        ] {
            assert!(Calendar::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn offsets_parse() {
        assert_eq!(parse_utc_offset("UTC"), Some(0));
        assert_eq!(parse_utc_offset("+08:00"), Some(28_800));
        assert_eq!(parse_utc_offset("-05:30"), Some(-19_800));
        assert_eq!(parse_utc_offset("+0545"), Some(20_700));
        assert_eq!(parse_utc_offset("Asia/Shanghai"), None);
        assert_eq!(parse_utc_offset("+25:00"), None);
    }
}
