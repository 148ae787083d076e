//! Fixed calendar windows: the minute, hour or day that contains an instant, in a time zone
//! given as a fixed UTC offset (a "day" for a team in UTC+8 starts at 16:00 UTC).

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
