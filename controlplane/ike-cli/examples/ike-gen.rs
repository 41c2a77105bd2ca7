//! Writes the man page `ike.1`: `cargo run -p ike-cli --example ike-gen -- <outdir>`
//! (`cargo xtask man` runs it).
//!
//! `ike` takes AIX's `key=value` parameters, which clap does not parse, so there are no
//! clap definitions to render; the page is written with clap_mangen's roff from what the
//! binary itself uses: its usage text ([`ike_cli::USAGE`], the SYNOPSIS), the parameters
//! its parser accepts ([`ike_cli::PARAMETERS`], held to the parser by the crate's tests),
//! its exit codes and the socket environment variables.

use clap_mangen::roff::{Roff, bold, italic, roman};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).ok_or("usage: ike-gen <outdir>")?;
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    let p = dir.join("ike.1");
    std::fs::write(&p, ascii(&page().to_roff()))?;
    println!("{}", p.display());
    Ok(())
}

/// The page with every non-ASCII character (the usage text's `…`) as a groff escape
/// (`\[u2026]`), which troff reads whatever the input encoding.
fn ascii(roff: &str) -> String {
    roff.chars()
        .map(|c| {
            if c.is_ascii() {
                c.to_string()
            } else {
                format!("\\[u{:04X}]", u32::from(c))
            }
        })
        .collect()
}

fn page() -> Roff {
    let mut r = Roff::new();
    let source = format!("ike {}", env!("CARGO_PKG_VERSION"));
    r.control("TH", ["ike", "1", "", source.as_str(), ""]);

    r.control("SH", ["NAME"]);
    r.text([roman(
        "ike - start, list and remove IKE tunnels (the AIX ike command) through gatekey's iked",
    )]);

    // USAGE: the command lines, then a note in prose.
    let (lines, note): (Vec<&str>, Vec<&str>) = ike_cli::USAGE.lines().partition(|l| {
        let l = l.trim_start();
        l.starts_with("usage: ike ") || l.starts_with("ike ")
    });
    r.control("SH", ["SYNOPSIS"]);
    // Left-adjusted: a wrapped command line should not be spread out to the margin.
    r.control("ad", ["l"]);
    for l in lines {
        let l = l.trim_start().trim_start_matches("usage: ");
        let rest = l.strip_prefix("ike").unwrap_or(l);
        r.text([bold("ike"), roman(rest)]);
        r.control("br", []);
    }

    r.control("ad", []);

    r.control("SH", ["DESCRIPTION"]);
    r.text([
        bold("ike"),
        roman(
            " gives administrators who know AIX's IKE tunnels the commands they use there. \
             It sends NMI requests to iked exactly as ",
        ),
        bold("ipsec"),
        roman(
            "(1) does, so the same authorization profiles \
             (EZB.IPSECCMD.<sys>.<stack>.DISPLAY or CONTROL) apply.",
        ),
    ]);
    r.control("PP", []);
    r.text([roman(note.join(" "))]);
    r.control("PP", []);
    r.text([roman(
        "Parameter names and cmd= values are not case-sensitive. \
         AIX numbers tunnel definitions in its IKE database; gatekey's definitions have names, \
         so numlist= takes a rule name to start a tunnel and a tunnel number to act on an \
         existing one.",
    )]);

    r.control("SH", ["PARAMETERS"]);
    for p in ike_cli::PARAMETERS {
        r.control("TP", []);
        let mut head = vec![bold(p.syntax)];
        if let Some(a) = p.alias {
            head.push(roman(", "));
            head.push(bold(a));
        }
        r.text(head);
        r.text([roman(p.help)]);
    }

    r.control("SH", ["EXIT STATUS"]);
    use ike_cli::exit;
    for (code, what) in [
        (exit::OK, "Success."),
        (
            exit::FAILED,
            "A request was refused or a tunnel could not be acted on (each is reported with its NMI status).",
        ),
        (exit::USAGE, "Bad command line."),
        (exit::UNREACHABLE, "iked is not reachable."),
        (exit::PROTOCOL, "The session with iked broke."),
    ] {
        r.control("TP", []);
        r.text([bold(code.to_string())]);
        r.text([roman(what)]);
    }

    r.control("SH", ["ENVIRONMENT"]);
    let [first, second] = ike_cli::SOCKET_ENV;
    r.control("TP", []);
    r.text([bold(first), roman(", "), bold(second)]);
    r.text([roman(format!(
        "The path of iked's NMI socket (the first one set and not empty is used; default {}).",
        gatekey_nmi::IKED_SOCKET
    ))]);

    r.control("SH", ["FILES"]);
    r.control("TP", []);
    r.text([italic(gatekey_nmi::IKED_SOCKET)]);
    r.text([roman("iked's NMI socket.")]);

    r.control("SH", ["SEE ALSO"]);
    r.text([
        bold("ipsec"),
        roman("(1), "),
        bold("iked"),
        roman("(8); docs/ike-command.md in the gatekey sources."),
    ]);
    r
}
