//! Checks on a command's result: exit status, regexes, JSON subset.

use serde_json::Value;

use crate::scenario::{ExitCheck, Step};

/// How a process ended, shell style: signal N is 128+N.
pub fn describe_exit(code: Option<i32>) -> String {
    match code {
        Some(c) if c > 128 => format!("{c} (signal {})", c - 128),
        Some(c) => c.to_string(),
        None => "none (killed after the timeout)".into(),
    }
}

/// The first failing check of `step` on this output, or `None` if all pass.
pub fn first_failure(step: &Step, code: Option<i32>, stdout: &str, stderr: &str) -> Option<String> {
    let exit_ok = match (&step.exit, code) {
        (ExitCheck::Any, _) => true,
        (_, None) => false,
        (ExitCheck::Code(want), Some(c)) => *want == c,
        (ExitCheck::NonZero, Some(c)) => c != 0,
    };
    if !exit_ok {
        let want = match &step.exit {
            ExitCheck::Code(c) => c.to_string(),
            ExitCheck::NonZero => "non-zero".into(),
            ExitCheck::Any => "any".into(),
        };
        return Some(format!(
            "exit status {}, expected {want}{}",
            describe_exit(code),
            tail_hint(stdout, stderr)
        ));
    }
    let both = if stderr.is_empty() {
        stdout.to_string()
    } else {
        format!("{stdout}{stderr}")
    };
    for r in &step.regex {
        match regex_lite::Regex::new(r) {
            Ok(re) if re.is_match(&both) => {}
            Ok(_) => {
                return Some(format!(
                    "regex '{r}' did not match{}",
                    tail_hint(stdout, stderr)
                ));
            }
            Err(e) => return Some(format!("bad regex '{r}': {e}")),
        }
    }
    for r in &step.not_regex {
        match regex_lite::Regex::new(r) {
            Ok(re) => {
                if let Some(m) = re.find(&both) {
                    let line = both
                        .get(..m.start())
                        .map(|s| s.lines().count().max(1))
                        .unwrap_or(1);
                    let text: String = m.as_str().chars().take(80).collect();
                    return Some(format!(
                        "not_regex '{r}' matched `{text}` (output line {line})"
                    ));
                }
            }
            Err(e) => return Some(format!("bad regex '{r}': {e}")),
        }
    }
    if let Some(want) = &step.json {
        let got: Value = match serde_json::from_str(stdout.trim()) {
            Ok(v) => v,
            Err(e) => {
                return Some(format!(
                    "stdout is not JSON ({e}){}",
                    tail_hint(stdout, stderr)
                ));
            }
        };
        if let Some(why) = json_mismatch(want, &got, "$") {
            return Some(format!("JSON: {why}"));
        }
    }
    None
}

/// The last line of output, to make a failure line self-explaining.
fn tail_hint(stdout: &str, stderr: &str) -> String {
    let last = stderr
        .lines()
        .rev()
        .chain(stdout.lines().rev())
        .find(|l| !l.trim().is_empty());
    match last {
        Some(l) => format!(
            " (last output: `{}`)",
            l.trim().chars().take(100).collect::<String>()
        ),
        None => " (no output)".into(),
    }
}

/// Does `actual` contain `expected`? Objects: every expected key matches;
/// arrays: every expected element matches a distinct actual element, in any
/// order; numbers compare by value; everything else must be equal.
pub fn json_subset(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| json_subset(ev, av))),
        (Value::Array(e), Value::Array(a)) => {
            let mut used = vec![false; a.len()];
            assign(e, a, &mut used)
        }
        (Value::Number(e), Value::Number(a)) => match (e.as_f64(), a.as_f64()) {
            (Some(x), Some(y)) => x == y,
            _ => e == a,
        },
        (e, a) => e == a,
    }
}

/// Match each expected element to a distinct actual one (backtracking).
fn assign(expected: &[Value], actual: &[Value], used: &mut Vec<bool>) -> bool {
    let Some((first, rest)) = expected.split_first() else {
        return true;
    };
    for (i, a) in actual.iter().enumerate() {
        if used.get(i).copied().unwrap_or(true) || !json_subset(first, a) {
            continue;
        }
        if let Some(u) = used.get_mut(i) {
            *u = true;
        }
        if assign(rest, actual, used) {
            return true;
        }
        if let Some(u) = used.get_mut(i) {
            *u = false;
        }
    }
    false
}

/// Why `actual` does not contain `expected` (a path and the difference).
pub fn json_mismatch(expected: &Value, actual: &Value, path: &str) -> Option<String> {
    if json_subset(expected, actual) {
        return None;
    }
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            for (k, ev) in e {
                let p = format!("{path}.{k}");
                match a.get(k) {
                    None => return Some(format!("{p} is missing")),
                    Some(av) => {
                        if let Some(why) = json_mismatch(ev, av, &p) {
                            return Some(why);
                        }
                    }
                }
            }
            None
        }
        (Value::Array(e), Value::Array(a)) => {
            for (i, ev) in e.iter().enumerate() {
                if !a.iter().any(|av| json_subset(ev, av)) {
                    let hint = match a.as_slice() {
                        [only] => json_mismatch(ev, only, &format!("{path}[0]"))
                            .map(|w| format!(" ({w})"))
                            .unwrap_or_default(),
                        _ => String::new(),
                    };
                    return Some(format!(
                        "no element of {path} (of {}) matches expected element {i} {}{hint}",
                        a.len(),
                        short(ev)
                    ));
                }
            }
            Some(format!(
                "{path}: the expected elements cannot all match distinct elements"
            ))
        }
        (e, a) => Some(format!("{path} is {}, expected {}", short(a), short(e))),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{Action, Step};

    fn j(s: &str) -> Value {
        serde_json::from_str(s).unwrap_or(Value::Null)
    }

    #[test]
    fn subsets() {
        let actual = j(
            r#"[{"ifname":"lo","addr_info":[]},{"ifname":"eth0","mtu":1500,
            "addr_info":[{"family":"inet6","local":"fe80::1"},{"family":"inet","local":"192.0.2.1","prefixlen":24}]}]"#,
        );
        assert!(json_subset(
            &j(r#"[{"ifname":"eth0","addr_info":[{"local":"192.0.2.1","prefixlen":24.0}]}]"#),
            &actual
        ));
        assert!(!json_subset(&j(r#"[{"ifname":"eth1"}]"#), &actual));
        // two expected elements need two distinct actual ones
        assert!(!json_subset(
            &j(r#"[{"a":1},{"a":1}]"#),
            &j(r#"[{"a":1,"b":2}]"#)
        ));
        assert!(json_subset(
            &j(r#"[{"a":1},{"b":2}]"#),
            &j(r#"[{"a":1,"b":2},{"b":2}]"#)
        ));
        let why = json_mismatch(
            &j(r#"{"sa":{"state":"UP"}}"#),
            &j(r#"{"sa":{"state":"DOWN"}}"#),
            "$",
        );
        assert_eq!(
            why.as_deref(),
            Some(r#"$.sa.state is "DOWN", expected "UP""#)
        );
        let why = json_mismatch(&j(r#"{"x":1}"#), &j(r#"{}"#), "$").unwrap_or_default();
        assert!(why.contains("$.x is missing"), "{why}");
    }

    fn step(exit: ExitCheck, regex: &[&str], not_regex: &[&str], json: Option<&str>) -> Step {
        Step {
            index: 1,
            line: 1,
            name: "t".into(),
            host: "a".into(),
            action: Action::Run("true".into()),
            timeout: 1.0,
            exit,
            regex: regex.iter().map(|s| s.to_string()).collect(),
            not_regex: not_regex.iter().map(|s| s.to_string()).collect(),
            json: json.map(j),
            expect_failure: false,
        }
    }

    #[test]
    fn output_checks() {
        let s = step(ExitCheck::Code(0), &[r"3 received"], &[r"(?i)error"], None);
        assert_eq!(
            first_failure(&s, Some(0), "3 packets, 3 received\n", ""),
            None
        );
        let f = first_failure(&s, Some(1), "x\n", "boom\n").unwrap_or_default();
        assert!(f.starts_with("exit status 1, expected 0"), "{f}");
        assert!(f.contains("`boom`"), "{f}");
        let f = first_failure(&s, Some(0), "2 received\n", "").unwrap_or_default();
        assert!(f.contains("did not match"), "{f}");
        let f = first_failure(&s, Some(0), "3 received\nan Error here\n", "").unwrap_or_default();
        assert!(f.contains("matched `Error` (output line 2)"), "{f}");
        let f = first_failure(&s, None, "", "").unwrap_or_default();
        assert!(f.contains("killed after the timeout"), "{f}");
        let s = step(ExitCheck::NonZero, &[], &[], Some(r#"{"a":1}"#));
        assert!(first_failure(&s, Some(0), "{}", "").is_some());
        let f = first_failure(&s, Some(2), "{\"a\":2}", "").unwrap_or_default();
        assert_eq!(f, "JSON: $.a is 2, expected 1");
        assert_eq!(first_failure(&s, Some(2), "{\"a\":1,\"b\":0}", ""), None);
        let f = first_failure(&s, Some(2), "not json", "").unwrap_or_default();
        assert!(f.starts_with("stdout is not JSON"), "{f}");
    }
}
