//! Sensitive data: one pass of one regular expression finds the candidates that start with a
//! literal (secrets' prefixes, PEM headers, JWTs) or hold an `@` (e-mail), and one hand-written
//! pass over the digits finds numbers (phone, payment card, resident ID) and IBANs; each
//! candidate is kept only when it validates ([`checks`](super::checks)): a 16-digit number that
//! fails Luhn, an ID with a wrong check digit or a sentence *about* keys passes. (Numbers are
//! scanned by hand because a digit class has no literal for the regex engine to skip to: the
//! one pattern cost more than everything else together.)
//!
//! Runs on the original text (case matters to IBANs and keys); a digit run that joins several
//! numbers (`4111 1111 1111 1111 2024`) is tried group by group.

use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;

use super::checks;

/// A kind of sensitive data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PiiKind {
    Email,
    Phone,
    Card,
    CnId,
    Iban,
    Secret,
}

impl PiiKind {
    pub const ALL: [PiiKind; 6] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Card,
        PiiKind::CnId,
        PiiKind::Iban,
        PiiKind::Secret,
    ];

    /// The config's and the metrics' name.
    pub fn name(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Card => "card",
            PiiKind::CnId => "cn_id",
            PiiKind::Iban => "iban",
            PiiKind::Secret => "secret",
        }
    }

    pub fn from_name(name: &str) -> Option<PiiKind> {
        PiiKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// What a masked match is replaced with.
    pub fn placeholder(self) -> &'static str {
        match self {
            PiiKind::Email => "[EMAIL]",
            PiiKind::Phone => "[PHONE]",
            PiiKind::Card => "[CARD]",
            PiiKind::CnId => "[CN_ID]",
            PiiKind::Iban => "[IBAN]",
            PiiKind::Secret => "[SECRET]",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of kinds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PiiKinds(u8);

impl PiiKinds {
    pub fn all() -> PiiKinds {
        PiiKinds(PiiKind::ALL.iter().fold(0, |a, k| a | k.bit()))
    }

    pub fn with(self, k: PiiKind) -> PiiKinds {
        PiiKinds(self.0 | k.bit())
    }

    pub fn contains(self, k: PiiKind) -> bool {
        self.0 & k.bit() != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// One piece of sensitive data: its kind and its byte range in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PiiMatch {
    pub kind: PiiKind,
    pub range: Range<usize>,
}

/// Candidates of every kind, leftmost first, in order of precedence at one position.
static CANDIDATES: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:-----BEGIN[ A-Z0-9]{0,20}PRIVATE KEY-----",
        r"|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
        r"|(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AROA|ANPA|ANVA|APKA)[A-Z0-9]{16}",
        r"|sk-[A-Za-z0-9_-]{20,}",
        r"|gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}",
        r"|AIza[0-9A-Za-z_-]{35}",
        r"|xox[abposr]-[A-Za-z0-9-]{10,}",
        r"|[sr]k_(?:live|test)_[A-Za-z0-9]{20,}",
        r"|hf_[A-Za-z0-9]{30,})",
    ))
    .ok()
});

/// The literal starts of [`CANDIDATES`]: one SIMD pass finds where a secret may start, and the
/// expression is tried only there, anchored (run over the whole text it cost 15 instructions a
/// byte: too many short literals for the regex engine's own prefilter).
const SECRET_STARTS: &[&str] = &[
    "-----BEGIN",
    "eyJ",
    "AKIA",
    "ASIA",
    "ABIA",
    "ACCA",
    "AGPA",
    "AIDA",
    "AROA",
    "ANPA",
    "ANVA",
    "APKA",
    "sk-",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "AIza",
    "xoxa-",
    "xoxb-",
    "xoxp-",
    "xoxo-",
    "xoxs-",
    "xoxr-",
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "hf_",
];

static STARTS: LazyLock<Option<aho_corasick::AhoCorasick>> = LazyLock::new(|| {
    aho_corasick::AhoCorasick::builder()
        .match_kind(aho_corasick::MatchKind::LeftmostFirst)
        .build(SECRET_STARTS)
        .ok()
});

/// Secret-shaped prefixes whose body must also look generated.
const KEY_PREFIXES: &[&str] = &["sk-"];

/// Whether a byte may continue a word of an identifier: a match touching one is part of a
/// longer token, not the thing itself.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Find the sensitive data of `kinds` in `text`, in order.
pub fn scan(text: &str, kinds: PiiKinds, out: &mut Vec<PiiMatch>) {
    if kinds.is_empty() {
        return;
    }
    let Some(re) = CANDIDATES.as_ref() else { return };
    let bytes = text.as_bytes();
    let first = out.len();
    let Some(starts) = STARTS.as_ref() else { return };
    let mut after = 0;
    for start in starts.find_iter(text) {
        let at = start.start();
        if at < after {
            continue;
        }
        let Some(m) = re.find(&text[at..]) else { continue };
        let r = at..at + m.end();
        after = r.end;
        let s = &text[r.clone()];
        let touches = |r: &Range<usize>| {
            r.start > 0 && is_token_byte(bytes[r.start - 1]) || bytes.get(r.end).is_some_and(|&b| is_token_byte(b))
        };
        let push = |out: &mut Vec<PiiMatch>, kind: PiiKind, range: Range<usize>| {
            if kinds.contains(kind) {
                out.push(PiiMatch { kind, range });
            }
        };
        match s.as_bytes()[0] {
            b'-' => {
                // A PEM block: to its END line, or to the end of the text when it is cut.
                let end = text[r.end..]
                    .find("-----END")
                    .and_then(|e| {
                        let at = r.end + e;
                        text[at + 8..].find("-----").map(|f| at + 8 + f + 5)
                    })
                    .unwrap_or(text.len());
                push(out, PiiKind::Secret, r.start..end);
            }
            _ if s.starts_with("eyJ") && s.contains('.') => {
                if !touches(&r) && checks::is_jwt(s) {
                    push(out, PiiKind::Secret, r);
                }
            }
            _ => {
                let generated = KEY_PREFIXES
                    .iter()
                    .find(|p| s.starts_with(*p))
                    .is_none_or(|p| checks::looks_generated(&s[p.len()..]));
                if !touches(&r) && generated {
                    push(out, PiiKind::Secret, r);
                }
            }
        }
    }
    if kinds.contains(PiiKind::Email) {
        emails(text, out);
    }
    let found = out.len();
    digits_pass(text, kinds, out, found);
    out[first..].sort_by_key(|m| m.range.start);
}

/// The first ASCII digit at or after `from`, eight bytes per step (most prompt bytes are not
/// digits).
fn next_digit(b: &[u8], from: usize) -> Option<usize> {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut i = from;
    while i + 8 <= b.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        // Digits become 0..=9; a byte is a digit exactly when it stays below 10 (adding 0x76 to
        // its low seven bits leaves the high bit clear) and had no high bit.
        let y = u64::from_le_bytes(w) ^ 0x3030_3030_3030_3030;
        let not_digit = ((y & LOW7) + 0x7676_7676_7676_7676) | y;
        let digits = !not_digit & HIGH;
        if digits != 0 {
            return Some(i + (digits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b[i..].iter().position(u8::is_ascii_digit).map(|k| i + k)
}

/// E-mail addresses: found from each `@` outwards (a class-led pattern has no literal for the
/// regex engine to skip to), then validated.
fn emails(text: &str, out: &mut Vec<PiiMatch>) {
    let b = text.as_bytes();
    let local_byte = |c: u8| c.is_ascii_alphanumeric() || b"._%+-".contains(&c);
    let domain_byte = |c: u8| c.is_ascii_alphanumeric() || c == b'.' || c == b'-';
    let mut after = 0;
    for at in memchr::memchr_iter(b'@', b) {
        if at < after {
            continue;
        }
        let mut start = at;
        while start > after && local_byte(b[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < b.len() && domain_byte(b[end]) {
            end += 1;
        }
        while end > at + 1 && matches!(b[end - 1], b'.' | b'-') {
            end -= 1;
        }
        if start < at && end > at + 1 && checks::is_email(&text[start..end]) {
            out.push(PiiMatch {
                kind: PiiKind::Email,
                range: start..end,
            });
            after = end;
        }
    }
}

/// The numbers and IBANs of `text`, outside `taken` (the ranges already found, in order).
fn digits_pass(text: &str, kinds: PiiKinds, out: &mut Vec<PiiMatch>, taken: usize) {
    let wants_numbers =
        kinds.contains(PiiKind::Phone) || kinds.contains(PiiKind::Card) || kinds.contains(PiiKind::CnId);
    let b = text.as_bytes();
    let n = b.len();
    let overlaps = |r: &Range<usize>, out: &[PiiMatch]| {
        out[..taken]
            .iter()
            .any(|m| m.range.start < r.end && r.start < m.range.end)
    };
    let mut i = 0;
    while i < n {
        let Some(j) = next_digit(b, i) else { break };
        // An IBAN: two capitals then two digits, at a word's start.
        if j >= 2
            && b[j - 2].is_ascii_uppercase()
            && b[j - 1].is_ascii_uppercase()
            && (j == 2 || !b[j - 3].is_ascii_alphanumeric())
            && b.get(j + 1).is_some_and(u8::is_ascii_digit)
            && kinds.contains(PiiKind::Iban)
        {
            let mut end = j;
            while end < n
                && (b[end].is_ascii_uppercase()
                    || b[end].is_ascii_digit()
                    || b[end] == b' '
                        && b.get(end + 1)
                            .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit()))
            {
                end += 1;
            }
            let before = out.len();
            let r = j - 2..end;
            if !overlaps(&r, out) {
                iban(text, r, out, kinds);
            }
            if out.len() > before {
                i = out[before].range.end;
                continue;
            }
        }
        // A written number: digits and the separators people put in them.
        let mut start = j;
        if start > 0 && b[start - 1] == b'(' {
            start -= 1;
        }
        if start > 0 && b[start - 1] == b'+' {
            start -= 1;
        }
        let mut k = j;
        let mut last = j;
        while k < n {
            match b[k] {
                b'0'..=b'9' => last = k,
                b'X' | b'x' if b[k - 1].is_ascii_digit() => last = k,
                b' ' | b'(' | b')' | b'.' | b'-' => {}
                _ => break,
            }
            k += 1;
        }
        let r = start..last + 1;
        if wants_numbers && r.len() >= 7 && !overlaps(&r, out) {
            numbers(text, r, kinds, out);
        }
        i = k.max(j + 1);
    }
}

/// An IBAN candidate: its country's length of characters (spaces skipped) from the start.
fn iban(text: &str, r: Range<usize>, out: &mut Vec<PiiMatch>, kinds: PiiKinds) {
    let bytes = text.as_bytes();
    if !kinds.contains(PiiKind::Iban) || r.start > 0 && is_token_byte(bytes[r.start - 1]) {
        return;
    }
    let Some(len) = checks::iban_length(&bytes[r.start..r.start + 2]) else {
        return;
    };
    let mut compact = Vec::with_capacity(len);
    let mut end = r.start;
    for (i, &b) in bytes[r.clone()].iter().enumerate() {
        if b != b' ' {
            compact.push(b);
            end = r.start + i + 1;
            if compact.len() == len {
                break;
            }
        }
    }
    let ends_clean = bytes.get(end).is_none_or(|&b| !b.is_ascii_alphanumeric()) || bytes.get(end) == Some(&b' ');
    if compact.len() == len && ends_clean && checks::is_iban(&compact) {
        out.push(PiiMatch {
            kind: PiiKind::Iban,
            range: r.start..end,
        });
    }
}

/// A run of digit groups: resident IDs, cards and phones, each found as the longest run of
/// consecutive groups that validates.
fn numbers(text: &str, r: Range<usize>, kinds: PiiKinds, out: &mut Vec<PiiMatch>) {
    let bytes = text.as_bytes();
    if r.start > 0 && (bytes[r.start - 1].is_ascii_alphanumeric()) {
        return;
    }
    // Groups of digits (an ID's trailing X included) and where each starts and ends.
    let mut groups: Vec<Range<usize>> = Vec::new();
    let mut i = r.start;
    while i < r.end {
        if bytes[i].is_ascii_digit()
            || (matches!(bytes[i], b'X' | b'x') && i > r.start && bytes[i - 1].is_ascii_digit())
        {
            let start = i;
            while i < r.end && (bytes[i].is_ascii_digit() || matches!(bytes[i], b'X' | b'x')) {
                i += 1;
            }
            groups.push(start..i);
        } else {
            i += 1;
        }
    }
    if bytes.get(r.end).is_some_and(|b| b.is_ascii_alphanumeric()) {
        // The run goes on into letters: its last group is part of a word.
        groups.pop();
    }
    let plus = bytes[r.start] == b'+';
    let mut g = 0;
    while g < groups.len() {
        let mut found = None;
        let mut digits = Vec::with_capacity(24);
        for (h, group) in groups.iter().enumerate().skip(g).take(8) {
            if h > g && !joinable(&bytes[groups[h - 1].end..group.start]) {
                break;
            }
            digits.extend_from_slice(&bytes[group.clone()]);
            if digits.len() > 19 {
                break;
            }
            let international = g == 0 && plus || digits.starts_with(b"00");
            if let Some(kind) = classify(&digits, international, kinds) {
                found = Some((h, kind));
            }
        }
        match found {
            Some((h, kind)) => {
                let start = if g == 0 && plus { r.start } else { groups[g].start };
                out.push(PiiMatch {
                    kind,
                    range: start..groups[h].end,
                });
                g = h + 1;
            }
            None => g += 1,
        }
    }
}

/// Separators that may sit inside one written number.
fn joinable(sep: &[u8]) -> bool {
    !sep.is_empty() && sep.len() <= 3 && sep.iter().all(|b| matches!(b, b' ' | b'-' | b'.' | b'(' | b')'))
        || sep.is_empty()
}

/// What a digit string is, if it is sensitive.
fn classify(digits: &[u8], international: bool, kinds: PiiKinds) -> Option<PiiKind> {
    let all_digits = digits.iter().all(u8::is_ascii_digit);
    if kinds.contains(PiiKind::CnId) && checks::is_cn_id(digits) {
        return Some(PiiKind::CnId);
    }
    if !all_digits {
        return None;
    }
    if kinds.contains(PiiKind::Card) && checks::is_card(digits) {
        return Some(PiiKind::Card);
    }
    if kinds.contains(PiiKind::Phone) && is_phone(digits, international) {
        return Some(PiiKind::Phone);
    }
    None
}

/// E.164 (written with `+` or `00`: 8 to 15 digits after it, no leading zero) or a mainland
/// China mobile (11 digits, `1[3-9]`, optionally after `86`).
fn is_phone(digits: &[u8], international: bool) -> bool {
    let cn_mobile = |d: &[u8]| d.len() == 11 && d[0] == b'1' && (b'3'..=b'9').contains(&d[1]);
    if international {
        let d = digits.strip_prefix(b"00").unwrap_or(digits);
        return (8..=15).contains(&d.len()) && d[0] != b'0';
    }
    cn_mobile(digits) || digits.len() == 13 && digits.starts_with(b"86") && cn_mobile(&digits[2..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(text: &str) -> Vec<(PiiKind, &str)> {
        let mut out = Vec::new();
        scan(text, PiiKinds::all(), &mut out);
        out.into_iter().map(|m| (m.kind, &text[m.range])).collect()
    }

    #[test]
    fn valid_values_are_found_with_their_kind() {
        use PiiKind::*;
        assert_eq!(
            found("mail jane.doe@example.com now"),
            [(Email, "jane.doe@example.com")]
        );
        assert_eq!(found("card 4111 1111 1111 1111."), [(Card, "4111 1111 1111 1111")]);
        assert_eq!(
            found("card 4111-1111-1111-1111 exp 2027"),
            [(Card, "4111-1111-1111-1111")]
        );
        assert_eq!(found("身份证11010519491231002X，"), [(CnId, "11010519491231002X")]);
        assert_eq!(found("call +1 (415) 555-2671 today"), [(Phone, "+1 (415) 555-2671")]);
        assert_eq!(found("手机13812345678"), [(Phone, "13812345678")]);
        assert_eq!(found("tel 138 1234 5678"), [(Phone, "138 1234 5678")]);
        assert_eq!(
            found("iban DE89 3704 0044 0532 0130 00 ok"),
            [(Iban, "DE89 3704 0044 0532 0130 00")]
        );
        assert_eq!(found("key AKIAIOSFODNN7EXAMPLE"), [(Secret, "AKIAIOSFODNN7EXAMPLE")]);
        assert_eq!(
            found("use sk-proj-4fG7hJ2kL9mN3pQ8rS1tU6vW0xY5zA"),
            [(Secret, "sk-proj-4fG7hJ2kL9mN3pQ8rS1tU6vW0xY5zA")]
        );
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----";
        assert_eq!(found(&format!("x {pem} y")), [(Secret, pem)]);
    }

    #[test]
    fn look_alikes_pass() {
        for text in [
            "order 4111111111111112 shipped",
            "id 110105194912310021 is wrong",
            "my openai key starts with sk- and is secret",
            "sk-this-is-not-a-real-key-at-all",
            "the date 2024-01-15 and 3.14159265",
            "version 1.2.3.4567",
            "DE89 3704 0044 0532 0130 01",
            "abc13812345678",
            "email me at jane@localhost",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }

    #[test]
    fn joined_numbers_are_split_into_what_validates() {
        use PiiKind::*;
        assert_eq!(
            found("4111 1111 1111 1111 13812345678"),
            [(Card, "4111 1111 1111 1111"), (Phone, "13812345678")]
        );
    }

    #[test]
    fn the_digit_search_finds_the_first_digit_anywhere() {
        let mut text = vec![b'a'; 40];
        assert_eq!(next_digit(&text, 0), None);
        for at in 0..40 {
            for d in [b'0', b'5', b'9'] {
                let mut t = text.clone();
                t[at] = d;
                assert_eq!(next_digit(&t, 0), Some(at), "{at}");
                assert_eq!(next_digit(&t, at + 1), None);
            }
        }
        text[7] = b'/';
        text[8] = b':';
        text[9] = 0xb9;
        assert_eq!(next_digit(&text, 0), None, "the bytes around the digits are not digits");
    }

    #[test]
    fn only_the_asked_kinds_are_reported() {
        let mut out = Vec::new();
        scan(
            "jane@example.com 4111111111111111",
            PiiKinds::default().with(PiiKind::Card),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, PiiKind::Card);
    }
}
