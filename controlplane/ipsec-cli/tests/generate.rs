//! The man page and completions generate from the clap definitions and mention every primary
//! option and keyword.

#[path = "../examples/common/generate.rs"]
mod generate;

#[test]
fn man_page_and_completions() {
    let dir = std::env::temp_dir().join(format!("ipsec-gen-test-{}", std::process::id()));
    let files = generate::generate(&dir).expect("generate");
    assert_eq!(files.len(), 4);
    let man = std::fs::read_to_string(dir.join("ipsec.1")).expect("man page");
    assert!(man.contains(".TH ipsec 1"), "{man}");
    for opt in [
        "\\-f",
        "\\-k",
        "\\-y",
        "\\-m",
        "\\-i",
        "\\-t",
        "\\-o",
        "\\-w",
        "\\-x",
        "\\-z",
        "\\-p",
        "\\-\\-json",
    ] {
        assert!(man.contains(opt), "man page lacks {opt}");
    }
    assert!(man.contains("Exit status"), "man page lacks the exit codes");
    let bash = std::fs::read_to_string(dir.join("ipsec.bash")).expect("bash");
    assert!(bash.contains("deactivate") && bash.contains("reload"));
    let zsh = std::fs::read_to_string(dir.join("_ipsec")).expect("zsh");
    assert!(zsh.contains("#compdef ipsec"));
    let fish = std::fs::read_to_string(dir.join("ipsec.fish")).expect("fish");
    assert!(fish.contains("complete -c ipsec"));
    let _ = std::fs::remove_dir_all(&dir);
}
