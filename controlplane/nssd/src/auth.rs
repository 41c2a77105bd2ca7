//! Authentication of NSS clients: salted password hashes (Argon2id, PHC
//! strings made by `nssd passwd`) and PassTickets for application `NSSD`.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use nss_proto::passticket::{DEFAULT_APPL, TicketError};
use nss_proto::{AuthMethod, Secret};

use crate::runtime::Runtime;
use crate::server::{Shared, unix_now};

/// A hash that never matches (used for unknown users so that their answer
/// takes as long as a known user's).
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$W9M5nTNz1c2qD1Ze0Pd3l8kq2VtXJ8qDjBKTAsomZZY";

/// Argon2id parameters for new hashes (OWASP: 19 MiB, 2 passes, 1 lane).
pub fn default_params() -> Params {
    Params::new(19 * 1024, 2, 1, None).unwrap_or_default()
}

/// Hash `password` with a fresh salt as a PHC string (`$argon2id$…`).
pub fn hash_password(password: &[u8], params: Params) -> Result<String, String> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(password, &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify_password(hash: &str, password: &[u8]) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default().verify_password(password, &h).is_ok(),
        Err(_) => false,
    }
}

/// Authenticate `user` (upper case). The error text is for the server's log
/// only; the client always gets `EACCES` / `NSSRsnUserAuthentication`.
pub(crate) async fn authenticate(
    shared: &Shared,
    rt: &Runtime,
    user: &str,
    method: AuthMethod,
    credential: &Secret,
) -> Result<(), String> {
    let u = rt.saf.users.get(user);
    match method {
        AuthMethod::Password => {
            let hash = u
                .and_then(|u| u.password_hash.clone())
                .unwrap_or_else(|| DUMMY_HASH.to_owned());
            let pw = credential.clone();
            let Ok(_slot) = shared.password_slots.acquire().await else {
                return Err("the server is stopping".into());
            };
            let ok = tokio::task::spawn_blocking(move || verify_password(&hash, pw.expose()))
                .await
                .unwrap_or(false);
            match u {
                None => Err("unknown user ID".into()),
                Some(u) if u.password_hash.is_none() => {
                    Err("the user has no Password (PassTicket only)".into())
                }
                Some(_) if !ok => Err("wrong password".into()),
                Some(u) if u.revoked => Err("the user is revoked".into()),
                Some(_) => Ok(()),
            }
        }
        AuthMethod::PassTicket => {
            let Some(u) = u else {
                return Err("unknown user ID".into());
            };
            let Some(key) = rt.ptkt_keys.get(DEFAULT_APPL) else {
                return Err(format!(
                    "no PassTicket key: the security database has no PtktData {DEFAULT_APPL}"
                ));
            };
            let r = shared.tickets.lock().map_or(
                Err(TicketError::BadParameters("internal lock")),
                |mut v| {
                    v.evaluate(
                        key.expose(),
                        DEFAULT_APPL,
                        user,
                        credential.expose(),
                        unix_now(),
                    )
                },
            );
            match r {
                Ok(_) if u.revoked => Err("the user is revoked".into()),
                Ok(_) => Ok(()),
                Err(TicketError::NoMatch) => Err(
                    "PassTicket not valid: expired or from the future (clocks more than 10 minutes apart), wrong key, or forged"
                        .into(),
                ),
                Err(TicketError::Replayed) => Err("PassTicket replayed (already used)".into()),
                Err(e) => Err(format!("PassTicket {e}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_and_are_salted() {
        let p = Params::new(256, 1, 1, None).unwrap();
        let a = hash_password(b"secret", p.clone()).unwrap();
        let b = hash_password(b"secret", p).unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=256,t=1,p=1$"));
        assert_ne!(a, b, "salted");
        assert!(verify_password(&a, b"secret"));
        assert!(!verify_password(&a, b"Secret"));
        assert!(!verify_password("nonsense", b"secret"));
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!verify_password(DUMMY_HASH, b"secret"));
    }
}
