//! `iked --check` on the shipped examples and on broken configurations.

use std::path::{Path, PathBuf};
use std::process::Command;

fn iked() -> Command {
    Command::new(env!("CARGO_BIN_EXE_iked"))
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/iked")
}

#[test]
fn shipped_examples_are_valid() {
    for conf in ["iked.conf", "nss-client.conf"] {
        let out = iked()
            .arg("--check")
            .arg("--config")
            .arg(examples().join(conf))
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{conf}: {stdout}{stderr}");
        assert!(stdout.contains(": valid ("), "{stdout}");
        assert!(!stderr.contains("warning"), "{conf}: {stderr}");
    }
}

#[test]
fn every_policy_example_parses() {
    for f in std::fs::read_dir(examples()).unwrap() {
        let p = f.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with("-policy.conf") {
            gatekey_config::ike_policy::load(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

#[test]
fn errors_in_any_file_are_reported_with_location_and_exit_1() {
    let dir = std::env::temp_dir().join(format!("iked-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("iked.conf"),
        "IkeConfig { IkeRetries 12 }\nStackConfig default { PolicyFile p.conf }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("p.conf"),
        "KeyExchangeRule r {\n  KeyExchangeActionRef missing\n}\n",
    )
    .unwrap();
    let out = iked()
        .arg("--check")
        .arg("-f")
        .arg(dir.join("iked.conf"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    // iked.conf errors stop before the policy files are read.
    assert!(
        stderr
            .contains("iked.conf:1:24: IkeRetries must be a whole number from 1 to 10, found '12'"),
        "{stderr}"
    );

    std::fs::write(
        dir.join("iked.conf"),
        "StackConfig default { PolicyFile p.conf }\n",
    )
    .unwrap();
    let out = iked()
        .arg("--check")
        .arg("-f")
        .arg(dir.join("iked.conf"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "p.conf:2:24: KeyExchangeActionRef missing: no KeyExchangeAction missing is defined"
        ),
        "{stderr}"
    );

    // IKED_FILE is honoured when --config is absent.
    std::fs::write(dir.join("p.conf"), "# empty policy\n").unwrap();
    let out = iked()
        .arg("--check")
        .env("IKED_FILE", dir.join("iked.conf"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
