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
fn quickstart_config_checks_with_the_token_its_script_exports() {
    // scripts/quickstart.sh exports the admin token; with it the file is valid as it stands.
    let out = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["check", "--config"])
        .arg(example("quickstart.toml"))
        .env("TOLLGATE_ADMIN_TOKEN", "a-token")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("warning"));
    // Without it, a gateway would not start: the check says which variable is missing.
    let out = check(&[], &example("quickstart.toml"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("TOLLGATE_ADMIN_TOKEN is not set"));
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

#[test]
fn check_reports_every_problem_in_one_run_in_the_files_order() {
    let dir = common::temp_dir();
    let path = dir.join("t.toml");
    let text = "\
[[providers]]
name = \"a\"
kind = \"openai\"
base_url = \"https://a.example/v1\"
api_key = \"env:TOLLGATE_TEST_UNSET_VARIABLE\"
ca_file = \"/nonexistent/ca.pem\"

[[providers]]
name = \"b\"
kind = \"grpc\"
base_url = \"http://127.0.0.1:9/v1\"

[[models]]
name = \"m\"
targets = [{ provider = \"b\" }, { provider = \"nobody\" }]

[[models]
name = \"broken\"

[[limits]]
name = \"l\"
tokens = 100
per = \"fortnight\"
";
    std::fs::write(&path, text).unwrap();
    let out = check(&["--offline"], &path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let lines: Vec<&str> = stderr.lines().skip(1).map(str::trim).collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("`{needle}` is not reported:\n{stderr}"))
    };
    // A bad variant, a dangling reference, a syntax error and a bad value, in the file's order;
    // the reference to the unreadable provider `b` is not reported again.
    let order = [
        at("line 10: providers[1]: unknown variant `grpc`"),
        at("line 15: models[0].targets[1].provider: unknown provider `nobody`"),
        at("line 17: "),
        at("line 23: limits[0].per"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{stderr}");
    assert!(!stderr.contains("unknown provider `b`"), "{stderr}");
    // Offline, the missing variable and CA file are warnings beside the errors.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("TOLLGATE_TEST_UNSET_VARIABLE"), "{stdout}{stderr}");
    assert!(stdout.contains("providers[0].ca_file"), "{stdout}{stderr}");
    // Online, they are errors in the same run.
    let out = check(&[], &path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("line 5: providers[0].api_key"), "{stderr}");
    assert!(stderr.contains("line 6: providers[0].ca_file"), "{stderr}");
    assert!(stderr.contains("line 17: "), "{stderr}");
}

#[test]
fn a_device_named_as_a_file_is_refused_not_read() {
    let dir = common::temp_dir();
    let path = dir.join("t.toml");
    let text = "[admin]\ntoken = \"file:/dev/zero\"\n\n\
                [[tokenizers]]\nname = \"t\"\nfile = \"/dev/zero\"\n\n\
                [[providers]]\nname = \"p\"\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\nca_file = \"/dev/zero\"\n\n\
                [[models]]\nname = \"m\"\ntargets = [{ provider = \"p\" }]\n";
    std::fs::write(&path, text).unwrap();
    let out = check(&[], &path);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("line 2: admin.token"), "{stderr}");
    assert!(
        stderr.contains("line 6: tokenizers[0].file: /dev/zero: not a regular file"),
        "{stderr}"
    );
    assert!(stderr.contains("line 12: providers[0].ca_file"), "{stderr}");
    assert_eq!(stderr.matches("not a regular file").count(), 3, "{stderr}");
}
