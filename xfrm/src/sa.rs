//! Security associations: what to install ([`Sa`]), how to name one ([`SaId`]), and what the
//! kernel reports about one ([`SaInfo`]).

use std::net::IpAddr;

use netlink_packet_xfrm as nx;
use nx::XfrmAttrs;

use crate::alg::{AeadAlgorithm, CipherAlgorithm, IntegrityAlgorithm, SaCrypto};
use crate::error::{Error, Result};
use crate::key::SecretKey;
use crate::types::{
    AddressFamily, CurrentLifetime, Encap, EncapType, Lifetimes, Mark, Mode, Proto, ReplayState,
    SaFlags, SaStats, Selector, Spi, addr_from_wire,
};
use crate::wire::{Attrs, SaIdMsg, SaInfoMsg, alg_name};

/// The kernel's key for an SA: destination, SPI, protocol (and mark, if SAs are marked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SaId {
    /// Destination address.
    pub dst: IpAddr,
    /// SPI.
    pub spi: Spi,
    /// Protocol.
    pub proto: Proto,
    /// Source address; narrows lookups when given (`XFRMA_SRCADDR`).
    pub src: Option<IpAddr>,
    /// Mark the SA was installed with, if any.
    pub mark: Option<Mark>,
}

impl SaId {
    /// An SA ID.
    pub fn new(dst: IpAddr, spi: Spi, proto: Proto) -> Self {
        SaId {
            dst,
            spi,
            proto,
            src: None,
            mark: None,
        }
    }

    pub(crate) fn to_wire(self) -> SaIdMsg {
        let mut attrs = Vec::new();
        if let Some(src) = self.src {
            attrs.push(XfrmAttrs::SrcAddr(nx::Address::from_ip(&src)));
        }
        if let Some(m) = self.mark {
            attrs.push(XfrmAttrs::Mark(nx::Mark {
                value: m.value,
                mask: m.mask,
            }));
        }
        SaIdMsg {
            id: nx::UserSaId {
                daddr: nx::Address::from_ip(&self.dst),
                spi: self.spi.0,
                family: AddressFamily::of(&self.dst).into(),
                proto: self.proto.into(),
            },
            attrs: Attrs(attrs),
        }
    }
}

/// An SA to install (or as the kernel reported it; see [`SaInfo`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sa {
    /// Source (tunnel or transport endpoint) address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// SPI.
    pub spi: Spi,
    /// Mode.
    pub mode: Mode,
    /// Request ID tying the SA to policy templates (0 = none).
    pub reqid: u32,
    /// Algorithms and keys; also decide the protocol (ESP/AH/IPComp).
    pub crypto: SaCrypto,
    /// Traffic selector of the SA (normally [`Selector::any`] for tunnel mode).
    pub selector: Selector,
    /// Anti-replay window in packets (0 disables; > 32 or ESN uses `XFRMA_REPLAY_ESN_VAL`).
    pub replay_window: u32,
    /// Extended sequence numbers (RFC 4303 §2.2.1).
    pub esn: bool,
    /// Soft/hard lifetimes.
    pub lifetimes: Lifetimes,
    /// UDP/TCP encapsulation (NAT traversal).
    pub encap: Option<Encap>,
    /// Mark to match (`XFRMA_MARK`).
    pub mark: Option<Mark>,
    /// Mark to set on packets after transformation (`XFRMA_SET_MARK`/`_MASK`).
    pub output_mark: Option<Mark>,
    /// XFRM interface ID (`XFRMA_IF_ID`).
    pub if_id: Option<u32>,
    /// SA flags (ESN is carried by [`Sa::esn`], not here).
    pub flags: SaFlags,
    /// Extra flags (`XFRMA_SA_EXTRA_FLAGS`).
    pub extra_flags: u32,
    /// TFC padding (`XFRMA_TFCPAD`).
    pub tfc_pad: Option<u32>,
    /// Sequence number of the ACQUIRE this SA answers (0 = none); lets the kernel replace
    /// the larval SA it created for the acquire.
    pub acquire_seq: u32,
    /// Allow legacy algorithms (3DES, HMAC-MD5, HMAC-SHA1).
    pub allow_legacy: bool,
}

impl Sa {
    /// A tunnel-mode SA from `src` to `dst` with `spi` and `crypto`; everything else default:
    /// reqid 0, any-family selector, replay window 32, no ESN, no lifetimes, no encap.
    pub fn new(src: IpAddr, dst: IpAddr, spi: Spi, crypto: SaCrypto) -> Self {
        Sa {
            src,
            dst,
            spi,
            mode: Mode::Tunnel,
            reqid: 0,
            crypto,
            selector: Selector::any(),
            replay_window: 32,
            esn: false,
            lifetimes: Lifetimes::default(),
            encap: None,
            mark: None,
            output_mark: None,
            if_id: None,
            flags: SaFlags::default(),
            extra_flags: 0,
            tfc_pad: None,
            acquire_seq: 0,
            allow_legacy: false,
        }
    }

    /// Sets the mode.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the reqid.
    pub fn reqid(mut self, reqid: u32) -> Self {
        self.reqid = reqid;
        self
    }

    /// Sets the selector.
    pub fn selector(mut self, selector: Selector) -> Self {
        self.selector = selector;
        self
    }

    /// Sets the replay window.
    pub fn replay_window(mut self, window: u32) -> Self {
        self.replay_window = window;
        self
    }

    /// Enables extended sequence numbers.
    pub fn esn(mut self, esn: bool) -> Self {
        self.esn = esn;
        self
    }

    /// Sets lifetimes.
    pub fn lifetimes(mut self, lifetimes: Lifetimes) -> Self {
        self.lifetimes = lifetimes;
        self
    }

    /// Sets encapsulation.
    pub fn encap(mut self, encap: Encap) -> Self {
        self.encap = Some(encap);
        self
    }

    /// Sets the mark.
    pub fn mark(mut self, mark: Mark) -> Self {
        self.mark = Some(mark);
        self
    }

    /// Sets the XFRM interface ID.
    pub fn if_id(mut self, if_id: u32) -> Self {
        self.if_id = Some(if_id);
        self
    }

    /// Allows legacy algorithms.
    pub fn allow_legacy(mut self, allow: bool) -> Self {
        self.allow_legacy = allow;
        self
    }

    /// Sets the ACQUIRE sequence number this SA answers.
    pub fn acquire_seq(mut self, seq: u32) -> Self {
        self.acquire_seq = seq;
        self
    }

    /// The SA's protocol.
    pub fn proto(&self) -> Proto {
        self.crypto.proto()
    }

    /// The ID to get, update or delete this SA with.
    pub fn id(&self) -> SaId {
        SaId {
            dst: self.dst,
            spi: self.spi,
            proto: self.proto(),
            src: None,
            mark: self.mark,
        }
    }

    /// Checks the SA before it is sent.
    pub fn validate(&self) -> Result<()> {
        if AddressFamily::of(&self.src) != AddressFamily::of(&self.dst) {
            return Err(Error::invalid(format!(
                "SA {} -> {} mixes address families",
                self.src, self.dst
            )));
        }
        self.crypto.validate(self.allow_legacy)?;
        if self.esn && self.proto() != Proto::Esp && self.proto() != Proto::Ah {
            return Err(Error::invalid("ESN needs ESP or AH"));
        }
        if self.esn && self.replay_window == 0 {
            return Err(Error::invalid("ESN needs a replay window"));
        }
        if self.replay_window > 4096 {
            return Err(Error::invalid("replay window above 4096 packets"));
        }
        if self.mode == Mode::Transport && self.selector.family == AddressFamily::Unspec {
            // The kernel would refuse; transport mode needs a concrete selector.
            return Err(Error::invalid(
                "transport-mode SA needs a selector with an address family (use Selector::hosts)",
            ));
        }
        Ok(())
    }

    pub(crate) fn to_wire(&self) -> Result<SaInfoMsg> {
        self.validate()?;
        let family: u16 = AddressFamily::of(&self.dst).into();
        let use_esn_attr = self.replay_window != 0 && (self.esn || self.replay_window > 32);
        let mut flags = self.flags.0 & !SaFlags::ESN.0;
        if self.esn {
            flags |= SaFlags::ESN.0;
        }
        let info = nx::UserSaInfo {
            selector: self.selector.to_wire(),
            id: nx::Id {
                daddr: nx::Address::from_ip(&self.dst),
                spi: self.spi.0,
                proto: self.proto().into(),
            },
            saddr: nx::Address::from_ip(&self.src),
            lifetime_cfg: self.lifetimes.to_wire(),
            lifetime_cur: nx::Lifetime::default(),
            stats: nx::Stats::default(),
            seq: self.acquire_seq,
            reqid: self.reqid,
            family,
            mode: self.mode.into(),
            replay_window: if use_esn_attr {
                0
            } else {
                u8::try_from(self.replay_window).unwrap_or(32)
            },
            flags,
        };
        let mut attrs = crypto_attrs(&self.crypto);
        if let Some(e) = &self.encap {
            attrs.push(XfrmAttrs::EncapsulationTemplate(nx::EncapTmpl {
                encap_type: e.kind.into(),
                encap_sport: e.sport,
                encap_dport: e.dport,
                encap_oa: e
                    .original_address
                    .map(|a| nx::Address::from_ip(&a))
                    .unwrap_or_default(),
            }));
        }
        if let Some(m) = self.mark {
            attrs.push(XfrmAttrs::Mark(nx::Mark {
                value: m.value,
                mask: m.mask,
            }));
        }
        if let Some(m) = self.output_mark {
            attrs.push(XfrmAttrs::MarkVal(m.value));
            attrs.push(XfrmAttrs::MarkMask(m.mask));
        }
        if let Some(id) = self.if_id {
            attrs.push(XfrmAttrs::IfId(id));
        }
        if self.extra_flags != 0 {
            attrs.push(XfrmAttrs::ExtraFlags(self.extra_flags));
        }
        if let Some(t) = self.tfc_pad {
            attrs.push(XfrmAttrs::TfcPadding(t));
        }
        if use_esn_attr {
            let words = self.replay_window.div_ceil(32);
            attrs.push(XfrmAttrs::ReplayStateEsn(nx::ReplayEsn {
                bmp_len: words,
                oseq: 0,
                seq: 0,
                oseq_hi: 0,
                seq_hi: 0,
                replay_window: self.replay_window,
                bmp: vec![0; words as usize],
            }));
        }
        Ok(SaInfoMsg {
            info,
            attrs: Attrs(attrs),
        })
    }
}

fn name64(name: &str) -> [u8; 64] {
    let mut out = [0u8; 64];
    for (d, s) in out.iter_mut().zip(name.bytes().take(63)) {
        *d = s;
    }
    out
}

fn bits(key: &SecretKey) -> u32 {
    u32::try_from(key.len() * 8).unwrap_or(u32::MAX)
}

fn crypto_attrs(c: &SaCrypto) -> Vec<XfrmAttrs> {
    let auth = |i: &IntegrityAlgorithm, k: &SecretKey| {
        XfrmAttrs::AuthenticationAlgTrunc(nx::AlgAuth {
            alg_name: name64(i.kernel_name()),
            alg_key_len: bits(k),
            alg_trunc_len: i.trunc_bits(),
            alg_key: k.expose().to_vec(),
        })
    };
    match c {
        SaCrypto::EspAead { alg, key } => vec![XfrmAttrs::EncryptionAlgAead(nx::AlgAead {
            alg_name: name64(alg.kernel_name()),
            alg_key_len: bits(key),
            alg_icv_len: alg.icv_bits(),
            alg_key: key.expose().to_vec(),
        })],
        SaCrypto::Esp {
            cipher,
            cipher_key,
            integrity,
            integrity_key,
        } => vec![
            auth(integrity, integrity_key),
            XfrmAttrs::EncryptionAlg(nx::Alg {
                alg_name: name64(cipher.kernel_name()),
                alg_key_len: bits(cipher_key),
                alg_key: cipher_key.expose().to_vec(),
            }),
        ],
        SaCrypto::Ah { integrity, key } => vec![auth(integrity, key)],
        SaCrypto::Comp { name } => vec![XfrmAttrs::CompressionAlg(nx::Alg {
            alg_name: name64(name),
            alg_key_len: 0,
            alg_key: Vec::new(),
        })],
        SaCrypto::Unmodeled { .. } => Vec::new(),
    }
}

/// An SA as the kernel reports it (GET, dump, notifications, expire events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaInfo {
    /// The SA's configuration. In EXPIRE events the kernel sends no algorithms, so
    /// `sa.crypto` is [`SaCrypto::Unmodeled`] there.
    pub sa: Sa,
    /// Traffic counters and timestamps.
    pub current: CurrentLifetime,
    /// Replay/integrity failure counters.
    pub stats: SaStats,
    /// Anti-replay state, when reported.
    pub replay: Option<ReplayState>,
    /// Last use time (seconds since the epoch), when reported.
    pub last_used: Option<u64>,
}

impl SaInfo {
    /// The SA's counters.
    pub fn counters(&self) -> SaCounters {
        SaCounters {
            current: self.current,
            stats: self.stats,
            replay: self.replay.clone(),
        }
    }

    pub(crate) fn from_wire(info: &nx::UserSaInfo, attrs: &mut Attrs) -> Self {
        let family = AddressFamily::from(info.family);
        let mut aead = None;
        let mut crypt = None;
        let mut auth_trunc = None;
        let mut auth = None;
        let mut comp = None;
        let mut encap = None;
        let mut mark = None;
        let mut out_mark_val = None;
        let mut out_mark_mask = None;
        let mut if_id = None;
        let mut extra_flags = 0;
        let mut tfc_pad = None;
        let mut replay = None;
        let mut replay_window = u32::from(info.replay_window);
        let mut last_used = None;
        for a in attrs.0.iter_mut() {
            match a {
                XfrmAttrs::EncryptionAlgAead(x) => {
                    aead = Some((
                        alg_name(&x.alg_name),
                        x.alg_key_len,
                        x.alg_icv_len,
                        SecretKey::from_vec(std::mem::take(&mut x.alg_key)),
                    ))
                }
                XfrmAttrs::EncryptionAlg(x) => {
                    crypt = Some((
                        alg_name(&x.alg_name),
                        x.alg_key_len,
                        SecretKey::from_vec(std::mem::take(&mut x.alg_key)),
                    ))
                }
                XfrmAttrs::AuthenticationAlgTrunc(x) => {
                    auth_trunc = Some((
                        alg_name(&x.alg_name),
                        x.alg_trunc_len,
                        SecretKey::from_vec(std::mem::take(&mut x.alg_key)),
                    ))
                }
                XfrmAttrs::AuthenticationAlg(x) => {
                    auth = Some((
                        alg_name(&x.alg_name),
                        SecretKey::from_vec(std::mem::take(&mut x.alg_key)),
                    ))
                }
                XfrmAttrs::CompressionAlg(x) => comp = Some(alg_name(&x.alg_name)),
                XfrmAttrs::EncapsulationTemplate(e) => {
                    let oa = addr_from_wire(family, &e.encap_oa);
                    encap = Some(Encap {
                        kind: EncapType::from(e.encap_type),
                        sport: e.encap_sport,
                        dport: e.encap_dport,
                        original_address: (!oa.is_unspecified()).then_some(oa),
                    })
                }
                XfrmAttrs::Mark(m) => {
                    mark = Some(Mark {
                        value: m.value,
                        mask: m.mask,
                    })
                }
                XfrmAttrs::MarkVal(v) => out_mark_val = Some(*v),
                XfrmAttrs::MarkMask(v) => out_mark_mask = Some(*v),
                XfrmAttrs::IfId(v) => if_id = Some(*v),
                XfrmAttrs::ExtraFlags(v) => extra_flags = *v,
                XfrmAttrs::TfcPadding(v) => tfc_pad = Some(*v),
                XfrmAttrs::LastUsed(v) => last_used = Some(*v),
                XfrmAttrs::ReplayState(r) => {
                    replay = Some(ReplayState {
                        oseq: u64::from(r.oseq),
                        seq: u64::from(r.seq),
                        window: 0,
                        bitmap: vec![r.bitmap],
                    })
                }
                XfrmAttrs::ReplayStateEsn(r) => {
                    replay_window = r.replay_window;
                    replay = Some(ReplayState {
                        oseq: (u64::from(r.oseq_hi) << 32) | u64::from(r.oseq),
                        seq: (u64::from(r.seq_hi) << 32) | u64::from(r.seq),
                        window: r.replay_window,
                        bitmap: r.bmp.clone(),
                    })
                }
                _ => {}
            }
        }
        let proto = Proto::from(info.id.proto);
        let integrity = auth_trunc
            .map(|(n, t, k)| (IntegrityAlgorithm::from_kernel(&n, t), k))
            .or_else(|| {
                auth.map(|(n, k)| {
                    // Without ALG_AUTH_TRUNC the kernel applies its default truncation; name it
                    // as such only for the algorithms whose default is the RFC value.
                    let alg = IntegrityAlgorithm::from_kernel(&n, 96);
                    (alg, k)
                })
            });
        let crypto = match (aead, crypt, integrity, comp) {
            (Some((n, kb, icv, key)), _, _, _) => SaCrypto::EspAead {
                alg: AeadAlgorithm::from_kernel(&n, kb, icv),
                key,
            },
            (None, Some((n, kb, ck)), Some((integrity, ik)), _) => SaCrypto::Esp {
                cipher: CipherAlgorithm::from_kernel(&n, kb),
                cipher_key: ck,
                integrity,
                integrity_key: ik,
            },
            (None, None, Some((integrity, key)), _) if proto == Proto::Ah => {
                SaCrypto::Ah { integrity, key }
            }
            (None, None, None, Some(name)) => SaCrypto::Comp { name },
            _ => SaCrypto::Unmodeled { proto },
        };
        let esn = info.flags & SaFlags::ESN.0 != 0;
        let sa = Sa {
            src: addr_from_wire(family, &info.saddr),
            dst: addr_from_wire(family, &info.id.daddr),
            spi: Spi(info.id.spi),
            mode: Mode::from(info.mode),
            reqid: info.reqid,
            allow_legacy: crypto.is_legacy(),
            crypto,
            selector: Selector::from_wire(&info.selector),
            replay_window,
            esn,
            lifetimes: Lifetimes::from_wire(&info.lifetime_cfg),
            encap,
            mark,
            output_mark: out_mark_val.map(|value| Mark {
                value,
                mask: out_mark_mask.unwrap_or(u32::MAX),
            }),
            if_id,
            flags: SaFlags(info.flags & !SaFlags::ESN.0),
            extra_flags,
            tfc_pad,
            acquire_seq: info.seq,
        };
        SaInfo {
            sa,
            current: CurrentLifetime::from_wire(&info.lifetime_cur),
            stats: SaStats {
                replay_window: info.stats.replay_window,
                replay: info.stats.replay,
                integrity_failed: info.stats.integrity_failed,
            },
            replay,
            last_used,
        }
    }
}

/// Counters of one SA, for `ipsec -y display` and friends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SaCounters {
    /// Bytes/packets and add/use times.
    pub current: CurrentLifetime,
    /// Replay and integrity failures.
    pub stats: SaStats,
    /// Sequence numbers sent/received, when the kernel reported them.
    pub replay: Option<ReplayState>,
}

/// SAD summary (`XFRM_MSG_GETSADINFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SadInfo {
    /// Number of SAs.
    pub count: u32,
    /// Hash table size.
    pub hash_size: u32,
    /// Hash table maximum size.
    pub hash_max: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alg::AesKeySize;
    use crate::types::LifetimeLimits;

    fn sample() -> Sa {
        Sa::new(
            "192.0.2.1".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            "192.0.2.2".parse().unwrap_or(IpAddr::from([0, 0, 0, 0])),
            Spi(0xc0ffee01),
            SaCrypto::esp_aead(
                AeadAlgorithm::AesGcm16(AesKeySize::Aes256),
                SecretKey::from_slice(&[7; 36]),
            ),
        )
        .reqid(42)
        .lifetimes(Lifetimes {
            soft: LifetimeLimits {
                bytes: Some(1 << 20),
                ..Default::default()
            },
            hard: LifetimeLimits {
                add_seconds: Some(3600),
                ..Default::default()
            },
        })
        .mark(Mark {
            value: 5,
            mask: 0xff,
        })
        .encap(Encap::udp(4500, 4500))
    }

    #[test]
    fn model_roundtrip_through_wire() -> Result<()> {
        for sa in [
            sample(),
            sample().esn(true).replay_window(128),
            Sa {
                crypto: SaCrypto::esp(
                    CipherAlgorithm::AesCbc(AesKeySize::Aes128),
                    SecretKey::from_slice(&[1; 16]),
                    IntegrityAlgorithm::HmacSha384,
                    SecretKey::from_slice(&[2; 48]),
                ),
                ..sample()
            },
            Sa {
                crypto: SaCrypto::ah(
                    IntegrityAlgorithm::HmacSha512,
                    SecretKey::from_slice(&[3; 64]),
                ),
                encap: None,
                ..sample()
            },
        ] {
            let mut w = sa.to_wire()?;
            let back = SaInfo::from_wire(&w.info, &mut w.attrs);
            assert_eq!(back.sa, sa);
        }
        Ok(())
    }

    #[test]
    fn keys_are_redacted_in_wire_debug() -> Result<()> {
        let w = sample().to_wire()?;
        let s = format!("{w:?}");
        assert!(s.contains("key redacted"), "{s}");
        assert!(!s.contains("7, 7, 7"), "{s}");
        Ok(())
    }
}
