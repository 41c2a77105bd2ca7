//! Argument parsing shared by the example programs.
#![allow(
    dead_code,
    reason = "shared by several examples; each uses a subset (expect would be unfulfilled in some)"
)]

use std::net::IpAddr;

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use gatekey_xfrm::{
    AeadAlgorithm, AesKeySize, CipherAlgorithm, Direction, Encap, Handle, IntegrityAlgorithm,
    IpPrefix, LifetimeLimits, Lifetimes, Mark, Mode, Netns, Policy, PolicyAction, PolicyInfo,
    Proto, Sa, SaCrypto, SaInfo, SecretKey, Selector, Spi, Template,
};

/// `--netns NAME`: run against a named network namespace.
#[derive(Args, Debug, Clone)]
pub struct NetnsArg {
    /// Network namespace name (`/run/netns/NAME`); default: the current one.
    #[arg(long)]
    pub netns: Option<String>,
}

impl NetnsArg {
    pub fn open(&self) -> Result<Handle> {
        match &self.netns {
            Some(n) => {
                Handle::open(Netns::named(n)?).with_context(|| format!("opening XFRM in netns {n}"))
            }
            None => Handle::new().context("opening XFRM"),
        }
    }
}

pub fn parse_u32(s: &str) -> Result<u32> {
    match s.strip_prefix("0x") {
        Some(h) => u32::from_str_radix(h, 16).with_context(|| format!("bad hex number {s}")),
        None => s.parse().with_context(|| format!("bad number {s}")),
    }
}

pub fn parse_key(s: &str) -> Result<SecretKey> {
    let h = s.strip_prefix("0x").unwrap_or(s);
    if !h.len().is_multiple_of(2) {
        bail!("key hex has an odd number of digits");
    }
    let mut out = Vec::with_capacity(h.len() / 2);
    for i in (0..h.len()).step_by(2) {
        let byte = h.get(i..i + 2).ok_or_else(|| anyhow!("bad key hex"))?;
        out.push(u8::from_str_radix(byte, 16).context("bad key hex")?);
    }
    Ok(SecretKey::from_vec(out))
}

pub fn parse_proto(s: &str) -> Result<Proto> {
    Ok(match s {
        "esp" => Proto::Esp,
        "ah" => Proto::Ah,
        "comp" => Proto::Comp,
        "any" => Proto::Any,
        _ => bail!("unknown protocol {s} (esp, ah, comp, any)"),
    })
}

pub fn parse_mode(s: &str) -> Result<Mode> {
    Ok(match s {
        "tunnel" => Mode::Tunnel,
        "transport" => Mode::Transport,
        "beet" => Mode::Beet,
        _ => bail!("unknown mode {s} (tunnel, transport, beet)"),
    })
}

pub fn parse_dir(s: &str) -> Result<Direction> {
    Ok(match s {
        "in" => Direction::In,
        "out" => Direction::Out,
        "fwd" => Direction::Fwd,
        _ => bail!("unknown direction {s} (in, out, fwd)"),
    })
}

fn aes(bits: &str) -> Result<AesKeySize> {
    AesKeySize::from_bits(bits.parse()?)
        .ok_or_else(|| anyhow!("AES key size {bits} (128, 192, 256)"))
}

pub fn parse_aead(s: &str) -> Result<AeadAlgorithm> {
    if s == "chacha20-poly1305" {
        return Ok(AeadAlgorithm::ChaCha20Poly1305);
    }
    match s.strip_prefix("aes-gcm-") {
        Some(bits) => Ok(AeadAlgorithm::AesGcm16(aes(bits)?)),
        None => {
            bail!("unknown AEAD {s} (aes-gcm-128, aes-gcm-192, aes-gcm-256, chacha20-poly1305)")
        }
    }
}

pub fn parse_cipher(s: &str) -> Result<CipherAlgorithm> {
    if let Some(bits) = s.strip_prefix("aes-cbc-") {
        return Ok(CipherAlgorithm::AesCbc(aes(bits)?));
    }
    if let Some(bits) = s.strip_prefix("aes-ctr-") {
        return Ok(CipherAlgorithm::AesCtr(aes(bits)?));
    }
    Ok(match s {
        "3des" => CipherAlgorithm::TripleDesCbc,
        "null" => CipherAlgorithm::Null,
        _ => bail!("unknown cipher {s} (aes-cbc-N, aes-ctr-N, 3des, null)"),
    })
}

pub fn parse_integrity(s: &str) -> Result<IntegrityAlgorithm> {
    Ok(match s {
        "sha256" => IntegrityAlgorithm::HmacSha256,
        "sha384" => IntegrityAlgorithm::HmacSha384,
        "sha512" => IntegrityAlgorithm::HmacSha512,
        "sha1" => IntegrityAlgorithm::HmacSha1,
        "md5" => IntegrityAlgorithm::HmacMd5,
        "xcbc" => IntegrityAlgorithm::AesXcbc,
        "cmac" => IntegrityAlgorithm::AesCmac,
        _ => {
            bail!("unknown integrity algorithm {s} (sha256, sha384, sha512, sha1, md5, xcbc, cmac)")
        }
    })
}

/// Everything that describes an SA on the command line.
#[derive(Args, Debug, Clone)]
pub struct SaArgs {
    /// Source address.
    #[arg(long)]
    pub src: IpAddr,
    /// Destination address.
    #[arg(long)]
    pub dst: IpAddr,
    /// SPI (hex with 0x, or decimal).
    #[arg(long, value_parser = parse_u32)]
    pub spi: u32,
    /// tunnel or transport.
    #[arg(long, default_value = "tunnel", value_parser = parse_mode)]
    pub mode: Mode,
    /// Request ID.
    #[arg(long, default_value_t = 0)]
    pub reqid: u32,
    /// AEAD algorithm (ESP): aes-gcm-128|192|256, chacha20-poly1305.
    #[arg(long, value_parser = parse_aead)]
    pub aead: Option<AeadAlgorithm>,
    /// Cipher (ESP with --integrity): aes-cbc-128|192|256, aes-ctr-N, 3des, null.
    #[arg(long, value_parser = parse_cipher)]
    pub cipher: Option<CipherAlgorithm>,
    /// Integrity algorithm (ESP with --cipher, or AH alone): sha256, sha384, sha512, sha1, md5.
    #[arg(long, value_parser = parse_integrity)]
    pub integrity: Option<IntegrityAlgorithm>,
    /// Key (hex) for --aead, or the cipher key.
    #[arg(long)]
    pub key: Option<String>,
    /// Integrity key (hex).
    #[arg(long)]
    pub integrity_key: Option<String>,
    /// Use AH (with --integrity only) instead of ESP.
    #[arg(long)]
    pub ah: bool,
    /// Allow legacy algorithms.
    #[arg(long)]
    pub legacy: bool,
    /// Selector source prefix (default: any, unspecified family).
    #[arg(long)]
    pub sel_src: Option<IpPrefix>,
    /// Selector destination prefix.
    #[arg(long)]
    pub sel_dst: Option<IpPrefix>,
    /// Replay window.
    #[arg(long, default_value_t = 32)]
    pub replay_window: u32,
    /// Extended sequence numbers.
    #[arg(long)]
    pub esn: bool,
    /// ESP-in-UDP encapsulation ports: SPORT:DPORT.
    #[arg(long)]
    pub encap: Option<String>,
    /// Soft byte limit.
    #[arg(long)]
    pub soft_bytes: Option<u64>,
    /// Hard byte limit.
    #[arg(long)]
    pub hard_bytes: Option<u64>,
    /// Soft packet limit.
    #[arg(long)]
    pub soft_packets: Option<u64>,
    /// Hard packet limit.
    #[arg(long)]
    pub hard_packets: Option<u64>,
    /// Soft lifetime in seconds after add.
    #[arg(long)]
    pub soft_secs: Option<u64>,
    /// Hard lifetime in seconds after add.
    #[arg(long)]
    pub hard_secs: Option<u64>,
    /// Mark value/mask (VALUE/MASK).
    #[arg(long)]
    pub mark: Option<String>,
    /// Sequence number of the ACQUIRE this SA answers (replaces the kernel's larval SA).
    #[arg(long, default_value_t = 0)]
    pub acquire_seq: u32,
}

pub fn parse_mark(s: &str) -> Result<Mark> {
    let (v, m) = s.split_once('/').unwrap_or((s, "0xffffffff"));
    Ok(Mark {
        value: parse_u32(v)?,
        mask: parse_u32(m)?,
    })
}

impl SaArgs {
    pub fn build(&self) -> Result<Sa> {
        let key = |k: &Option<String>, what: &str| -> Result<SecretKey> {
            parse_key(k.as_deref().ok_or_else(|| anyhow!("{what} is required"))?)
        };
        let crypto = match (&self.aead, &self.cipher, &self.integrity, self.ah) {
            (Some(a), None, None, false) => SaCrypto::esp_aead(a.clone(), key(&self.key, "--key")?),
            (None, Some(c), Some(i), false) => SaCrypto::esp(
                c.clone(),
                key(&self.key, "--key")?,
                i.clone(),
                key(&self.integrity_key, "--integrity-key")?,
            ),
            (None, None, Some(i), true) => {
                SaCrypto::ah(i.clone(), key(&self.integrity_key, "--integrity-key")?)
            }
            _ => bail!("give --aead, or --cipher with --integrity, or --ah with --integrity"),
        };
        let mut sa = Sa::new(self.src, self.dst, Spi(self.spi), crypto)
            .mode(self.mode)
            .reqid(self.reqid)
            .replay_window(self.replay_window)
            .esn(self.esn)
            .allow_legacy(self.legacy)
            .acquire_seq(self.acquire_seq)
            .lifetimes(Lifetimes {
                soft: LifetimeLimits {
                    bytes: self.soft_bytes,
                    packets: self.soft_packets,
                    add_seconds: self.soft_secs,
                    use_seconds: None,
                },
                hard: LifetimeLimits {
                    bytes: self.hard_bytes,
                    packets: self.hard_packets,
                    add_seconds: self.hard_secs,
                    use_seconds: None,
                },
            });
        match (self.sel_src, self.sel_dst) {
            (Some(s), Some(d)) => sa = sa.selector(Selector::new(s, d)?),
            (None, None) if self.mode == Mode::Transport => {
                sa = sa.selector(Selector::hosts(self.src, self.dst)?)
            }
            (None, None) => {}
            _ => bail!("give both --sel-src and --sel-dst"),
        }
        if let Some(e) = &self.encap {
            let (s, d) = e
                .split_once(':')
                .ok_or_else(|| anyhow!("--encap SPORT:DPORT"))?;
            sa = sa.encap(Encap::udp(s.parse()?, d.parse()?));
        }
        if let Some(m) = &self.mark {
            sa = sa.mark(parse_mark(m)?);
        }
        Ok(sa)
    }
}

/// Everything that describes a policy on the command line.
#[derive(Args, Debug, Clone)]
pub struct PolicyArgs {
    /// Selector source prefix.
    #[arg(long)]
    pub src: IpPrefix,
    /// Selector destination prefix.
    #[arg(long)]
    pub dst: IpPrefix,
    /// Direction: in, out, fwd.
    #[arg(long, value_parser = parse_dir)]
    pub dir: Direction,
    /// Upper-layer protocol number (6 = TCP, 17 = UDP, 1 = ICMP).
    #[arg(long, default_value_t = 0)]
    pub ulproto: u8,
    /// Source port.
    #[arg(long)]
    pub sport: Option<u16>,
    /// Destination port.
    #[arg(long)]
    pub dport: Option<u16>,
    /// Priority (lower wins).
    #[arg(long, default_value_t = 0)]
    pub priority: u32,
    /// Block instead of allow.
    #[arg(long)]
    pub block: bool,
    /// Template protocol (esp, ah); no template if omitted.
    #[arg(long, value_parser = parse_proto)]
    pub tmpl_proto: Option<Proto>,
    /// Template mode.
    #[arg(long, default_value = "tunnel", value_parser = parse_mode)]
    pub tmpl_mode: Mode,
    /// Template (tunnel) source.
    #[arg(long)]
    pub tmpl_src: Option<IpAddr>,
    /// Template (tunnel) destination.
    #[arg(long)]
    pub tmpl_dst: Option<IpAddr>,
    /// Template reqid.
    #[arg(long, default_value_t = 0)]
    pub reqid: u32,
    /// Template optional (level use).
    #[arg(long)]
    pub optional: bool,
    /// Mark value/mask.
    #[arg(long)]
    pub mark: Option<String>,
}

impl PolicyArgs {
    pub fn selector(&self) -> Result<Selector> {
        let mut sel = Selector::new(self.src, self.dst)?.with_proto(self.ulproto);
        if let Some(p) = self.sport {
            sel = sel.with_sport(p);
        }
        if let Some(p) = self.dport {
            sel = sel.with_dport(p);
        }
        Ok(sel)
    }

    pub fn build(&self) -> Result<Policy> {
        let mut p = Policy::new(self.selector()?, self.dir).priority(self.priority);
        if self.block {
            p = p.action(PolicyAction::Block);
        }
        if let Some(proto) = self.tmpl_proto {
            let t = match (self.tmpl_mode, self.tmpl_src, self.tmpl_dst) {
                (Mode::Transport, _, _) => {
                    Template::transport(proto, p.selector.family, self.reqid)
                }
                (mode, Some(s), Some(d)) => Template {
                    mode,
                    ..Template::tunnel(proto, s, d, self.reqid)
                },
                _ => bail!("a tunnel template needs --tmpl-src and --tmpl-dst"),
            };
            p = p.template(t.optional(self.optional));
        }
        if let Some(m) = &self.mark {
            p = p.mark(parse_mark(m)?);
        }
        Ok(p)
    }
}

/// One line per SA, stable enough for scenario regexes.
pub fn sa_line(i: &SaInfo) -> String {
    let sa = &i.sa;
    format!(
        "sa src {} dst {} proto {} spi {} reqid {} mode {:?} bytes {} packets {} replay_fail {} integrity_fail {} oseq {} seq {} alg {}{}",
        sa.src,
        sa.dst,
        sa.proto(),
        sa.spi,
        sa.reqid,
        sa.mode,
        i.current.bytes,
        i.current.packets,
        i.stats.replay,
        i.stats.integrity_failed,
        i.replay.as_ref().map_or(0, |r| r.oseq),
        i.replay.as_ref().map_or(0, |r| r.seq),
        crypto_name(&sa.crypto),
        sa.encap
            .map_or(String::new(), |e| format!(" encap {}:{}", e.sport, e.dport)),
    )
}

pub fn crypto_name(c: &SaCrypto) -> String {
    match c {
        SaCrypto::EspAead { alg, .. } => format!("{}/{}", alg.kernel_name(), alg.icv_bits()),
        SaCrypto::Esp {
            cipher, integrity, ..
        } => format!(
            "{}+{}/{}",
            cipher.kernel_name(),
            integrity.kernel_name(),
            integrity.trunc_bits()
        ),
        SaCrypto::Ah { integrity, .. } => {
            format!("{}/{}", integrity.kernel_name(), integrity.trunc_bits())
        }
        SaCrypto::Comp { name } => name.clone(),
        _ => "-".into(),
    }
}

/// One line per policy.
pub fn policy_line(p: &PolicyInfo) -> String {
    let pol = &p.policy;
    let tmpls: Vec<String> = pol
        .templates
        .iter()
        .map(|t| {
            format!(
                "{}/{:?}/reqid={}/{}->{}",
                t.proto, t.mode, t.reqid, t.src, t.dst
            )
        })
        .collect();
    format!(
        "policy {} dir {:?} action {:?} priority {} index {} tmpl [{}] bytes {} packets {}",
        pol.selector,
        pol.dir,
        pol.action,
        pol.priority,
        pol.index,
        tmpls.join(" "),
        p.current.bytes,
        p.current.packets
    )
}
