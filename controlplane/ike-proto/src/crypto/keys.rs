//! The IKEv2 key schedule (RFC 7296 §2.13–§2.18) and AUTH computations (§2.15).

use super::encr::{EncrAlg, SkCrypto};
use super::integ::IntegAlg;
use super::prf::PrfAlg;
use super::secret::Secret;
use crate::error::Result;

/// The algorithms of an IKE SA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IkeSuite {
    /// Encryption.
    pub encr: EncrAlg,
    /// Integrity (None with AEADs).
    pub integ: Option<IntegAlg>,
    /// PRF.
    pub prf: PrfAlg,
    /// Diffie-Hellman group.
    pub dh: crate::wire::DhGroup,
}

/// The seven IKE SA keys.
#[derive(Debug, Clone)]
pub struct IkeKeys {
    /// SK_d: derives child SA keys and the next IKE SA's SKEYSEED.
    pub sk_d: Secret,
    /// SK_ai: initiator's integrity key (empty for AEADs).
    pub sk_ai: Secret,
    /// SK_ar.
    pub sk_ar: Secret,
    /// SK_ei: initiator's encryption key (AEADs: with salt).
    pub sk_ei: Secret,
    /// SK_er.
    pub sk_er: Secret,
    /// SK_pi: for the initiator's AUTH.
    pub sk_pi: Secret,
    /// SK_pr.
    pub sk_pr: Secret,
}

impl IkeKeys {
    /// SK protection for messages sent by the initiator (`true`) or the responder.
    pub fn sk_crypto(&self, from_initiator: bool, suite: &IkeSuite) -> Result<SkCrypto> {
        let (encr, integ) = (suite.encr, suite.integ);
        let (e, a) = if from_initiator {
            (&self.sk_ei, &self.sk_ai)
        } else {
            (&self.sk_er, &self.sk_ar)
        };
        SkCrypto::new(encr, integ, e.clone(), a.clone())
    }
}

/// SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 §2.14).
pub fn skeyseed(prf: PrfAlg, ni: &[u8], nr: &[u8], g_ir: &Secret) -> Secret {
    let mut key = Vec::with_capacity(ni.len() + nr.len());
    key.extend_from_slice(ni);
    key.extend_from_slice(nr);
    let key = Secret::new(key);
    Secret::new(prf.prf(key.expose(), &[g_ir.expose()]))
}

/// SKEYSEED for a rekeyed IKE SA: prf(SK_d (old), g^ir (new) | Ni | Nr) with the old
/// SA's PRF (RFC 7296 §2.18).
pub fn skeyseed_rekey(
    old_prf: PrfAlg,
    old_sk_d: &Secret,
    g_ir: &Secret,
    ni: &[u8],
    nr: &[u8],
) -> Secret {
    Secret::new(old_prf.prf(old_sk_d.expose(), &[g_ir.expose(), ni, nr]))
}

/// {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).
pub fn derive_ike_keys(
    suite: &IkeSuite,
    skeyseed: &Secret,
    ni: &[u8],
    nr: &[u8],
    spi_i: u64,
    spi_r: u64,
) -> IkeKeys {
    let prf = suite.prf;
    let p = prf.output_len();
    let a = suite.integ.map_or(0, IntegAlg::key_len);
    let e = suite.encr.key_len();
    let total = 3 * p + 2 * a + 2 * e;
    let km = prf.prf_plus(
        skeyseed.expose(),
        &[ni, nr, &spi_i.to_be_bytes(), &spi_r.to_be_bytes()],
        total,
    );
    let mut it = Splitter::new(km.expose());
    IkeKeys {
        sk_d: it.take(p),
        sk_ai: it.take(a),
        sk_ar: it.take(a),
        sk_ei: it.take(e),
        sk_er: it.take(e),
        sk_pi: it.take(p),
        sk_pr: it.take(p),
    }
}

/// KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr) (RFC 7296 §2.17), `len` bytes.
pub fn child_keymat(
    prf: PrfAlg,
    sk_d: &Secret,
    g_ir: Option<&Secret>,
    ni: &[u8],
    nr: &[u8],
    len: usize,
) -> Secret {
    match g_ir {
        Some(g) => prf.prf_plus(sk_d.expose(), &[g.expose(), ni, nr], len),
        None => prf.prf_plus(sk_d.expose(), &[ni, nr], len),
    }
}

/// Splits key material into consecutive pieces.
#[derive(Debug)]
pub struct Splitter<'a> {
    km: &'a [u8],
}

impl<'a> Splitter<'a> {
    /// Over `km`.
    pub fn new(km: &'a [u8]) -> Self {
        Self { km }
    }

    /// The next `n` bytes (fewer if exhausted, which callers size against).
    pub fn take(&mut self, n: usize) -> Secret {
        let n = n.min(self.km.len());
        let (a, b) = self.km.split_at(n);
        self.km = b;
        Secret::from_slice(a)
    }
}

/// The key pad for PSK authentication (RFC 7296 §2.15).
pub const KEY_PAD: &[u8] = b"Key Pad for IKEv2";

/// The octets signed or MACed by one side (RFC 7296 §2.15):
/// `RealMessage | NoncePeer | prf(SK_px, RestOfIDPayload)`.
pub fn signed_octets(
    prf: PrfAlg,
    real_message: &[u8],
    peer_nonce: &[u8],
    sk_p: &Secret,
    id_body: &[u8],
) -> Vec<u8> {
    let maced_id = prf.prf(sk_p.expose(), &[id_body]);
    let mut v = Vec::with_capacity(real_message.len() + peer_nonce.len() + maced_id.len());
    v.extend_from_slice(real_message);
    v.extend_from_slice(peer_nonce);
    v.extend_from_slice(&maced_id);
    v
}

/// AUTH = prf(prf(Shared Secret, "Key Pad for IKEv2"), `<SignedOctets>`) for PSK.
pub fn psk_auth(prf: PrfAlg, psk: &Secret, octets: &[u8]) -> Vec<u8> {
    let k = Secret::new(prf.prf(psk.expose(), &[KEY_PAD]));
    prf.prf(k.expose(), &[octets])
}
