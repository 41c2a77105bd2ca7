//! Log output for gatekey's daemons (iked, nssd, the filter loader).
//!
//! Libraries only emit `tracing` events; a binary calls [`init`] once to send
//! them to syslog with facility `local4` (the facility z/OS IKED and NSSD use),
//! to standard error, or both, as text or JSON lines.
//!
//! Message text conventions: operator messages start with their stable
//! message ID (`EZD1136I …`, `DBG0104I …`), listed in `docs/messages.md`.
//! Structured fields are appended as `key=value`; the fields of the enclosing
//! spans (e.g. `ike_sa{id=3 peer=192.0.2.1}`) are prefixed. Secrets must never
//! be passed as fields: the types that hold them redact their `Debug` output.
//!
//! This crate depends on no other workspace crate.

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// Syslog facility `local4` (RFC 5424 facility code 20).
pub const FACILITY_LOCAL4: u8 = 20;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Syslog (`/dev/log`), falling back to stderr when no syslog daemon
    /// listens.
    Syslog,
    /// Standard error only.
    Stderr,
    /// Both syslog and standard error.
    Both,
}

/// How lines written to standard error look (syslog lines are always text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `2026-11-22T07:03:01.123Z INFO iked: EZD1136I … key=value`
    Text,
    /// One JSON object per line: `time`, `level`, `ident`, `message`, fields,
    /// `spans`.
    Json,
}

/// Logging set-up for one process.
#[derive(Debug, Clone)]
pub struct Config {
    /// The program name written in every line (`iked`, `nssd`, …).
    pub ident: String,
    /// Where lines go.
    pub target: Target,
    /// Format on standard error.
    pub format: Format,
    /// Filter directives in `RUST_LOG` syntax (e.g. `info`, `iked=debug`).
    /// `RUST_LOG`, when set, overrides this.
    pub filter: String,
    /// The syslog socket (default `/dev/log`).
    pub socket: PathBuf,
}

impl Config {
    /// Defaults for `ident`: syslog, text, level `info`.
    pub fn new(ident: &str) -> Self {
        Config {
            ident: ident.to_owned(),
            target: Target::Syslog,
            format: Format::Text,
            filter: "info".to_owned(),
            socket: PathBuf::from("/dev/log"),
        }
    }
}

/// Install the global subscriber. Fails if one is already installed or the
/// filter directives are invalid.
pub fn init(cfg: &Config) -> Result<(), InitError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(v),
        _ => EnvFilter::try_new(&cfg.filter),
    }
    .map_err(|e| InitError(format!("invalid log filter: {e}")))?;
    tracing_subscriber::registry()
        .with(filter)
        .with(LogLayer::new(cfg))
        .try_init()
        .map_err(|e| InitError(format!("cannot install the log subscriber: {e}")))
}

/// Why [`init`] failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitError(String);

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InitError {}

/// The layer that formats and writes events. Usable directly with a custom
/// registry (tests use it with a capture sink).
#[derive(Debug)]
pub struct LogLayer {
    ident: String,
    pid: u32,
    target: Target,
    format: Format,
    socket: PathBuf,
    syslog: Mutex<Option<UnixDatagram>>,
}

impl LogLayer {
    /// A layer writing as `cfg` says.
    pub fn new(cfg: &Config) -> Self {
        LogLayer {
            ident: cfg.ident.clone(),
            pid: std::process::id(),
            target: cfg.target,
            format: cfg.format,
            socket: cfg.socket.clone(),
            syslog: Mutex::new(None),
        }
    }

    /// Send one line to syslog; false if no syslog daemon accepted it.
    fn send_syslog(&self, line: &str) -> bool {
        let Ok(mut guard) = self.syslog.lock() else {
            return false;
        };
        for _ in 0..2 {
            if guard.is_none() {
                let Ok(sock) = UnixDatagram::unbound() else {
                    return false;
                };
                if sock.connect(&self.socket).is_err() {
                    return false;
                }
                *guard = Some(sock);
            }
            if let Some(sock) = guard.as_ref()
                && sock.send(line.as_bytes()).is_ok()
            {
                return true;
            }
            // The daemon may have restarted: reconnect once.
            *guard = None;
        }
        false
    }
}

/// Severity per RFC 5424 §6.2.1.
fn severity(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// Collects an event's or span's fields.
#[derive(Default)]
struct Fields {
    message: String,
    rest: Vec<(&'static str, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message = value.to_owned();
        } else {
            self.rest.push((field.name(), value.to_owned()));
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        } else {
            self.rest.push((field.name(), format!("{value:?}")));
        }
    }
}

impl Fields {
    fn text(&self) -> String {
        let mut s = self.message.clone();
        for (k, v) in &self.rest {
            if !s.is_empty() {
                s.push(' ');
            }
            let _ = write!(s, "{k}={v}");
        }
        s
    }
}

/// The formatted fields of a span, kept in its extensions.
struct SpanFields(String);

impl<S> Layer<S> for LogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        attrs.record(&mut f);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(f.text()));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let mut f = Fields::default();
        values.record(&mut f);
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            let add = f.text();
            if let Some(existing) = ext.get_mut::<SpanFields>() {
                if !add.is_empty() {
                    if !existing.0.is_empty() {
                        existing.0.push(' ');
                    }
                    existing.0.push_str(&add);
                }
            } else {
                ext.insert(SpanFields(add));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut f = Fields::default();
        event.record(&mut f);

        let mut spans = Vec::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                let ext = span.extensions();
                let fields = ext.get::<SpanFields>().map(|s| s.0.as_str()).unwrap_or("");
                spans.push(format!("{}{{{}}}", span.name(), fields));
            }
        }
        let prefix = if spans.is_empty() {
            String::new()
        } else {
            format!("{}: ", spans.join(":"))
        };
        let body = format!("{prefix}{}", f.text());

        let mut to_stderr = self.target != Target::Syslog;
        if self.target != Target::Stderr {
            let pri = FACILITY_LOCAL4 * 8 + severity(meta.level());
            let line = format!(
                "<{pri}>{} {}[{}]: {body}",
                rfc3164_time(SystemTime::now()),
                self.ident,
                self.pid
            );
            if !self.send_syslog(&line) {
                to_stderr = true;
            }
        }
        if to_stderr {
            let now = SystemTime::now();
            let line = match self.format {
                Format::Text => format!(
                    "{} {:>5} {}: {body}\n",
                    rfc3339_time(now),
                    meta.level(),
                    self.ident
                ),
                Format::Json => {
                    let mut obj = serde_json::Map::new();
                    obj.insert("time".into(), rfc3339_time(now).into());
                    obj.insert("level".into(), meta.level().as_str().into());
                    obj.insert("ident".into(), self.ident.clone().into());
                    obj.insert("target".into(), meta.target().into());
                    obj.insert("message".into(), f.message.clone().into());
                    for (k, v) in &f.rest {
                        obj.insert((*k).into(), v.clone().into());
                    }
                    if !spans.is_empty() {
                        obj.insert("spans".into(), spans.clone().into());
                    }
                    format!("{}\n", serde_json::Value::Object(obj))
                }
            };
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }
}

/// Civil date from days since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (if m <= 2 { y + 1 } else { y }, m, d)
}

struct Utc {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    min: u64,
    sec: u64,
    millis: u32,
}

fn utc(t: SystemTime) -> Utc {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let (year, month, day) = civil_from_days(days);
    let sod = secs % 86_400;
    Utc {
        year,
        month,
        day,
        hour: sod / 3600,
        min: sod % 3600 / 60,
        sec: sod % 60,
        millis: d.subsec_millis(),
    }
}

/// `2026-11-22T07:03:01.123Z`
pub fn rfc3339_time(t: SystemTime) -> String {
    let u = utc(t);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        u.year, u.month, u.day, u.hour, u.min, u.sec, u.millis
    )
}

/// `Nov 22 07:03:01` (UTC), the RFC 3164 timestamp.
pub fn rfc3164_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let u = utc(t);
    let month = usize::try_from(u.month.saturating_sub(1))
        .ok()
        .and_then(|i| MONTHS.get(i))
        .copied()
        .unwrap_or("Jan");
    format!(
        "{month} {:>2} {:02}:{:02}:{:02}",
        u.day, u.hour, u.min, u.sec
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_330_981_123);
        assert_eq!(rfc3339_time(t), "2026-11-22T07:03:01.123Z");
        assert_eq!(rfc3164_time(t), "Nov 22 07:03:01");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3164_time(leap), "Feb 29 00:00:00");
    }

    #[test]
    fn syslog_lines_reach_the_socket_with_local4_priority() {
        let dir = std::env::temp_dir().join(format!("gk-syslog-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        let server = UnixDatagram::bind(&path).unwrap();
        let mut cfg = Config::new("iked");
        cfg.socket = path.clone();
        let sub = tracing_subscriber::registry().with(LogLayer::new(&cfg));
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("ike_sa", id = 3, peer = "192.0.2.1");
            let _g = span.enter();
            tracing::warn!(rc = 4, "EZD1138I NSS connection lost");
        });
        let mut buf = [0u8; 512];
        let n = server.recv(&mut buf).unwrap();
        let line = std::str::from_utf8(&buf[..n]).unwrap();
        // local4 (20) * 8 + warning (4) = 164
        assert!(line.starts_with("<164>"), "{line}");
        assert!(
            line.ends_with(&format!(
                " iked[{}]: ike_sa{{id=3 peer=192.0.2.1}}: EZD1138I NSS connection lost rc=4",
                std::process::id()
            )),
            "{line}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
