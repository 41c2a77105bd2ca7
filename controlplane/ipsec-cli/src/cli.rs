//! The clap definitions of `ipsec`, with z/OS's option letters and semantics: keyword values are
//! case-insensitive and may be shortened to three characters (`-f DEF`); names (`-n`, `-a`,
//! tunnel names) are case-sensitive; `-p` and `-z` values are not.

use clap::builder::{PossibleValue, TypedValueParser};
use clap::{Arg, ArgAction, ArgGroup, Command, error::ErrorKind};

/// A keyword value parser: case-insensitive, any prefix of at least three characters (or the
/// whole word) of exactly one keyword. Yields the full keyword in lowercase.
#[derive(Debug, Clone, Copy)]
pub struct Keyword(pub &'static [&'static str]);

impl Keyword {
    /// Resolves `input` to a keyword.
    pub fn resolve(&self, input: &str) -> Option<&'static str> {
        let lower = input.to_ascii_lowercase();
        if let Some(k) = self.0.iter().find(|k| **k == lower) {
            return Some(k);
        }
        if lower.len() < 3 {
            return None;
        }
        let mut hits = self.0.iter().filter(|k| k.starts_with(&lower));
        match (hits.next(), hits.next()) {
            (Some(k), None) => Some(k),
            _ => None,
        }
    }
}

impl TypedValueParser for Keyword {
    type Value = String;

    fn parse_ref(
        &self,
        cmd: &Command,
        arg: Option<&Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        let s = value.to_str().unwrap_or("");
        match self.resolve(s) {
            Some(k) => Ok(k.to_owned()),
            None => {
                let name = arg.map(|a| a.to_string()).unwrap_or_default();
                let mut e = clap::Error::raw(
                    ErrorKind::InvalidValue,
                    format!(
                        "invalid value {s:?} for {name}: expected one of {} (case-insensitive, at least 3 characters)\n",
                        self.0.join(", ")
                    ),
                );
                e = e.with_cmd(cmd);
                Err(e)
            }
        }
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(self.0.iter().map(|k| PossibleValue::new(*k))))
    }
}

const HELP_TAIL: &str = "\
Keyword values are case-insensitive and may be shortened to three characters (ipsec -f DEF).

Environment:
  IPSEC_IKED_SOCKET  iked's NMI socket (default /run/iked/ipsecmgmt)
  IPSEC_NSSD_SOCKET  nssd's NMI socket (default /run/nssd/nss), used with -x and -z
  TZ                 time zone of the times in reports

Exit status:
  0  success
  1  the server failed the request (EINVAL, EIO, ...)
  2  usage error
  3  not authorized (EACCES)
  4  no such stack, or the NSS client is not connected (ENXIO)
  5  not supported: NSS client not enabled for remote management, or request not served (EOPNOTSUPP)
  6  the daemon cannot be reached (not running, socket permission, too many clients)
  7  protocol error (version mismatch, malformed message, session ended)
  8  control request done, but some tunnel was not found or not changed
  9  timed out

The protocol and every field of --json are described in docs/nmi-protocol.md.";

fn primary(
    id: &'static str,
    short: char,
    keys: &'static [&'static str],
    help: &'static str,
) -> Arg {
    Arg::new(id)
        .short(short)
        .value_name("FUNCTION")
        .value_parser(Keyword(keys))
        .help(help)
        .help_heading("Primary options (exactly one)")
}

/// The `ipsec` command definition.
pub fn command() -> Command {
    Command::new("ipsec")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Display and control IPsec on gatekey gateways (iked) and NSS clients (nssd)")
        .long_about(
            "Display and control IP filters, IKE tunnels, dynamic and manual tunnels, interfaces, \
             NAT-T port translations and NSS state of a gatekey stack (network namespace), through \
             the NMI of iked, or of an NSS client through nssd (-z). Options follow z/OS's ipsec \
             command.",
        )
        .after_help(HELP_TAIL)
        .disable_version_flag(true)
        .arg(
            Arg::new("version")
                .long("version")
                .short('V')
                .action(ArgAction::Version)
                .help("Print version"),
        )
        .arg(primary(
            "filters",
            'f',
            &["display", "default", "reload"],
            "IP filters: display (-c, -n, -a), default (switch to the profile's default rules), reload (switch to the policy's rules)",
        ))
        .arg(primary(
            "ike",
            'k',
            &["display", "deactivate", "refresh"],
            "IKE tunnels: display (-a, -e), deactivate TUNNEL..., refresh TUNNEL...",
        ))
        .arg(primary(
            "dynamic",
            'y',
            &["display", "activate", "deactivate", "refresh"],
            "dynamic tunnels: display (-a, -n, -b, -c), activate RULE..., deactivate TUNNEL..., refresh TUNNEL...",
        ))
        .arg(primary(
            "manual",
            'm',
            &["display", "activate", "deactivate"],
            "manual tunnels: display (-a, -n), activate TUNNEL..., deactivate TUNNEL...",
        ))
        .arg(primary("interfaces", 'i', &["display"], "interfaces: display"))
        .arg(
            Arg::new("traffic")
                .short('t')
                .num_args(3..=7)
                .value_names(["SRC", "DST", "PROTO", "SPORT", "DPORT", "DIR", "SECCLASS"])
                .allow_negative_numbers(false)
                .help("traffic test: SRC DST PROTO [SPORT DPORT] [in|out] [SECCLASS]; lists every matching filter")
                .help_heading("Primary options (exactly one)"),
        )
        .arg(primary("porttrans", 'o', &["display"], "NAT-T port translation table: display"))
        .arg(primary("stacknss", 'w', &["display"], "NSS client state of every stack (iked): display"))
        .arg(primary("nssserver", 'x', &["display"], "NSS clients connected to this NSS server (nssd): display"))
        .arg(primary("summary", 'S', &["display"], "IKE summary statistics (gatekey): display"))
        .group(
            ArgGroup::new("primary")
                .args([
                    "filters", "ike", "dynamic", "manual", "interfaces", "traffic", "porttrans",
                    "stacknss", "nssserver", "summary",
                ])
                .required(true)
                .multiple(false),
        )
        .arg(
            Arg::new("stack")
                .short('p')
                .value_name("STACK")
                .help("target stack (network namespace name; default: iked's default stack)")
                .conflicts_with_all(["client", "stacknss", "nssserver"]),
        )
        .arg(
            Arg::new("client")
                .short('z')
                .value_name("CLIENT")
                .help("target NSS client (sent to nssd; run on the NSS server's host)")
                .conflicts_with_all(["stacknss", "nssserver"]),
        )
        .arg(
            Arg::new("scope")
                .short('c')
                .value_name("SET")
                .num_args(0..=1)
                .value_parser(Keyword(&["current", "profile", "policy"]))
                .help("-f display: current (default), profile or policy filters; -y display: every SA of each tunnel (no value)"),
        )
        .arg(
            Arg::new("name")
                .short('n')
                .value_name("NAME")
                .help("display only this filter / LocalDynVpnRule / IpDynVpnAction / IpManVpnAction / KeyExchangeRule name"),
        )
        .arg(
            Arg::new("tunnel")
                .short('a')
                .value_name("TUNNELID")
                .help("display only this tunnel (K<n>, Y<n>, M<n>), or filters of this tunnel"),
        )
        .arg(
            Arg::new("cascade")
                .short('e')
                .action(ArgAction::SetTrue)
                .help("-k display: show each IKE tunnel's dynamic tunnels"),
        )
        .arg(
            Arg::new("fromiked")
                .short('b')
                .action(ArgAction::SetTrue)
                .help("-y display: data from IKED, including SAs being negotiated"),
        )
        .arg(
            Arg::new("format")
                .short('r')
                .value_name("FORMAT")
                .value_parser(Keyword(&["detail", "short", "wide"]))
                .help("report format: detail (default), short, wide (no truncation)"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .action(ArgAction::SetTrue)
                .help("print the NMI response as JSON (docs/nmi-protocol.md §5)"),
        )
        .arg(
            Arg::new("targets")
                .value_name("TUNNEL")
                .num_args(0..)
                .help("tunnel IDs or names for activate, deactivate and refresh"),
        )
}
