//! RSASSA-PKCS1-v1_5 signatures over a digest *without* the DigestInfo wrapper, as IKEv1
//! signature authentication requires (RFC 2409 §5.1: the signature is the PKCS #1 type 1
//! encryption of HASH_I or HASH_R with the private key). ring signs and verifies only with
//! a DigestInfo, so the modular arithmetic is done here with crypto-bigint's constant-time
//! Montgomery exponentiation, with the Chinese remainder theorem (two half-size
//! exponentiations); every signature is checked with the public exponent before it is
//! returned (a fault during a CRT signature would otherwise leak the key).

use crypto_bigint::modular::{BoxedMontyForm, BoxedMontyParams};
use crypto_bigint::{BoxedUint, NonZero, Odd};
use zeroize::Zeroize;

use super::der::{self, Reader, oid};
use super::secret::{Secret, ct_eq};
use crate::error::{Error, Result};

/// Longest digest accepted (SHA-512).
pub const MAX_DIGEST: usize = 64;

/// An RSA private key: modulus, public exponent, and the CRT parameters.
pub(crate) struct RawRsaKey {
    n: Vec<u8>,
    e: Vec<u8>,
    p: Secret,
    q: Secret,
    dp: Secret,
    dq: Secret,
    qinv: Secret,
}

impl std::fmt::Debug for RawRsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawRsaKey({} bits, <redacted>)", self.n.len() * 8)
    }
}

fn precision(n: &[u8]) -> u32 {
    ((n.len() * 8) as u32).next_multiple_of(64)
}

/// EMSA-PKCS1-v1_5 type 1 padding of `digest` for a `k`-byte modulus, no DigestInfo.
fn encode(digest: &[u8], k: usize) -> Result<Vec<u8>> {
    if digest.is_empty() || digest.len() > MAX_DIGEST || digest.len() + 11 > k {
        return Err(Error::UnsupportedSignature(format!(
            "{}-byte digest for a {}-bit RSA key",
            digest.len(),
            k * 8
        )));
    }
    let mut em = vec![0xffu8; k];
    if let Some(b) = em.get_mut(0) {
        *b = 0;
    }
    if let Some(b) = em.get_mut(1) {
        *b = 1;
    }
    let sep = k - digest.len() - 1;
    if let Some(b) = em.get_mut(sep) {
        *b = 0;
    }
    if let Some(slot) = em.get_mut(sep + 1..) {
        slot.copy_from_slice(digest);
    }
    Ok(em)
}

fn modpow(base: &[u8], exp: &BoxedUint, exp_bits: u32, n: &[u8]) -> Result<Vec<u8>> {
    let prec = precision(n);
    let bad = |_| Error::InvalidKey("RSA modulus".into());
    let modulus = BoxedUint::from_be_slice(n, prec).map_err(bad)?;
    let modulus = Option::<Odd<BoxedUint>>::from(Odd::new(modulus))
        .ok_or_else(|| Error::InvalidKey("even RSA modulus".into()))?;
    let params = BoxedMontyParams::new_vartime(modulus);
    let b = BoxedUint::from_be_slice(base, prec).map_err(|_| Error::BadSignature)?;
    let r = BoxedMontyForm::new(b, params)
        .pow_bounded_exp(exp, exp_bits)
        .retrieve();
    let be = r.to_be_bytes();
    let start = be.len().saturating_sub(n.len());
    Ok(be.get(start..).unwrap_or(&be).to_vec())
}

fn strip_zeros(v: &[u8]) -> &[u8] {
    let i = v.iter().position(|b| *b != 0).unwrap_or(v.len());
    v.get(i..).unwrap_or(&[])
}

impl RawRsaKey {
    /// Reads the key from a DER PKCS#8 PrivateKeyInfo holding an RSAPrivateKey.
    pub(crate) fn from_pkcs8(pkcs8: &[u8]) -> Result<Self> {
        let mut outer = Reader::new(pkcs8);
        let mut seq = outer.sequence("PrivateKeyInfo")?;
        seq.expect(der::TAG_INTEGER, "PrivateKeyInfo version")?;
        let mut alg = seq.sequence("PrivateKeyInfo algorithm")?;
        if alg.expect(der::TAG_OID, "key algorithm OID")?.value != oid::RSA_ENCRYPTION {
            return Err(Error::InvalidKey("not an RSA key".into()));
        }
        let inner = seq
            .expect(der::TAG_OCTET_STRING, "PrivateKeyInfo privateKey")?
            .value;
        let mut r = Reader::new(inner);
        let mut k = r.sequence("RSAPrivateKey")?;
        k.expect(der::TAG_INTEGER, "RSAPrivateKey version")?;
        let n = der::uint_value(
            k.expect(der::TAG_INTEGER, "RSA modulus")?.value,
            "RSA modulus",
        )?;
        let e = der::uint_value(
            k.expect(der::TAG_INTEGER, "RSA public exponent")?.value,
            "RSA public exponent",
        )?;
        k.expect(der::TAG_INTEGER, "RSA private exponent")?;
        let mut next = |what: &'static str| -> Result<Secret> {
            let v = der::uint_value(k.expect(der::TAG_INTEGER, what)?.value, what)?;
            Ok(Secret::from_slice(strip_zeros(v)))
        };
        let (p, q) = (next("RSA prime 1")?, next("RSA prime 2")?);
        let (dp, dq, qinv) = (
            next("RSA exponent 1")?,
            next("RSA exponent 2")?,
            next("RSA coefficient")?,
        );
        let (n, e) = (strip_zeros(n).to_vec(), strip_zeros(e).to_vec());
        if n.len() < 128 || e.is_empty() || e.len() > 8 || p.is_empty() || q.is_empty() {
            return Err(Error::InvalidKey(
                "RSA key below 1024 bits, odd exponent or no CRT parameters".into(),
            ));
        }
        Ok(Self {
            n,
            e,
            p,
            q,
            dp,
            dq,
            qinv,
        })
    }

    /// Signs `digest`: s = m^d mod n by CRT (m1 = m^dP mod p, m2 = m^dQ mod q,
    /// h = qInv (m1 - m2) mod p, s = m2 + h q).
    pub(crate) fn sign(&self, digest: &[u8]) -> Result<Vec<u8>> {
        let k = self.n.len();
        let mut em = encode(digest, k)?;
        let sig = self.crt(&em);
        em.zeroize();
        let sig = sig?;
        // Fault check: the signature must verify before it leaves.
        verify_raw_parts(&self.n, &self.e, digest, &sig)
            .map_err(|_| Error::Crypto("RSA signature failed its own check"))?;
        Ok(sig)
    }

    fn crt(&self, em: &[u8]) -> Result<Vec<u8>> {
        let bad = || Error::InvalidKey("RSA CRT parameters".into());
        let nprec = precision(&self.n);
        let hprec = precision(self.p.expose()).max(precision(self.q.expose()));
        let int = |b: &[u8], prec: u32| BoxedUint::from_be_slice(b, prec).map_err(|_| bad());
        let m = int(em, nprec)?;
        let p = int(self.p.expose(), hprec)?;
        let q = int(self.q.expose(), hprec)?;
        let mut dp = int(self.dp.expose(), hprec)?;
        let mut dq = int(self.dq.expose(), hprec)?;
        let qinv = int(self.qinv.expose(), hprec)?;
        let half = |prime: &BoxedUint, exp: &BoxedUint| -> Result<BoxedUint> {
            let wide = Option::<NonZero<BoxedUint>>::from(NonZero::new(prime.widen(nprec)))
                .ok_or_else(bad)?;
            let reduced = m.rem(&wide).shorten(hprec);
            let odd = Option::<Odd<BoxedUint>>::from(Odd::new(prime.clone())).ok_or_else(bad)?;
            let params = BoxedMontyParams::new(odd);
            Ok(BoxedMontyForm::new(reduced, params)
                .pow_bounded_exp(exp, hprec)
                .retrieve())
        };
        let m1 = half(&p, &dp);
        let m2 = half(&q, &dq);
        dp.zeroize();
        dq.zeroize();
        let (m1, m2) = (m1?, m2?);
        let pnz = Option::<NonZero<BoxedUint>>::from(NonZero::new(p.clone())).ok_or_else(bad)?;
        let m2p = m2.rem(&pnz);
        let diff = m1.sub_mod(&m2p, &p);
        let h = diff.mul_mod(&qinv, &p);
        let hq = h.mul(&q);
        let s = m2.widen(hq.bits_precision()).wrapping_add(&hq);
        let be = s.to_be_bytes();
        let start = be.len().saturating_sub(self.n.len());
        let out = be.get(start..).unwrap_or(&be).to_vec();
        if out.len() != self.n.len() {
            return Err(bad());
        }
        Ok(out)
    }
}

fn verify_raw_parts(n: &[u8], e: &[u8], digest: &[u8], sig: &[u8]) -> Result<()> {
    let k = n.len();
    if sig.len() != k {
        return Err(Error::BadSignature);
    }
    // The signature as an integer must be below the modulus.
    if sig >= n {
        return Err(Error::BadSignature);
    }
    let prec = precision(n);
    let exp = BoxedUint::from_be_slice(e, prec).map_err(|_| Error::BadSignature)?;
    let m = modpow(sig, &exp, (e.len() * 8) as u32, n)?;
    let want = encode(digest, k)?;
    if ct_eq(&m, &want) {
        Ok(())
    } else {
        Err(Error::BadSignature)
    }
}

/// Verifies an IKEv1 RSA signature over `digest` with a DER RSAPublicKey.
pub(crate) fn verify_raw(rsa_public_key: &[u8], digest: &[u8], sig: &[u8]) -> Result<()> {
    let mut r = Reader::new(rsa_public_key);
    let mut k = r.sequence("RSAPublicKey")?;
    let n = der::uint_value(
        k.expect(der::TAG_INTEGER, "RSA modulus")?.value,
        "RSA modulus",
    )?;
    let e = der::uint_value(
        k.expect(der::TAG_INTEGER, "RSA public exponent")?.value,
        "RSA public exponent",
    )?;
    let (n, e) = (strip_zeros(n), strip_zeros(e));
    if n.len() < 128 || e.is_empty() || e.len() > 8 {
        return Err(Error::UnsupportedSignature(
            "RSA key below 1024 bits".into(),
        ));
    }
    verify_raw_parts(n, e, digest, sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_layout() {
        let em = encode(&[0xaa; 20], 64).unwrap_or_default();
        assert_eq!(&em[..2], &[0, 1]);
        assert!(em[2..43].iter().all(|b| *b == 0xff));
        assert_eq!(em[43], 0);
        assert_eq!(&em[44..], &[0xaa; 20]);
        assert!(encode(&[0; 60], 64).is_err());
        assert!(encode(&[], 256).is_err());
    }
}
