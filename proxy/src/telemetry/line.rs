//! One log line written by hand in the process's log format (`--log-format`): a JSON object, or
//! text as the tracing subscriber writes it (`<time>  INFO <target>: <message> name=value ...`),
//! so lines the gateway formats itself (audit) read like every other line.

use std::io::Write as _;

use super::logging::LogFormat;
use crate::json_spans::write_str as json_str;

/// A line being written into `out`; [`Line::end`] closes it.
pub struct Line<'a> {
    out: &'a mut Vec<u8>,
    format: LogFormat,
}

impl<'a> Line<'a> {
    /// Start a line at `stamp` (the timestamp text) for `target`, saying `message`.
    pub fn start(out: &'a mut Vec<u8>, format: LogFormat, stamp: &[u8], target: &str, message: &str) -> Self {
        match format {
            LogFormat::Json => {
                out.extend_from_slice(b"{\"timestamp\":\"");
                out.extend_from_slice(stamp);
                out.extend_from_slice(b"\",\"level\":\"INFO\",\"message\":");
                json_str(out, message);
                out.extend_from_slice(b",\"target\":");
                json_str(out, target);
            }
            LogFormat::Text => {
                out.extend_from_slice(stamp);
                let _ = write!(out, "  INFO {target}: {message}");
            }
        }
        Line { out, format }
    }

    /// A text field (`name="value"` in text, escaped as Rust debug strings are).
    #[inline]
    pub fn str(&mut self, name: &str, value: &str) -> &mut Self {
        self.name(name);
        match self.format {
            LogFormat::Json => json_str(self.out, value),
            LogFormat::Text => {
                let _ = write!(self.out, "{value:?}");
            }
        }
        self
    }

    /// A text field that may be absent (`null` in JSON, `-` in text).
    pub fn opt_str(&mut self, name: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.str(name, v),
            None => {
                self.name(name);
                self.out
                    .extend_from_slice(if self.format == LogFormat::Json { b"null" } else { b"-" });
                self
            }
        }
    }

    /// An address (or another plain word): a JSON string, unquoted in text; empty when absent
    /// (`-` in text).
    pub fn addr(&mut self, name: &str, value: Option<std::net::IpAddr>) -> &mut Self {
        self.name(name);
        match (self.format, value) {
            (LogFormat::Json, Some(ip)) => {
                let _ = write!(self.out, "\"{ip}\"");
            }
            (LogFormat::Json, None) => self.out.extend_from_slice(b"\"\""),
            (LogFormat::Text, Some(ip)) => {
                let _ = write!(self.out, "{ip}");
            }
            (LogFormat::Text, None) => self.out.push(b'-'),
        }
        self
    }

    /// A number.
    #[inline]
    pub fn uint(&mut self, name: &str, value: u64) -> &mut Self {
        self.name(name);
        self.out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// A value that is already JSON text (an object of labels, say); written as is in both forms.
    pub fn json(&mut self, name: &str, value: &[u8]) -> &mut Self {
        self.name(name);
        self.out.extend_from_slice(value);
        self
    }

    /// Close the line (with its newline).
    pub fn end(&mut self) {
        match self.format {
            LogFormat::Json => self.out.extend_from_slice(b"}\n"),
            LogFormat::Text => self.out.push(b'\n'),
        }
    }

    #[inline]
    fn name(&mut self, name: &str) {
        match self.format {
            LogFormat::Json => {
                self.out.extend_from_slice(b",\"");
                self.out.extend_from_slice(name.as_bytes());
                self.out.extend_from_slice(b"\":");
            }
            LogFormat::Text => {
                self.out.push(b' ');
                self.out.extend_from_slice(name.as_bytes());
                self.out.push(b'=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(format: LogFormat) -> String {
        let mut out = Vec::new();
        Line::start(
            &mut out,
            format,
            b"2026-12-05T00:00:00.000000Z",
            "tollgate::audit",
            "audit",
        )
        .str("consumer", "team \"a\"")
        .opt_str("user", None)
        .addr("client_ip", Some([10, 0, 0, 7].into()))
        .uint("status", 429)
        .json("metadata", br#"{"team":"x"}"#)
        .end();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_json_line_is_one_json_object() {
        let text = line(LogFormat::Json);
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["message"], "audit");
        assert_eq!(v["target"], "tollgate::audit");
        assert_eq!(v["consumer"], "team \"a\"");
        assert!(v["user"].is_null());
        assert_eq!(v["status"], 429);
        assert_eq!(v["client_ip"], "10.0.0.7");
        assert_eq!(v["metadata"]["team"], "x");
    }

    #[test]
    fn a_text_line_reads_like_the_subscriber_s() {
        assert_eq!(
            line(LogFormat::Text),
            "2026-12-05T00:00:00.000000Z  INFO tollgate::audit: audit consumer=\"team \\\"a\\\"\" user=- client_ip=10.0.0.7 status=429 metadata={\"team\":\"x\"}\n"
        );
    }
}
