//! Name patterns for allow-lists: `*` matches any run of characters, `?` exactly one; anything
//! else matches itself. Linear time, no backtracking blow-up, no regex engine.

/// Whether `name` matches `pattern`.
pub fn matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return pattern == name;
    }
    if pattern.is_ascii() && name.is_ascii() {
        return matches_units(pattern.as_bytes(), name.as_bytes(), b'*', b'?');
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    matches_units(&p, &n, '*', '?')
}

/// The matcher over any unit (bytes for ASCII, chars otherwise), without allocating.
fn matches_units<T: PartialEq + Copy>(p: &[T], n: &[T], star_unit: T, any: T) -> bool {
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == any || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == star_unit {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == star_unit {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn stars_and_question_marks() {
        assert!(matches("gpt-4o*", "gpt-4o-mini"));
        assert!(matches("gpt-4o*", "gpt-4o"));
        assert!(!matches("gpt-4o*", "gpt-4"));
        assert!(matches("*", ""));
        assert!(matches("qwen-?", "qwen-7"));
        assert!(!matches("qwen-?", "qwen-72"));
        assert!(matches("*-mini", "gpt-4o-mini"));
        assert!(matches("a*b*c", "a-x-b-y-c"));
        assert!(!matches("a*b*c", "a-x-b-y"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exact2"));
        assert!(matches("深度*", "深度求索"));
    }

    #[test]
    fn pathological_patterns_stay_fast() {
        let name = "a".repeat(10_000);
        assert!(!matches(&format!("{}b", "*a".repeat(50)), &name));
    }
}
