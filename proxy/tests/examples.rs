//! The bundled example configs stay valid.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

use std::path::Path;

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name)
}

#[test]
fn quickstart_config_is_valid() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check", "--config"])
        .arg(example("quickstart.toml"))
        .env("TOLLGATE_MOCK_KEY", "sk-test")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn provider_examples_have_no_problem_but_unreachable_hosts() {
    // Without internet the public hosts do not resolve; everything else must be right.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check", "--config"])
        .arg(example("providers.toml"))
        .envs([
            ("TOLLGATE_ADMIN_TOKEN", "t"),
            ("OPENAI_API_KEY", "k"),
            ("DEEPSEEK_API_KEY", "k"),
            ("DASHSCOPE_API_KEY", "k"),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    for line in err.lines().skip(1) {
        assert!(
            line.contains("cannot resolve") || line.contains("ca_file"),
            "unexpected problem: {line}"
        );
    }
}
