//! The admin API's holders: `admin.token` and the named `[[admin.tokens]]`.

use super::problems::Problems;
use crate::secret::Secret;

/// A holder of the admin API: named in every audit line of what they do.
pub struct AdminToken {
    pub name: String,
    pub token: Secret<String>,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// `admin.token` (held by `admin`) and the named `[[admin.tokens]]`. Names are unique, and so
/// are tokens: an audit line must name exactly one holder.
pub fn compile(raw: &super::raw::RawAdmin, problems: &mut Problems<'_>) -> Vec<AdminToken> {
    // Holders by their declared names (a name is taken even when its token fails to resolve).
    let mut holders = Vec::new();
    if let Some(t) = &raw.token {
        holders.push(("admin", "admin.token".to_string(), t));
    }
    for (i, t) in raw.tokens.iter().enumerate() {
        let name = t.name.get_ref().as_str();
        let well_formed = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
        if !well_formed || holders.iter().any(|(taken, _, _)| *taken == name) {
            problems.at(
                t.name.span(),
                format_args!(
                    "admin.tokens[{i}].name: `{}` is empty, taken or not made of letters, digits and -_.@",
                    name.chars().take(64).collect::<String>()
                ),
            );
            continue;
        }
        holders.push((name, format!("admin.tokens[{i}].token"), &t.token));
    }
    let mut out: Vec<AdminToken> = Vec::with_capacity(holders.len());
    for (name, field, token) in holders {
        let Some(s) = problems.secret(token, &field) else {
            continue;
        };
        if !s.expose().is_empty() && out.iter().any(|a| a.token.expose() == s.expose()) {
            problems.at(token.span(), format_args!("{field}: the same token as another holder"));
            continue;
        }
        out.push(AdminToken {
            name: name.to_string(),
            token: s,
        });
    }
    out
}
