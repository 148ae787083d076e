//! README.md's tour, run as written against `examples/quickstart.toml` and the mock upstream as
//! `scripts/quickstart.sh` starts them: every command goes through one bash session, as a user's
//! terminal would, and its output must match the block the README shows after it (`...` stands
//! for any text; a line of only `...` for any lines). The guide cannot rot without this failing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on setup errors"
)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use common::{start_mock_with, temp_dir, Gateway};
use tollgate_loadtest::mock::MockConfig;

/// A fenced block of the tour: its info string and its text.
struct Block {
    info: String,
    text: String,
}

fn repo_file(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name)).unwrap()
}

/// The fenced blocks between `<!-- tour:start -->` and `<!-- tour:end -->`.
fn tour_blocks(readme: &str) -> Vec<Block> {
    let start = readme.find("<!-- tour:start -->").expect("README has a tour");
    let end = readme.find("<!-- tour:end -->").expect("README's tour ends");
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for line in readme[start..end].lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block {
                    info: info.trim().to_string(),
                    text: String::new(),
                })
            }
            (Some(_), Some("")) => blocks.push(open.take().unwrap()),
            (Some(block), _) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "a tour block is not closed");
    blocks
}

/// `line` matches `pattern`, where each `...` stands for any text.
fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == line;
    };
    if line.len() < first.len() + last.len() || !line.starts_with(first) || !line.ends_with(last) {
        return false;
    }
    let mut rest = &line[first.len()..line.len() - last.len()];
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// Every line matches in order; a pattern line of only `...` takes any number of lines.
fn lines_match(patterns: &[&str], lines: &[&str]) -> bool {
    match patterns.split_first() {
        None => lines.is_empty(),
        Some((&"...", rest)) => (0..=lines.len()).any(|i| lines_match(rest, &lines[i..])),
        Some((pattern, rest)) => !lines.is_empty() && line_matches(pattern, lines[0]) && lines_match(rest, &lines[1..]),
    }
}

fn output_matches(expected: &str, actual: &str) -> bool {
    let patterns: Vec<&str> = expected.lines().map(str::trim_end).collect();
    let lines: Vec<&str> = actual.lines().map(str::trim_end).collect();
    lines_match(&patterns, &lines)
}

#[test]
fn the_matcher_reads_ellipses_as_any_text() {
    assert!(output_matches("a...c\n...\nend", "abbbc\nx\ny\nend\n"));
    assert!(output_matches(
        "{\"id\":\"...\",\"n\":1}",
        "{\"id\":\"chatcmpl-x\",\"n\":1}"
    ));
    assert!(!output_matches("a...c", "abd"));
    assert!(!output_matches("200 200", "200 429"));
    assert!(!output_matches("one\ntwo", "one\n"));
}

/// One bash session, fed the tour's commands one block at a time.
struct Terminal {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: mpsc::Receiver<String>,
    stderr_path: std::path::PathBuf,
    n: usize,
}

impl Terminal {
    fn open(dir: &Path) -> Terminal {
        let stderr_path = dir.join("terminal.stderr");
        let mut child = std::process::Command::new("bash")
            .args(["--noprofile", "--norc"])
            .current_dir(dir)
            .env_remove("OPENAI_BASE_URL")
            .env_remove("OPENAI_API_KEY")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_path).unwrap())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Terminal {
            child,
            stdin,
            lines,
            stderr_path,
            n: 0,
        }
    }

    /// Runs `script` and returns what it printed on stdout. Blocks this worker thread only
    /// (`block_in_place`): the mock upstream keeps serving on the others.
    fn run(&mut self, script: &str) -> String {
        self.n += 1;
        let marker = format!("__tour_block_{}_done__", self.n);
        // The marker starts a line of its own even when the block's output does not end one.
        writeln!(self.stdin, "{script}\necho; echo {marker}").unwrap();
        self.stdin.flush().unwrap();
        let mut out = String::new();
        let done = tokio::task::block_in_place(|| loop {
            match self.lines.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line == marker => return true,
                Ok(line) => {
                    out.push_str(&line);
                    out.push('\n');
                }
                Err(_) => return false,
            }
        });
        let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
        assert!(
            done,
            "the tour's block did not finish:\n{script}\nstdout so far:\n{out}\nstderr:\n{stderr}"
        );
        // Drop the blank line the marker's `echo` added.
        out.truncate(out.len().saturating_sub(1));
        out
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_tour_prints_what_the_readme_shows() {
    let readme = repo_file("README.md");
    let blocks = tour_blocks(&readme);
    assert!(blocks.len() >= 8, "the tour lost its steps");

    // The quickstart, as scripts/quickstart.sh starts it, on ports of our own.
    let mock = start_mock_with(MockConfig {
        name: "mock".into(),
        chunks: 16,
        chunk_delay: Duration::from_millis(40),
        ..MockConfig::default()
    })
    .await;
    let dir = temp_dir();
    // The token common::Gateway gives the gateway as TEST_ADMIN_TOKEN.
    let token = "admin-token-for-tests";
    std::fs::create_dir_all(dir.join(".quickstart")).unwrap();
    std::fs::write(dir.join(".quickstart/admin-token"), format!("{token}\n")).unwrap();
    let config = repo_file("examples/quickstart.toml")
        .replace("127.0.0.1:9000", &mock.addr.to_string())
        .replace("env:TOLLGATE_ADMIN_TOKEN", "env:TEST_ADMIN_TOKEN");
    let keys = dir.join("keys.json");
    let gw = Gateway::start_with(
        &config,
        &["--log-format", "text", "--key-store-file", keys.to_str().unwrap()],
    )
    .await;
    // What the quickstart prints for the user to paste is the tour's first block.
    let script = repo_file("scripts/quickstart.sh").replace("\\$", "$");
    for line in blocks[0].text.lines() {
        assert!(
            script.contains(line.trim()),
            "scripts/quickstart.sh does not print `{line}`"
        );
    }

    let mut terminal = Terminal::open(&dir);
    let ours = |text: &str| {
        text.replace("localhost:8080", &gw.addr.to_string())
            .replace("localhost:9090", &gw.admin.to_string())
    };
    let mut last_output: Option<(String, String)> = None;
    let mut checked = 0;
    for block in &blocks {
        match block.info.as_str() {
            "sh" => {
                let out = terminal.run(&ours(&block.text));
                last_output = Some((block.text.clone(), out));
            }
            "python" => {
                let out = terminal.run(&format!("python3 - <<'TOUR_PY'\n{}TOUR_PY", block.text));
                last_output = Some((block.text.clone(), out));
            }
            "text" => {
                let (command, out) = last_output.take().expect("an output block follows a command");
                assert!(
                    output_matches(&block.text, &out),
                    "the tour's output differs from the README.\ncommand:\n{command}\nREADME shows:\n{}\ngot:\n{out}",
                    block.text
                );
                checked += 1;
            }
            "text log" => {
                let mut found = false;
                for _ in 0..100 {
                    let log = gw.log();
                    found = block
                        .text
                        .lines()
                        .all(|pattern| log.lines().any(|l| line_matches(pattern.trim_end(), l.trim_end())));
                    if found {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                assert!(
                    found,
                    "the gateway's log has no line like the README's:\n{}\nlog:\n{}",
                    block.text,
                    gw.log()
                );
                checked += 1;
            }
            other => panic!("the tour has a block of unknown kind `{other}`"),
        }
    }
    assert!(checked >= 5, "only {checked} outputs were checked");
}
