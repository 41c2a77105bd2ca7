//! Reading filter log events from the ring buffer and turning them into
//! operator messages (`EZD0814I` permitted, `EZD0815I` denied by a filter,
//! `EZD0816I` denied by the implicit deny, `EZD0817I` denied for lack of the
//! right SA, `EZD0823W` events suppressed or lost). The messages are
//! returned as text; the caller logs them (the `gatekey-filter log` command
//! and iked send them to syslog `local4`).
//!
//! Run one reader per stack: the ring buffer has a single consumer
//! position. Events that arrive while no reader runs are kept until the
//! buffer is full; after that they are counted as lost
//! ([`crate::dataplane::Stats::log_lost`]), never silently dropped.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::os::fd::AsFd as _;
use std::time::{Duration, SystemTime};

use aya::maps::{HashMap, MapData, PerCpuArray, RingBuf};
use gatekey_dataplane_common::{
    LogEvent, MAP_LOG, MAP_RULE_META, MAP_STATS, RuleMeta, counter_id, reason, stat,
};

use crate::Error;
use crate::compile::Dir;
use crate::dataplane::{Dataplane, SetId, addr_from_bytes, name_string};

/// Message IDs of filter logging (see `docs/messages.md`).
pub mod msg {
    /// A packet was permitted by a filter with logging on.
    pub const PERMITTED: &str = "EZD0814I";
    /// A packet was denied by a Deny filter.
    pub const DENIED: &str = "EZD0815I";
    /// A packet matched no filter (`SYSDEFAULTDENYRULE`).
    pub const DENIED_IMPLICIT: &str = "EZD0816I";
    /// An IpSec filter matched but the packet was not protected by the
    /// required SA.
    pub const DENIED_SA: &str = "EZD0817I";
    /// Events were suppressed by the rate limit or lost (buffer full).
    pub const SUPPRESSED: &str = "EZD0823W";
}

/// One decoded log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// When the packet was seen.
    pub time: SystemTime,
    /// Deciding filter (`SYSDEFAULTDENYRULE` for the implicit deny,
    /// `<replaced>` if the filter has been replaced since).
    pub rule: String,
    /// Its position in its table (None for the implicit deny).
    pub position: Option<u32>,
    /// Filter set.
    pub set: SetId,
    /// Direction.
    pub dir: Dir,
    /// Passed or dropped.
    pub permitted: bool,
    /// [`reason`] code.
    pub reason: u8,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IP protocol.
    pub protocol: u8,
    /// Source port / ICMP type, if known.
    pub sport: Option<u16>,
    /// Destination port / ICMP code, if known.
    pub dport: Option<u16>,
    /// A fragment.
    pub fragment: bool,
    /// Interface index.
    pub ifindex: u32,
    /// Interface name, if known.
    pub ifname: String,
    /// IP length.
    pub len: u32,
}

fn proto_name(p: u8) -> String {
    let name = match p {
        1 => "ICMP",
        2 => "IGMP",
        4 => "IP",
        6 => "TCP",
        17 => "UDP",
        47 => "GRE",
        50 => "ESP",
        51 => "AH",
        58 => "ICMPv6",
        89 => "OSPF",
        _ => return p.to_string(),
    };
    format!("{name}({p})")
}

impl LogRecord {
    /// The message ID.
    pub fn message_id(&self) -> &'static str {
        if self.permitted {
            msg::PERMITTED
        } else if self.reason == reason::IMPLICIT {
            msg::DENIED_IMPLICIT
        } else if self.reason == reason::SA_MISMATCH {
            msg::DENIED_SA
        } else {
            msg::DENIED
        }
    }

    /// The operator message, z/OS style.
    pub fn text(&self) -> String {
        let what = match self.message_id() {
            msg::PERMITTED => "Packet permitted",
            msg::DENIED_IMPLICIT => "Packet denied, no filter rule matched",
            msg::DENIED_SA => "Packet denied, not protected by the required SA",
            _ => "Packet denied by policy",
        };
        let (t1, t2) = match self.protocol {
            1 | 58 => ("type", "code"),
            89 => ("type", "dport"),
            _ => ("sport", "dport"),
        };
        let show = |v: Option<u16>| v.map_or_else(|| "Unknown".to_owned(), |v| v.to_string());
        let ext = self
            .position
            .map_or_else(|| "n/a".to_owned(), |p| (p + 1).to_string());
        let time = crate::logread::rfc3339(self.time);
        format!(
            "{} {what}: {time} filter rule= {} ext= {ext} sipaddr= {} dipaddr= {} proto= {} {t1}= {} {t2}= {} interface= {} ({}) set= {} len= {} fragment= {}",
            self.message_id(),
            self.rule,
            self.src,
            self.dst,
            proto_name(self.protocol),
            show(self.sport),
            show(self.dport),
            if self.ifname.is_empty() {
                format!("#{}", self.ifindex)
            } else {
                self.ifname.clone()
            },
            if self.dir == Dir::In { "I" } else { "O" },
            self.set.name(),
            self.len,
            if self.fragment { "Y" } else { "N" },
        )
    }
}

/// UTC time as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = if month <= 2 { y + 1 } else { y };
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Reads a stack's log events.
pub struct LogReader {
    ring: RingBuf<MapData>,
    meta: HashMap<MapData, u32, RuleMeta>,
    stats: PerCpuArray<MapData, u64>,
    ifnames: BTreeMap<u32, String>,
    reported: (u64, u64),
    mono_offset: Option<(SystemTime, Duration)>,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("interfaces", &self.ifnames)
            .field("reported", &self.reported)
            .finish_non_exhaustive()
    }
}

fn second_handle(dp: &Dataplane, name: &'static str) -> Result<MapData, Error> {
    let map = dp
        .ebpf_ref()
        .map(name)
        .ok_or(Error::Missing { kind: "map", name })?;
    let data: &MapData = match map {
        aya::maps::Map::HashMap(d)
        | aya::maps::Map::PerCpuArray(d)
        | aya::maps::Map::RingBuf(d) => d,
        _ => return Err(Error::Missing { kind: "map", name }),
    };
    let id = data
        .info()
        .map_err(|e| Error::map(format!("reading {name}"), e))?
        .id();
    MapData::from_id(id).map_err(|e| Error::map(format!("reopening {name}"), e))
}

impl Dataplane {
    /// A reader of this stack's log events. Interface names are looked up
    /// once, in the stack's namespace.
    pub fn log_reader(&self) -> Result<LogReader, Error> {
        let ring = RingBuf::try_from(aya::maps::Map::RingBuf(second_handle(self, MAP_LOG)?))
            .map_err(|e| Error::map("opening GK_LOG", e))?;
        let meta = HashMap::try_from(aya::maps::Map::HashMap(second_handle(self, MAP_RULE_META)?))
            .map_err(|e| Error::map("opening GK_RULE_META", e))?;
        let stats =
            PerCpuArray::try_from(aya::maps::Map::PerCpuArray(second_handle(self, MAP_STATS)?))
                .map_err(|e| Error::map("opening GK_STATS", e))?;
        let ifnames = self
            .interfaces()
            .map(|v| v.into_iter().map(|i| (i.index, i.name)).collect())
            .unwrap_or_default();
        let mut r = LogReader {
            ring,
            meta,
            stats,
            ifnames,
            reported: (0, 0),
            mono_offset: None,
        };
        // Report what was suppressed before this reader started.
        r.reported = (0, 0);
        Ok(r)
    }
}

impl LogReader {
    /// Wait up to `timeout` for events and return those available.
    pub fn poll(&mut self, timeout: Duration) -> Result<Vec<LogRecord>, Error> {
        let mut out = self.drain();
        if out.is_empty() {
            let fd = self.ring.as_fd();
            let mut fds = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
            let ms = u16::try_from(timeout.as_millis()).unwrap_or(u16::MAX);
            let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(ms));
            out = self.drain();
        }
        Ok(out)
    }

    fn drain(&mut self) -> Vec<LogRecord> {
        let mut events = Vec::new();
        while let Some(item) = self.ring.next() {
            let bytes: &[u8] = &item;
            if let Some(e) = decode(bytes) {
                events.push(e);
            }
        }
        events.into_iter().map(|e| self.record(&e)).collect()
    }

    fn wall(&mut self, ts_ns: u64) -> SystemTime {
        let (wall, mono) = *self.mono_offset.get_or_insert_with(|| {
            let mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
                .map(|t| {
                    Duration::new(
                        t.tv_sec().unsigned_abs(),
                        u32::try_from(t.tv_nsec()).unwrap_or(0),
                    )
                })
                .unwrap_or_default();
            (SystemTime::now(), mono)
        });
        let ts = Duration::from_nanos(ts_ns);
        if ts <= mono {
            wall.checked_sub(mono - ts).unwrap_or(wall)
        } else {
            wall + (ts - mono)
        }
    }

    fn record(&mut self, e: &LogEvent) -> LogRecord {
        let (rule, position) = if e.counter < counter_id::FIRST_RULE {
            ("SYSDEFAULTDENYRULE".to_owned(), None)
        } else {
            match self.meta.get(&e.counter, 0) {
                Ok(m) if m.generation == e.generation => (name_string(&m.name), Some(m.position)),
                _ => ("<replaced>".to_owned(), None),
            }
        };
        let known = e.flags & 2 == 0;
        LogRecord {
            time: self.wall(e.ts_ns),
            rule,
            position,
            set: SetId::from_number(u32::from(e.set)),
            dir: Dir::from_index(u32::from(e.dir)),
            permitted: e.permitted != 0,
            reason: e.reason,
            src: addr_from_bytes(e.family, &e.src),
            dst: addr_from_bytes(e.family, &e.dst),
            protocol: e.protocol,
            sport: known.then_some(e.sport),
            dport: known.then_some(e.dport),
            fragment: e.flags & 1 != 0,
            ifindex: e.ifindex,
            ifname: self.ifnames.get(&e.ifindex).cloned().unwrap_or_default(),
            len: e.len,
        }
    }

    /// Events suppressed by the rate limit and lost because the buffer was
    /// full, since the last call (the first call: since the maps were
    /// created). `None` if nothing new.
    pub fn suppressed(&mut self) -> Result<Option<(u64, u64)>, Error> {
        let get = |s: &PerCpuArray<MapData, u64>, i: u32| -> Result<u64, Error> {
            Ok(s.get(&i, 0)
                .map_err(|e| Error::map("reading GK_STATS", e))?
                .iter()
                .sum())
        };
        let now = (
            get(&self.stats, stat::LOG_RATE_LIMITED)?,
            get(&self.stats, stat::LOG_LOST)?,
        );
        let delta = (
            now.0.saturating_sub(self.reported.0),
            now.1.saturating_sub(self.reported.1),
        );
        self.reported = now;
        Ok((delta != (0, 0)).then_some(delta))
    }

    /// The message for [`LogReader::suppressed`] counts.
    pub fn suppressed_text(rate_limited: u64, lost: u64) -> String {
        format!(
            "{} Filter log events suppressed: rate-limited= {rate_limited} lost= {lost} (lost events arrived while no log reader ran and the buffer was full)",
            msg::SUPPRESSED
        )
    }
}

fn decode(bytes: &[u8]) -> Option<LogEvent> {
    let b = |o: usize, n: usize| bytes.get(o..o + n);
    let u32_at = |o: usize| {
        b(o, 4)
            .and_then(|s| s.try_into().ok())
            .map(u32::from_ne_bytes)
    };
    let u16_at = |o: usize| {
        b(o, 2)
            .and_then(|s| s.try_into().ok())
            .map(u16::from_ne_bytes)
    };
    let u8_at = |o: usize| bytes.get(o).copied();
    let arr16 = |o: usize| -> Option<[u8; 16]> { b(o, 16).and_then(|s| s.try_into().ok()) };
    Some(LogEvent {
        ts_ns: b(0, 8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_ne_bytes)?,
        counter: u32_at(8)?,
        generation: u32_at(12)?,
        ifindex: u32_at(16)?,
        len: u32_at(20)?,
        sport: u16_at(24)?,
        dport: u16_at(26)?,
        family: u8_at(28)?,
        dir: u8_at(29)?,
        protocol: u8_at(30)?,
        permitted: u8_at(31)?,
        reason: u8_at(32)?,
        flags: u8_at(33)?,
        set: u8_at(34)?,
        _pad: 0,
        src: arr16(36)?,
        dst: arr16(52)?,
        _pad2: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_match_the_layout() {
        use std::mem::offset_of;
        assert_eq!(offset_of!(LogEvent, counter), 8);
        assert_eq!(offset_of!(LogEvent, sport), 24);
        assert_eq!(offset_of!(LogEvent, family), 28);
        assert_eq!(offset_of!(LogEvent, set), 34);
        assert_eq!(offset_of!(LogEvent, src), 36);
        assert_eq!(offset_of!(LogEvent, dst), 52);
    }

    #[test]
    fn times_and_messages() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_334_400_123);
        assert_eq!(rfc3339(t), "2026-11-22T08:00:00.123Z");
        let r = LogRecord {
            time: t,
            rule: "SYSDEFAULTRULE.2".into(),
            position: Some(1),
            set: SetId::Default,
            dir: Dir::In,
            permitted: true,
            reason: reason::RULE,
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            protocol: 6,
            sport: Some(40000),
            dport: Some(22),
            fragment: false,
            ifindex: 3,
            ifname: "eth0".into(),
            len: 60,
        };
        assert_eq!(
            r.text(),
            "EZD0814I Packet permitted: 2026-11-22T08:00:00.123Z filter rule= SYSDEFAULTRULE.2 ext= 2 \
             sipaddr= 10.0.0.1 dipaddr= 10.0.0.2 proto= TCP(6) sport= 40000 dport= 22 interface= eth0 (I) \
             set= default len= 60 fragment= N"
        );
        let d = LogRecord {
            permitted: false,
            reason: reason::IMPLICIT,
            protocol: 1,
            sport: None,
            dport: None,
            ..r
        };
        assert!(
            d.text()
                .starts_with("EZD0816I Packet denied, no filter rule matched")
        );
        assert!(
            d.text()
                .contains("proto= ICMP(1) type= Unknown code= Unknown")
        );
    }
}
