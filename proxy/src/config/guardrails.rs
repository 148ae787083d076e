//! `[[guardrails]]`: content safety rules. Each rule is one detector (a deny list, a regular
//! expression, sensitive data, prompt injection), the direction it reads (the prompt, the
//! answer, or both), what it does on a hit (`block`, `mask`, `reroute`, `log`), and which
//! requests it applies to (public models by glob, consumers by name). See
//! `docs/content-safety.md`.
//!
//! Compiled per public model at load: a request finds its model's rules by index and only
//! checks the consumer filter.

use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;

use super::problems::Problems;
use super::{files, glob};
use crate::guard::deny::DenyList;
use crate::guard::pii::{PiiKind, PiiKinds};
use crate::guard::Detector;

/// Largest deny-list file read.
const MAX_LIST_BYTES: u64 = 16 << 20;

/// Default stream hold-back, in characters, of rules whose matches have no fixed length.
pub const DEFAULT_HOLD_BACK: usize = 64;

/// New characters of a streamed answer per output moderation call, by default.
pub const DEFAULT_WINDOW: usize = 400;

/// A rule as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGuardrail {
    #[serde(skip)]
    pub index: usize,
    /// Named in errors, audit lines and metrics.
    pub name: Spanned<String>,
    /// `deny_list`, `regex`, `pii` or `injection`.
    pub detect: Spanned<String>,
    /// `deny_list`: the phrases, inline.
    #[serde(default)]
    pub phrases: Vec<String>,
    /// `deny_list`: a file of phrases, one per line (`#` comments), relative to the config.
    pub file: Option<Spanned<String>>,
    /// `regex`: the expression (Rust `regex` syntax).
    pub pattern: Option<Spanned<String>>,
    /// `pii`: the kinds (`email`, `phone`, `card`, `cn_id`, `iban`, `secret`); default all.
    #[serde(default)]
    pub kinds: Vec<Spanned<String>>,
    /// `input`, `output`, or both; default `input`.
    #[serde(default)]
    pub on: Vec<Spanned<String>>,
    /// `block`, `mask`, `reroute` (input only) or `log`.
    pub action: Spanned<String>,
    /// With `reroute`: the public model that gets the request instead.
    pub reroute_to: Option<Spanned<String>>,
    /// Public models (names or globs) whose requests the rule reads; default all.
    pub models: Option<Vec<Spanned<String>>>,
    /// Consumers whose requests the rule reads; default all.
    pub consumers: Option<Vec<Spanned<String>>>,
    /// Message roles read on input; default all (`injection`: `user` and `tool`).
    pub roles: Option<Vec<Spanned<String>>>,
    /// On output streams: characters held back so a match is decided before it is sent
    /// (default: the longest phrase for deny lists, 64 for the others).
    pub hold_back: Option<Spanned<usize>>,
    /// `moderation`: the service's URL (an OpenAI `/v1/moderations`, or a webhook).
    pub url: Option<Spanned<String>>,
    /// `moderation`: `openai` (the `/v1/moderations` protocol, the default) or `webhook`
    /// (`{"texts": [...]}` in, `{"flagged": bool, "categories": [...]}` out).
    pub protocol: Option<Spanned<String>>,
    /// `moderation`: a secret reference for the service's key (`Authorization: Bearer`).
    pub api_key: Option<Spanned<String>>,
    /// `moderation` with `openai`: the moderation model to ask for.
    pub model: Option<String>,
    /// `moderation`: only these flagged categories count; default any flag.
    #[serde(default)]
    pub categories: Vec<String>,
    /// `moderation`: how long to wait for the service (default 1000).
    pub timeout_ms: Option<Spanned<u64>>,
    /// `moderation`: when the service fails or is late, `allow` (fail open, the default) or
    /// `block` (fail closed).
    pub on_error: Option<Spanned<String>>,
    /// `moderation` on output: new characters of a streamed answer per call (default 400).
    pub window: Option<Spanned<usize>>,
}

/// How a moderation service is spoken to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModerationProtocol {
    OpenAi,
    Webhook,
}

/// An external moderation service.
#[derive(Debug)]
pub struct Moderation {
    /// Where it is (its URL's path is the `path_prefix`), with its key.
    pub endpoint: super::Provider,
    pub protocol: ModerationProtocol,
    pub model: Option<String>,
    /// Flagged categories that count (empty: any flag).
    pub categories: Vec<String>,
    pub timeout: std::time::Duration,
    /// A failure or a timeout blocks the request (otherwise it passes, and is recorded).
    pub fail_closed: bool,
    /// On output: new characters of a streamed answer judged per call.
    pub window: usize,
}

/// What a rule checks: in-process detectors, or an external moderation service.
#[derive(Debug)]
pub enum Check {
    Local(Detector),
    Moderation(Box<Moderation>),
}

impl super::raw::Element for RawGuardrail {
    fn set_index(&mut self, index: usize) {
        self.index = index;
    }
}

/// What a rule does on a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Block,
    Mask,
    Reroute,
    Log,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Block => "block",
            Action::Mask => "mask",
            Action::Reroute => "reroute",
            Action::Log => "log",
        }
    }
}

/// Message roles, as a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles(u8);

impl Roles {
    const NAMES: [&'static str; 5] = ["system", "user", "assistant", "tool", "developer"];

    pub fn all() -> Roles {
        Roles(0x1f)
    }

    fn of(name: &str) -> Option<u8> {
        let i = Self::NAMES.iter().position(|n| *n == name)?;
        Some(1 << i)
    }

    /// Whether a message of role `role` is read (a role outside the known ones, or none, is
    /// read as a user's).
    pub fn reads(self, role: &str) -> bool {
        let bit = Self::of(role).or_else(|| Self::of(if role == "function" { "tool" } else { "user" }));
        bit.is_some_and(|b| self.0 & b != 0)
    }
}

/// One compiled rule.
#[derive(Debug)]
pub struct GuardRule {
    pub name: String,
    pub check: Check,
    pub input: bool,
    pub output: bool,
    pub action: Action,
    /// With `reroute`: the public model to send the request to.
    pub reroute_to: Option<String>,
    pub models: Option<Vec<String>>,
    pub consumers: Option<Vec<String>>,
    pub roles: Roles,
    /// Stream hold-back of this rule, in normalised characters.
    pub hold_back: usize,
}

impl GuardRule {
    /// The in-process detector of the rule (`None` for external moderation).
    pub fn local(&self) -> Option<&Detector> {
        match &self.check {
            Check::Local(d) => Some(d),
            Check::Moderation(_) => None,
        }
    }

    /// The moderation service of the rule (`None` for in-process detectors).
    pub fn moderation(&self) -> Option<&Moderation> {
        match &self.check {
            Check::Moderation(m) => Some(m),
            Check::Local(_) => None,
        }
    }

    pub fn covers_model(&self, model: &str) -> bool {
        self.models
            .as_ref()
            .is_none_or(|ms| ms.iter().any(|p| glob::matches(p, model)))
    }

    pub fn covers_consumer(&self, consumer: Option<&str>) -> bool {
        match (&self.consumers, consumer) {
            (None, _) => true,
            (Some(names), Some(c)) => names.iter().any(|n| n == c),
            (Some(_), None) => false,
        }
    }
}

/// The rules of one public model, by direction, and its stream hold-back.
#[derive(Debug, Default)]
pub struct ModelGuards {
    pub input: Vec<Arc<GuardRule>>,
    pub output: Vec<Arc<GuardRule>>,
    /// The longest hold-back of the output rules.
    pub hold_back: usize,
}

impl ModelGuards {
    pub fn is_empty(&self) -> bool {
        self.input.is_empty() && self.output.is_empty()
    }
}

/// Compile every rule; then each model's share, by route index (`None` for a model without
/// rules).
pub fn compile(
    raw: &[RawGuardrail],
    model_names: &[String],
    consumer_names: &[&str],
    base_dir: Option<&Path>,
    problems: &mut Problems<'_>,
) -> Vec<Option<Arc<ModelGuards>>> {
    let mut rules: Vec<Arc<GuardRule>> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for r in raw {
        let name = r.name.get_ref();
        if name.is_empty() || !seen.insert(name.clone()) {
            problems.at(
                r.name.span(),
                format_args!("guardrails[{}].name: must be unique and not empty", r.index),
            );
            continue;
        }
        if let Some(rule) = compile_rule(r, model_names, consumer_names, base_dir, problems) {
            rules.push(Arc::new(rule));
        }
    }
    model_names
        .iter()
        .map(|model| {
            let mut g = ModelGuards::default();
            for rule in rules.iter().filter(|r| r.covers_model(model)) {
                if rule.input {
                    g.input.push(rule.clone());
                }
                if rule.output {
                    g.output.push(rule.clone());
                    g.hold_back = g.hold_back.max(rule.hold_back);
                }
            }
            (!g.is_empty()).then(|| Arc::new(g))
        })
        .collect()
}

fn compile_rule(
    r: &RawGuardrail,
    model_names: &[String],
    consumer_names: &[&str],
    base_dir: Option<&Path>,
    problems: &mut Problems<'_>,
) -> Option<GuardRule> {
    let i = r.index;
    let at = |field: &str| format!("guardrails[{i}].{field}");
    let before = problems.len();
    let detect = r.detect.get_ref().as_str();
    let detector = match detect {
        "deny_list" => deny_list(r, base_dir, problems),
        "regex" => match &r.pattern {
            Some(p) => match regex::Regex::new(p.get_ref()) {
                Ok(re) if re.is_match("") => {
                    problems.at(p.span(), format_args!("{}: matches the empty text", at("pattern")));
                    None
                }
                Ok(re) => Some(Detector::Regex(Arc::new(re))),
                Err(e) => {
                    problems.at(p.span(), format_args!("{}: {e}", at("pattern")));
                    None
                }
            },
            None => {
                problems.at(
                    r.detect.span(),
                    format_args!("{}: `regex` needs `pattern`", at("detect")),
                );
                None
            }
        },
        "pii" => {
            let mut kinds = PiiKinds::default();
            for k in &r.kinds {
                match PiiKind::from_name(k.get_ref()) {
                    Some(kind) => kinds = kinds.with(kind),
                    None => problems.at(
                        k.span(),
                        format_args!(
                            "{}: unknown kind `{}`, expected email, phone, card, cn_id, iban or secret",
                            at("kinds"),
                            k.get_ref()
                        ),
                    ),
                }
            }
            Some(Detector::Pii(if r.kinds.is_empty() { PiiKinds::all() } else { kinds }))
        }
        "injection" => Some(Detector::Injection),
        "moderation" => None,
        other => {
            problems.at(
                r.detect.span(),
                format_args!(
                    "{}: unknown detector `{other}`, expected deny_list, regex, pii, injection or moderation",
                    at("detect")
                ),
            );
            None
        }
    };
    let (mut input, mut output) = (r.on.is_empty(), false);
    for d in &r.on {
        match d.get_ref().as_str() {
            "input" => input = true,
            "output" => output = true,
            other => problems.at(
                d.span(),
                format_args!("{}: `{other}`, expected input or output", at("on")),
            ),
        }
    }
    let action = match r.action.get_ref().as_str() {
        "block" => Action::Block,
        "mask" => Action::Mask,
        "reroute" => Action::Reroute,
        "log" => Action::Log,
        other => {
            problems.at(
                r.action.span(),
                format_args!("{}: `{other}`, expected block, mask, reroute or log", at("action")),
            );
            Action::Log
        }
    };
    if action == Action::Mask && matches!(detect, "injection" | "moderation") {
        problems.at(
            r.action.span(),
            format_args!("{}: {detect} cannot be masked; block, reroute or log it", at("action")),
        );
    }
    let moderation = if detect == "moderation" {
        moderation(r, base_dir, problems)
    } else {
        for (field, given) in [
            ("url", r.url.as_ref().map(|u| u.span())),
            ("protocol", r.protocol.as_ref().map(|p| p.span())),
            ("window", r.window.as_ref().map(|w| w.span())),
        ] {
            if let Some(span) = given {
                problems.at(span, format_args!("{}: only with detect = \"moderation\"", at(field)));
            }
        }
        None
    };
    if action == Action::Reroute && output {
        problems.at(
            r.action.span(),
            format_args!(
                "{}: reroute applies to input only (the answer is already made)",
                at("action")
            ),
        );
    }
    let reroute_to = match (&r.reroute_to, action) {
        (Some(to), Action::Reroute) => {
            if !model_names.contains(to.get_ref()) {
                problems.at(
                    to.span(),
                    format_args!("{}: unknown model `{}`", at("reroute_to"), to.get_ref()),
                );
            }
            Some(to.get_ref().clone())
        }
        (None, Action::Reroute) => {
            problems.at(
                r.action.span(),
                format_args!("{}: reroute needs `reroute_to`", at("action")),
            );
            None
        }
        (Some(to), _) => {
            problems.at(
                to.span(),
                format_args!("{}: only with action = \"reroute\"", at("reroute_to")),
            );
            None
        }
        (None, _) => None,
    };
    let models = r
        .models
        .as_ref()
        .map(|ms| ms.iter().map(|m| m.get_ref().clone()).collect::<Vec<_>>());
    if let Some(ms) = &r.models {
        for m in ms {
            if !model_names.iter().any(|n| glob::matches(m.get_ref(), n)) {
                problems.warn(
                    m.span(),
                    format_args!("{}: `{}` matches no model", at("models"), m.get_ref()),
                );
            }
        }
    }
    if let Some(cs) = &r.consumers {
        for c in cs {
            if !consumer_names.contains(&c.get_ref().as_str()) {
                problems.at(
                    c.span(),
                    format_args!("{}: unknown consumer `{}`", at("consumers"), c.get_ref()),
                );
            }
        }
    }
    let roles = match &r.roles {
        None if detect == "injection" => Roles(Roles::of("user").unwrap_or(0) | Roles::of("tool").unwrap_or(0)),
        None => Roles::all(),
        Some(list) => {
            let mut bits = 0;
            for role in list {
                match Roles::of(role.get_ref()) {
                    Some(b) => bits |= b,
                    None => problems.at(
                        role.span(),
                        format_args!(
                            "{}: unknown role `{}`, expected system, user, assistant, tool or developer",
                            at("roles"),
                            role.get_ref()
                        ),
                    ),
                }
            }
            Roles(bits)
        }
    };
    let hold_back = match (&r.hold_back, &detector) {
        (Some(h), _) if *h.get_ref() == 0 || *h.get_ref() > 4096 => {
            problems.at(h.span(), format_args!("{}: from 1 to 4096 characters", at("hold_back")));
            0
        }
        (Some(h), Some(Detector::Deny(list))) if *h.get_ref() < list.longest_chars() => {
            problems.warn(
                h.span(),
                format_args!(
                    "{}: {} is shorter than the longest phrase ({} characters): the start of a phrase may be sent before it is blocked",
                    at("hold_back"),
                    h.get_ref(),
                    list.longest_chars()
                ),
            );
            *h.get_ref()
        }
        (Some(h), _) => *h.get_ref(),
        (None, Some(Detector::Deny(list))) => list.longest_chars(),
        (None, Some(_)) => DEFAULT_HOLD_BACK,
        // A moderation service re-reads the last quarter of a window with the next one.
        (None, None) => moderation.as_ref().map_or(DEFAULT_HOLD_BACK, |m| m.window / 4),
    };
    if problems.len() > before {
        return None;
    }
    Some(GuardRule {
        name: r.name.get_ref().clone(),
        check: match (detector, moderation) {
            (Some(d), _) => Check::Local(d),
            (None, Some(m)) => Check::Moderation(Box::new(m)),
            (None, None) => return None,
        },
        input,
        output,
        action,
        reroute_to,
        models,
        consumers: r
            .consumers
            .as_ref()
            .map(|cs| cs.iter().map(|c| c.get_ref().clone()).collect()),
        roles,
        hold_back,
    })
}

fn moderation(r: &RawGuardrail, base_dir: Option<&Path>, problems: &mut Problems<'_>) -> Option<Moderation> {
    let i = r.index;
    let Some(url) = &r.url else {
        problems.at(
            r.detect.span(),
            format_args!("guardrails[{i}].detect: `moderation` needs `url`"),
        );
        return None;
    };
    let protocol = match r.protocol.as_ref().map(|p| p.get_ref().as_str()) {
        None | Some("openai") => ModerationProtocol::OpenAi,
        Some("webhook") => ModerationProtocol::Webhook,
        Some(other) => {
            let span = r.protocol.as_ref().map_or(0..0, |p| p.span());
            problems.at(
                span,
                format_args!("guardrails[{i}].protocol: `{other}`, expected openai or webhook"),
            );
            return None;
        }
    };
    let fail_closed = match r.on_error.as_ref().map(|e| e.get_ref().as_str()) {
        None | Some("allow") => false,
        Some("block") => true,
        Some(other) => {
            let span = r.on_error.as_ref().map_or(0..0, |e| e.span());
            problems.at(
                span,
                format_args!("guardrails[{i}].on_error: `{other}`, expected allow or block"),
            );
            return None;
        }
    };
    let window = r.window.as_ref().map_or(DEFAULT_WINDOW, |w| *w.get_ref());
    if !(16..=32_768).contains(&window) {
        let span = r.window.as_ref().map_or(0..0, |w| w.span());
        problems.at(
            span,
            format_args!("guardrails[{i}].window: from 16 to 32768 characters"),
        );
        return None;
    }
    let timeout_ms = r.timeout_ms.as_ref().map_or(1000, |t| *t.get_ref());
    if !(1..=60_000).contains(&timeout_ms) {
        let span = r.timeout_ms.as_ref().map_or(0..0, |t| t.span());
        problems.at(span, format_args!("guardrails[{i}].timeout_ms: from 1 to 60000"));
        return None;
    }
    let raw = super::raw::RawProvider {
        index: i,
        name: r.name.clone(),
        kind: super::raw::ProviderKind::Openai,
        base_url: url.clone(),
        api_key: r.api_key.clone(),
        ca_file: None,
    };
    let endpoint = super::providers::compile_as(&raw, &format!("guardrails[{i}]"), "url", base_dir, problems)?;
    Some(Moderation {
        endpoint,
        protocol,
        model: r.model.clone(),
        categories: r.categories.clone(),
        timeout: std::time::Duration::from_millis(timeout_ms),
        fail_closed,
        window,
    })
}

fn deny_list(r: &RawGuardrail, base_dir: Option<&Path>, problems: &mut Problems<'_>) -> Option<Detector> {
    let i = r.index;
    let mut phrases = r.phrases.clone();
    if let Some(file) = &r.file {
        let path = files::resolve(base_dir, file.get_ref());
        match files::read(&path, MAX_LIST_BYTES) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(text) => phrases.extend(DenyList::parse_file(&text)),
                Err(_) => {
                    problems.at(
                        file.span(),
                        format_args!("guardrails[{i}].file: {} is not UTF-8", path.display()),
                    );
                    return None;
                }
            },
            Err(e) => {
                problems.at(file.span(), format_args!("guardrails[{i}].file: {e}"));
                return None;
            }
        }
    }
    match DenyList::new(&phrases) {
        Ok(list) => Some(Detector::Deny(Arc::new(list))),
        Err(e) => {
            problems.at(r.name.span(), format_args!("guardrails[{i}]: deny list: {e}"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::load_str;

    const BASE: &str = r#"
[[providers]]
name = "p"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[models]]
name = "public"
targets = [{ provider = "p" }]

[[models]]
name = "private"
targets = [{ provider = "p" }]
"#;

    fn problems(extra: &str) -> String {
        match load_str(&format!("{BASE}{extra}"), "t.toml", None, 1) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn rules_compile_per_model_and_direction() {
        let text = format!(
            "{BASE}\n[[guardrails]]\nname = \"pii\"\ndetect = \"pii\"\naction = \"mask\"\non = [\"input\", \"output\"]\nmodels = [\"pub*\"]\n\n\
             [[guardrails]]\nname = \"ids\"\ndetect = \"pii\"\nkinds = [\"cn_id\"]\naction = \"reroute\"\nreroute_to = \"private\"\nmodels = [\"public\"]\n\n\
             [[guardrails]]\nname = \"words\"\ndetect = \"deny_list\"\nphrases = [\"launch codes\"]\naction = \"block\"\non = [\"output\"]\n"
        );
        let s = load_str(&text, "t.toml", None, 1).unwrap();
        let public = s.guards_of(s.route("public").unwrap()).unwrap();
        assert_eq!(public.input.len(), 2);
        assert_eq!(public.output.len(), 2);
        assert_eq!(public.hold_back, 64);
        let private = s.guards_of(s.route("private").unwrap()).unwrap();
        assert!(private.input.is_empty());
        assert_eq!(private.output.len(), 1);
        assert_eq!(private.hold_back, "launch codes".len());
    }

    #[test]
    fn bad_rules_are_refused_with_their_field() {
        let cases = [
            ("detect = \"magic\"\naction = \"block\"", "unknown detector `magic`"),
            (
                "detect = \"regex\"\npattern = \"(\"\naction = \"block\"",
                "guardrails[0].pattern",
            ),
            (
                "detect = \"regex\"\npattern = \"a*\"\naction = \"block\"",
                "matches the empty text",
            ),
            (
                "detect = \"pii\"\nkinds = [\"dna\"]\naction = \"mask\"",
                "unknown kind `dna`",
            ),
            (
                "detect = \"injection\"\naction = \"mask\"",
                "injection cannot be masked",
            ),
            ("detect = \"pii\"\naction = \"reroute\"", "reroute needs `reroute_to`"),
            (
                "detect = \"pii\"\naction = \"reroute\"\nreroute_to = \"nope\"",
                "unknown model `nope`",
            ),
            (
                "detect = \"pii\"\naction = \"reroute\"\nreroute_to = \"private\"\non = [\"output\"]",
                "input only",
            ),
            (
                "detect = \"deny_list\"\naction = \"block\"",
                "deny list: the list has no phrase",
            ),
            (
                "detect = \"deny_list\"\nfile = \"missing.txt\"\naction = \"block\"",
                "guardrails[0].file",
            ),
            (
                "detect = \"pii\"\naction = \"block\"\nconsumers = [\"ghost\"]",
                "unknown consumer `ghost`",
            ),
            (
                "detect = \"moderation\"\nurl = \"http://127.0.0.1:9/m\"\non = [\"output\"]\nwindow = 4\naction = \"block\"",
                "guardrails[0].window: from 16",
            ),
            (
                "detect = \"pii\"\nwindow = 100\naction = \"block\"",
                "guardrails[0].window: only with detect = \"moderation\"",
            ),
            (
                "detect = \"moderation\"\nurl = \"http://127.0.0.1:9/m\"\non = [\"output\"]\naction = \"mask\"",
                "moderation cannot be masked",
            ),
        ];
        for (body, want) in cases {
            let p = problems(&format!("\n[[guardrails]]\nname = \"r\"\n{body}\n"));
            assert!(p.contains(want), "{body}: {p}");
        }
    }
}
