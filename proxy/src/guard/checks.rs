//! The validations that make a pattern sensitive data rather than a look-alike: the Luhn check
//! and issuer ranges of payment cards, the GB 11643 check character and birth date of a
//! mainland China resident ID, an IBAN's country length and mod-97, an e-mail address's parts,
//! and a JWT whose header decodes to JSON.

use base64::Engine;

/// Luhn check over ASCII digits.
pub fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum.is_multiple_of(10)
}

/// A payment card number: a known issuer's prefix and length, and the Luhn check.
pub fn is_card(digits: &[u8]) -> bool {
    let n = digits.len();
    if !(12..=19).contains(&n) || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let prefix = |k: usize| -> u32 { digits[..k].iter().fold(0, |a, d| a * 10 + u32::from(d - b'0')) };
    let (p1, p2, p3, p4) = (prefix(1), prefix(2), prefix(3), prefix(4));
    let issuer = match p1 {
        4 => matches!(n, 13 | 16 | 19), // Visa
        5 => (51..=55).contains(&p2) && n == 16 || matches!(p4, 5018 | 5020 | 5038) && n >= 12, // Mastercard, Maestro
        // Mastercard 2-series, Mir
        2 => n == 16 && ((2221..=2720).contains(&p4) || (2200..=2204).contains(&p4)),
        3 => {
            matches!(p2, 34 | 37) && n == 15                                              // Amex
                || (3528..=3589).contains(&p4) && n >= 16                                 // JCB
                || ((300..=305).contains(&p3) || matches!(p2, 36 | 38 | 39)) && n >= 14
            // Diners
        }
        6 => {
            // Discover, UnionPay
            (p4 == 6011 || (644..=649).contains(&p3) || p2 == 65 || p2 == 62) && n >= 16
                || matches!(p4, 6304 | 6759 | 6761..=6763) && n >= 12 // Maestro
        }
        _ => false,
    };
    issuer && luhn(digits)
}

/// Province codes of mainland China resident IDs (first two digits).
const CN_PROVINCES: &[u8] = &[
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63,
    64, 65, 71, 81, 82, 83,
];

/// A mainland China resident ID (GB 11643-1999): 18 characters, a province code, a valid birth
/// date, and the check character (`X` for 10).
pub fn is_cn_id(id: &[u8]) -> bool {
    if id.len() != 18 || !id[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let num = |r: std::ops::Range<usize>| id[r].iter().fold(0u32, |a, d| a * 10 + u32::from(d - b'0'));
    if !CN_PROVINCES.contains(&(num(0..2) as u8)) {
        return false;
    }
    let (year, month, day) = (num(6..10), num(10..12), num(12..14));
    if !(1900..=2100).contains(&year) || !(1..=12).contains(&month) || day == 0 || day > days_in(year, month) {
        return false;
    }
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let sum: u32 = id[..17].iter().zip(WEIGHTS).map(|(d, w)| u32::from(d - b'0') * w).sum();
    let check = b"10X98765432"[(sum % 11) as usize];
    id[17].to_ascii_uppercase() == check
}

fn days_in(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// IBAN lengths by country (the SWIFT IBAN registry).
const IBAN_LENGTHS: &[(&[u8; 2], usize)] = &[
    (b"AD", 24),
    (b"AE", 23),
    (b"AL", 28),
    (b"AT", 20),
    (b"AZ", 28),
    (b"BA", 20),
    (b"BE", 16),
    (b"BG", 22),
    (b"BH", 22),
    (b"BI", 27),
    (b"BR", 29),
    (b"BY", 28),
    (b"CH", 21),
    (b"CR", 22),
    (b"CY", 28),
    (b"CZ", 24),
    (b"DE", 22),
    (b"DJ", 27),
    (b"DK", 18),
    (b"DO", 28),
    (b"EE", 20),
    (b"EG", 29),
    (b"ES", 24),
    (b"FI", 18),
    (b"FK", 18),
    (b"FO", 18),
    (b"FR", 27),
    (b"GB", 22),
    (b"GE", 22),
    (b"GI", 23),
    (b"GL", 18),
    (b"GR", 27),
    (b"GT", 28),
    (b"HR", 21),
    (b"HU", 28),
    (b"IE", 22),
    (b"IL", 23),
    (b"IQ", 23),
    (b"IS", 26),
    (b"IT", 27),
    (b"JO", 30),
    (b"KW", 30),
    (b"KZ", 20),
    (b"LB", 28),
    (b"LC", 32),
    (b"LI", 21),
    (b"LT", 20),
    (b"LU", 20),
    (b"LV", 21),
    (b"LY", 25),
    (b"MC", 27),
    (b"MD", 24),
    (b"ME", 22),
    (b"MK", 19),
    (b"MN", 20),
    (b"MR", 27),
    (b"MT", 31),
    (b"MU", 30),
    (b"NI", 28),
    (b"NL", 18),
    (b"NO", 15),
    (b"OM", 23),
    (b"PK", 24),
    (b"PL", 28),
    (b"PS", 29),
    (b"PT", 25),
    (b"QA", 29),
    (b"RO", 24),
    (b"RS", 22),
    (b"RU", 33),
    (b"SA", 24),
    (b"SC", 31),
    (b"SD", 18),
    (b"SE", 24),
    (b"SI", 19),
    (b"SK", 24),
    (b"SM", 27),
    (b"SO", 23),
    (b"ST", 25),
    (b"SV", 28),
    (b"TL", 23),
    (b"TN", 24),
    (b"TR", 26),
    (b"UA", 29),
    (b"VA", 22),
    (b"VG", 24),
    (b"XK", 20),
    (b"YE", 30),
];

/// The length of an IBAN of the country its first two letters name.
pub fn iban_length(country: &[u8]) -> Option<usize> {
    IBAN_LENGTHS.iter().find(|(c, _)| &c[..] == country).map(|&(_, n)| n)
}

/// An IBAN without spaces: the country's length and the mod-97 check.
pub fn is_iban(iban: &[u8]) -> bool {
    if iban.len() < 5 || iban_length(&iban[..2]) != Some(iban.len()) {
        return false;
    }
    if !iban[2..4].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let mut rem = 0u32;
    for &c in iban[4..].iter().chain(&iban[..4]) {
        match c {
            b'0'..=b'9' => rem = (rem * 10 + u32::from(c - b'0')) % 97,
            b'A'..=b'Z' => rem = (rem * 100 + u32::from(c - b'A' + 10)) % 97,
            _ => return false,
        }
    }
    rem == 1
}

/// An e-mail address found by the pattern: a local part of at most 64 characters without
/// leading, trailing or doubled dots, and a domain of valid labels under an alphabetic TLD.
pub fn is_email(addr: &str) -> bool {
    let Some((local, domain)) = addr.rsplit_once('@') else {
        return false;
    };
    let dots_ok = |s: &str| !s.starts_with('.') && !s.ends_with('.') && !s.contains("..");
    if local.is_empty() || local.len() > 64 || !dots_ok(local) || domain.len() > 253 || !dots_ok(domain) {
        return false;
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let tld = labels.last().copied().unwrap_or("");
    labels.len() >= 2
        && tld.len() >= 2
        && tld.bytes().all(|b| b.is_ascii_alphabetic())
        && labels
            .iter()
            .all(|l| !l.is_empty() && l.len() <= 63 && !l.starts_with('-') && !l.ends_with('-'))
}

/// A JWT: three base64url parts whose first decodes to a JSON object naming its algorithm.
pub fn is_jwt(token: &str) -> bool {
    let Some(header) = token.split('.').next() else {
        return false;
    };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header.trim_end_matches('=')) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes).is_ok_and(|m| m.contains_key("alg"))
}

/// A provider key's body: long enough, and mixing letters and digits as generated keys do
/// (`sk-this-is-not-a-key` is words).
pub fn looks_generated(body: &str) -> bool {
    let digits = body.bytes().filter(u8::is_ascii_digit).count();
    let letters = body.bytes().filter(u8::is_ascii_alphabetic).count();
    body.len() >= 20 && digits >= 2 && letters >= 6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cards_need_an_issuer_a_length_and_luhn() {
        for good in [
            "4111111111111111",
            "5500005555555559",
            "378282246310005",
            "6011111111111117",
            "3530111333300000",
            "6212345678901232",
            "2223003122003222",
        ] {
            assert!(is_card(good.as_bytes()), "{good}");
        }
        for bad in [
            "4111111111111112",
            "1234567812345678",
            "9111111111111111",
            "41111111111",
        ] {
            assert!(!is_card(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn resident_ids_need_a_valid_date_and_check_character() {
        assert!(is_cn_id(b"11010519491231002X"));
        assert!(is_cn_id(b"11010519491231002x"));
        assert!(is_cn_id(b"440524198001010013"));
        assert!(!is_cn_id(b"110105194912310021"), "wrong check character");
        assert!(!is_cn_id(b"110105194902300028"), "30 February");
        assert!(!is_cn_id(b"99010519491231002X"), "no such province");
    }

    #[test]
    fn ibans_need_their_country_length_and_mod_97() {
        assert!(is_iban(b"DE89370400440532013000"));
        assert!(is_iban(b"GB82WEST12345698765432"));
        assert!(!is_iban(b"DE89370400440532013001"));
        assert!(!is_iban(b"DE8937040044053201300"), "short");
        assert!(!is_iban(b"ZZ89370400440532013000"), "no such country");
    }

    #[test]
    fn emails_and_jwts_are_checked_beyond_the_pattern() {
        assert!(is_email("jane.doe+x@mail.example.co.uk"));
        assert!(!is_email("jane..doe@example.com"));
        assert!(!is_email("a@-bad-.com"));
        assert!(!is_email("a@example.c0m"));
        let jwt = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert!(is_jwt(jwt));
        assert!(!is_jwt("eyJub3QganNvbg.eyJ4IjoxfQ.abc"));
        assert!(looks_generated("proj-Ab3dEf9hIjKlMnOpQrStUv"));
        assert!(!looks_generated("this-is-not-a-real-key-at-all"));
    }
}
