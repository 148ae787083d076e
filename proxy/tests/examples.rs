//! The bundled example configs stay valid, and `tollgate check` fits CI: `--offline` needs no
//! network and no secrets, and warns about rules that can never admit a request.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name)
}

fn check(args: &[&str], config: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.arg("check").args(args).arg("--config").arg(config);
    for var in [
        "OPENAI_API_KEY",
        "DEEPSEEK_API_KEY",
        "DASHSCOPE_API_KEY",
        "TOLLGATE_ADMIN_TOKEN",
    ] {
        cmd.env_remove(var);
    }
    cmd.output().unwrap()
}

#[test]
fn quickstart_config_checks_without_any_environment() {
    let out = check(&[], &example("quickstart.toml"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn every_shipped_example_passes_an_offline_check() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = check(&["--offline"], &path);
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                out.status.success(),
                "{}: {}{stdout}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            seen += 1;
        }
    }
    assert!(seen >= 2);
    // Offline, the missing variables and the deployment host's CA file are warnings.
    let out = check(&["--offline"], &example("providers.toml"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("warning: line 11: providers[0].api_key: environment variable OPENAI_API_KEY is not set"),
        "{stdout}"
    );
    assert!(stdout.contains("providers[4].ca_file"), "{stdout}");
    // Online, they are errors (and an unresolvable host is one too).
    let out = check(&[], &example("providers.toml"));
    assert!(!out.status.success());
}

#[test]
fn a_rule_that_can_never_admit_is_a_warning_and_a_syntax_error_names_its_line() {
    let dir = common::temp_dir();
    let path = dir.join("t.toml");
    let base = "[[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\n\n\
                [[models]]\nname = \"m\"\ntargets = [{ provider = \"p\" }]\n\n";
    std::fs::write(
        &path,
        format!("{base}[[limits]]\nname = \"tiny\"\ntokens = 1000\nper = \"minute\"\ncompletion_reserve = 2048\n"),
    )
    .unwrap();
    let out = check(&[], &path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("warning: line 11: limits[0]: `tiny` reserves 2048 completion tokens (its completion_reserve)"),
        "{stdout}"
    );
    // Without its own reserve, the gateway's --completion-reserve is what counts.
    std::fs::write(
        &path,
        format!("{base}[[limits]]\nname = \"tiny\"\ntokens = 1000\nper = \"minute\"\n"),
    )
    .unwrap();
    let out = check(&[], &path);
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("warning: line 11: limits[0]: `tiny` reserves 1024 completion tokens (--completion-reserve)"));
    let out = check(&["--completion-reserve", "256"], &path);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("warning"));

    std::fs::write(&path, format!("{base}[[limits]\nname = 1\n")).unwrap();
    let out = check(&[], &path);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 10"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
