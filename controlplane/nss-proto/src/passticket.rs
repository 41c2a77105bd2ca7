//! PassTickets, algorithm `GKPT1` (`docs/nss-protocol.md` §8): one-time
//! codes derived with HMAC-SHA-256 from an application key shared by the
//! server and its clients, valid ±10 minutes, accepted once.
//!
//! Sans-IO: the time is always a parameter.

use std::collections::HashMap;

use ring::hmac;
use subtle::ConstantTimeEq;

use crate::secret::Secret;

/// Length of a ticket in characters.
pub const TICKET_LEN: usize = 16;
/// How far (seconds) a ticket's generation time may be from the evaluation
/// time.
pub const WINDOW_SECS: u64 = 600;
/// Smallest and largest application key (bytes).
pub const KEY_LEN_RANGE: std::ops::RangeInclusive<usize> = 16..=64;
/// The default application name for nssd.
pub const DEFAULT_APPL: &str = "NSSD";

const ALPHABET: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// Why a PassTicket was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// No generation time within ±10 minutes gives this ticket: forged, a
    /// different key, or clocks more than 10 minutes apart.
    #[error("no match within ±10 minutes (forged, wrong key, or clock skew)")]
    NoMatch,
    /// The ticket was already accepted once.
    #[error("replayed (already used)")]
    Replayed,
    /// Not 16 characters from A–Z, 0–9.
    #[error("malformed (not 16 characters A-Z 0-9)")]
    Malformed,
    /// The key, application name or user ID is unusable.
    #[error("bad parameters: {0}")]
    BadParameters(&'static str),
}

fn check_params(key: &[u8], appl: &str, user: &str) -> Result<(), TicketError> {
    if !KEY_LEN_RANGE.contains(&key.len()) {
        return Err(TicketError::BadParameters("the key must be 16 to 64 bytes"));
    }
    if appl.is_empty() || appl.len() > 8 || !appl.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(TicketError::BadParameters(
            "the application name must be 1 to 8 printable characters",
        ));
    }
    if user.is_empty() || user.len() > 255 || !user.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        return Err(TicketError::BadParameters(
            "the user ID must be printable characters",
        ));
    }
    Ok(())
}

fn compute(key: &hmac::Key, appl: &str, user: &str, time: u64) -> [u8; TICKET_LEN] {
    let appl = appl.to_ascii_uppercase();
    let user = user.to_ascii_uppercase();
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(b"GKPT1\0");
    // Lengths were checked: appl ≤ 8, user ≤ 255.
    ctx.update(&[u8::try_from(appl.len()).unwrap_or(u8::MAX)]);
    ctx.update(appl.as_bytes());
    ctx.update(&[u8::try_from(user.len()).unwrap_or(u8::MAX)]);
    ctx.update(user.as_bytes());
    ctx.update(&time.to_be_bytes());
    let tag = ctx.sign();
    let mut first = [0u8; 16];
    if let Some(s) = tag.as_ref().get(..16) {
        first.copy_from_slice(s);
    }
    let mut v = u128::from_be_bytes(first);
    let mut out = [0u8; TICKET_LEN];
    for c in &mut out {
        let d = usize::try_from(v % 36).unwrap_or(0);
        *c = ALPHABET.get(d).copied().unwrap_or(b'A');
        v /= 36;
    }
    out
}

/// Generate the PassTicket for `user` and application `appl` at Unix time
/// `time` (seconds) with application key `key`.
pub fn generate(key: &[u8], appl: &str, user: &str, time: u64) -> Result<Secret, TicketError> {
    check_params(key, appl, user)?;
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    Ok(Secret::new(compute(&k, appl, user, time).to_vec()))
}

/// Evaluates PassTickets and remembers accepted ones (replay protection).
#[derive(Debug, Default)]
pub struct TicketVerifier {
    /// (APPL, USER, generation time) → nothing; kept until the time is
    /// outside the window.
    used: HashMap<(String, String, u64), ()>,
}

impl TicketVerifier {
    /// A verifier with an empty replay cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Evaluate `ticket` for `user`/`appl` with `key` at Unix time `now`;
    /// on success the ticket is remembered and will not be accepted again.
    /// Returns the generation time that matched.
    pub fn evaluate(
        &mut self,
        key: &[u8],
        appl: &str,
        user: &str,
        ticket: &[u8],
        now: u64,
    ) -> Result<u64, TicketError> {
        check_params(key, appl, user)?;
        self.expire(now);
        if ticket.len() != TICKET_LEN || !ticket.iter().all(|b| ALPHABET.contains(b)) {
            return Err(TicketError::Malformed);
        }
        let k = hmac::Key::new(hmac::HMAC_SHA256, key);
        let from = now.saturating_sub(WINDOW_SECS);
        let to = now.saturating_add(WINDOW_SECS);
        let mut matched = None;
        for time in from..=to {
            let cand = compute(&k, appl, user, time);
            if bool::from(cand.as_slice().ct_eq(ticket)) && matched.is_none() {
                matched = Some(time);
            }
        }
        let time = matched.ok_or(TicketError::NoMatch)?;
        let entry = (appl.to_ascii_uppercase(), user.to_ascii_uppercase(), time);
        if self.used.contains_key(&entry) {
            return Err(TicketError::Replayed);
        }
        self.used.insert(entry, ());
        Ok(time)
    }

    /// Forget tickets that can no longer match at `now`.
    pub fn expire(&mut self, now: u64) {
        self.used
            .retain(|(_, _, t), _| t.saturating_add(WINDOW_SECS) >= now);
    }

    /// How many accepted tickets are remembered.
    pub fn remembered(&self) -> usize {
        self.used.len()
    }
}

/// Generates tickets for one client, never reusing a generation time it
/// has already used (so two connections within a second do not collide).
#[derive(Debug, Default)]
pub struct TicketGenerator {
    last: Option<u64>,
}

impl TicketGenerator {
    /// A generator with no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// A ticket for time max(now, last + 1). Fails if that is more than
    /// the window ahead of `now` (over 600 tickets in a burst).
    pub fn next(
        &mut self,
        key: &[u8],
        appl: &str,
        user: &str,
        now: u64,
    ) -> Result<Secret, TicketError> {
        let time = match self.last {
            Some(l) if l >= now => l.saturating_add(1),
            _ => now,
        };
        if time > now.saturating_add(WINDOW_SECS) {
            return Err(TicketError::BadParameters(
                "too many PassTickets generated in the last 10 minutes",
            ));
        }
        let t = generate(key, appl, user, time)?;
        self.last = Some(time);
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const T0: u64 = 1_700_000_000;

    #[test]
    fn known_answer() {
        // Fixed vector so that other implementations can check themselves.
        let t = generate(KEY, "NSSD", "A1S1", T0).unwrap();
        let s = std::str::from_utf8(t.expose()).unwrap().to_owned();
        assert_eq!(s.len(), 16);
        assert!(s.bytes().all(|b| ALPHABET.contains(&b)));
        // Case of appl/user does not matter; time, user, appl, key do.
        assert_eq!(generate(KEY, "nssd", "a1s1", T0).unwrap(), t);
        assert_ne!(generate(KEY, "NSSD", "A1S1", T0 + 1).unwrap(), t);
        assert_ne!(generate(KEY, "NSSD", "A1S2", T0).unwrap(), t);
        assert_ne!(generate(KEY, "NSSE", "A1S1", T0).unwrap(), t);
        assert_ne!(
            generate(b"0123456789abcdef0123456789abcdeX", "NSSD", "A1S1", T0).unwrap(),
            t
        );
        assert_eq!(s, KNOWN);
    }

    // Computed independently with Python's hmac module from the §8 text.
    const KNOWN: &str = "C55VLTP3NH9QW8EW";

    #[test]
    fn window_replay_and_forgery() {
        let mut v = TicketVerifier::new();
        let t = generate(KEY, "NSSD", "A1S1", T0).unwrap();
        // 10 minutes later still fine; once.
        assert_eq!(
            v.evaluate(KEY, "NSSD", "A1S1", t.expose(), T0 + 600),
            Ok(T0)
        );
        assert_eq!(
            v.evaluate(KEY, "NSSD", "A1S1", t.expose(), T0 + 601),
            Err(TicketError::NoMatch)
        );
        let t2 = generate(KEY, "NSSD", "A1S1", T0 + 5).unwrap();
        assert_eq!(
            v.evaluate(KEY, "NSSD", "a1s1", t2.expose(), T0 - 595),
            Ok(T0 + 5)
        );
        assert_eq!(
            v.evaluate(KEY, "NSSD", "A1S1", t2.expose(), T0),
            Err(TicketError::Replayed)
        );
        // Expired (generated 601 s before).
        let old = generate(KEY, "NSSD", "A1S1", T0 - 601).unwrap();
        assert_eq!(
            v.evaluate(KEY, "NSSD", "A1S1", old.expose(), T0),
            Err(TicketError::NoMatch)
        );
        // From the future beyond the window.
        let fut = generate(KEY, "NSSD", "A1S1", T0 + 601).unwrap();
        assert_eq!(
            v.evaluate(KEY, "NSSD", "A1S1", fut.expose(), T0),
            Err(TicketError::NoMatch)
        );
        // Forged: right shape, wrong value; wrong user.
        assert_eq!(
            v.evaluate(KEY, "NSSD", "A1S1", b"AAAAAAAAAAAAAAAA", T0),
            Err(TicketError::NoMatch)
        );
        let other = generate(KEY, "NSSD", "B2", T0).unwrap();
        assert_eq!(
            v.evaluate(KEY, "NSSD", "A1S1", other.expose(), T0),
            Err(TicketError::NoMatch)
        );
        assert_eq!(
            v.evaluate(KEY, "NSSD", "A1S1", b"short", T0),
            Err(TicketError::Malformed)
        );
        assert_eq!(
            v.evaluate(KEY, "NSSD", "A1S1", b"aaaaaaaaaaaaaaaa", T0),
            Err(TicketError::Malformed)
        );
        // The cache forgets what can no longer match.
        // (T0 was forgotten when evaluating at T0 + 601; T0 + 5 remains.)
        assert_eq!(v.remembered(), 1);
        v.expire(T0 + 2000);
        assert_eq!(v.remembered(), 0);
    }

    #[test]
    fn generator_never_reuses_a_time() {
        let mut g = TicketGenerator::new();
        let mut v = TicketVerifier::new();
        for _ in 0..5 {
            let t = g.next(KEY, "NSSD", "A1S1", T0).unwrap();
            assert!(v.evaluate(KEY, "NSSD", "A1S1", t.expose(), T0).is_ok());
        }
        assert!(generate(b"short", "NSSD", "A1S1", T0).is_err());
        assert!(generate(KEY, "TOOLONGAP", "A1S1", T0).is_err());
    }
}
