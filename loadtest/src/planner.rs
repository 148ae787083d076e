//! The mock's stand-in for a search planner model: a chat request that asks for a JSON object
//! (`response_format: json_object`) and whose instructions describe Tollgate's plan format
//! (`"search"`, `"queries"`, `"domain"`) is answered with a plan made from the conversation's
//! last user turn, the way a small instruction-following model would: greetings and short
//! remarks need no search; every question of a message with several is a query of its own,
//! its keywords without question words; papers and research are `academic`, the company's own
//! matters `private`, the rest `web` (only among the domains the instructions list).

/// Words dropped from queries.
const STOP: &[&str] = &[
    "a", "about", "an", "and", "are", "at", "be", "by", "can", "did", "do", "does", "for", "from", "how", "i", "in",
    "is", "it", "its", "me", "of", "on", "or", "say", "says", "tell", "the", "there", "to", "was", "were", "what",
    "when", "where", "which", "who", "why", "with", "you",
];

const GREETINGS: &[&str] = &["hi", "hello", "hey", "thanks", "thank", "bye", "ok", "okay"];
const ACADEMIC: &[&str] = &[
    "paper",
    "papers",
    "research",
    "study",
    "studies",
    "arxiv",
    "preprint",
    "preprints",
];
const PRIVATE: &[&str] = &["our", "internal", "company", "policy", "policies", "team", "teams"];

/// The plan's JSON text, when `request` is a planning request.
pub fn answer(request: &serde_json::Value) -> Option<String> {
    if request.pointer("/response_format/type").and_then(|t| t.as_str()) != Some("json_object") {
        return None;
    }
    let messages = request.get("messages")?.as_array()?;
    let instructions = messages.first()?.get("content")?.as_str()?;
    if !(instructions.contains("\"search\"") && instructions.contains("\"queries\"") && instructions.contains("domain"))
    {
        return None;
    }
    let shown = messages.last()?.get("content")?.as_str()?;
    let question = shown
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("user: "))
        .unwrap_or_default();
    let max = instructions
        .split("At most ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(3);
    let listed = |d: &str| instructions.contains(&format!("\"{d}\" ("));
    // What is neither papers nor the company's own goes to the web, or to the one domain there is.
    let general = ["web", "private", "academic"]
        .into_iter()
        .find(|d| listed(d))
        .unwrap_or("web");
    let all = words(question);
    // Chinese, Japanese and Korean are written without spaces: their length is in characters.
    let cjk = question
        .chars()
        .filter(|c| ('\u{3040}'..='\u{9fff}').contains(c) || ('\u{ac00}'..='\u{d7af}').contains(c))
        .count();
    let long_enough = all.len() >= 3 || cjk >= 4;
    let needs = long_enough && all.first().is_none_or(|w| !GREETINGS.contains(&w.as_str()));
    let mut queries = Vec::new();
    if needs {
        for part in question.split(['?', ';', '？', '；']) {
            let w = words(part);
            let keywords: Vec<&str> = w.iter().map(String::as_str).filter(|x| !STOP.contains(x)).collect();
            if keywords.is_empty() {
                continue;
            }
            let has = |list: &[&str]| w.iter().any(|x| list.contains(&x.as_str()));
            let domain = if has(ACADEMIC) && listed("academic") {
                "academic"
            } else if has(PRIVATE) && listed("private") {
                "private"
            } else {
                general
            };
            queries.push(serde_json::json!({"q": keywords.join(" "), "domain": domain}));
            if queries.len() == max {
                break;
            }
        }
    }
    let search = !queries.is_empty();
    Some(serde_json::json!({"search": search, "queries": queries}).to_string())
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !(c.is_alphanumeric() || c == '.' || c == '-'))
        .map(|w| w.trim_matches(['.', '-']).to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planning(question: &str) -> serde_json::Value {
        serde_json::json!({
            "model": "m",
            "response_format": {"type": "json_object"},
            "messages": [
                {"role": "system", "content": "Answer {\"search\": .., \"queries\": [..]}. At most 3 queries. domain is one of: \"web\" (x), \"academic\" (y), \"private\" (z)."},
                {"role": "user", "content": format!("Conversation, most recent last:\nuser: {question}\n")},
            ],
        })
    }

    #[test]
    fn plans_follow_the_question() {
        let plan: serde_json::Value = serde_json::from_str(&answer(&planning("Hello there!")).unwrap()).unwrap();
        assert_eq!(plan["search"], false);
        let plan: serde_json::Value = serde_json::from_str(
            &answer(&planning(
                "When was Zephyrine 4.2 released? What do papers say about its collector? What is our upgrade plan?",
            ))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(plan["search"], true);
        let q = plan["queries"].as_array().unwrap();
        assert_eq!(q.len(), 3);
        assert_eq!(
            q[0],
            serde_json::json!({"q": "zephyrine 4.2 released", "domain": "web"})
        );
        assert_eq!(q[1]["domain"], "academic");
        assert_eq!(q[2]["domain"], "private");
        assert!(answer(&serde_json::json!({"messages": []})).is_none());
    }
}
