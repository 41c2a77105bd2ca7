//! Typed messages (`docs/nss-protocol.md` §4–§5) and their encoding.

use crate::Error;
use crate::attr::{AttrList, Charset, Writer, types as t};
use crate::codes::{Rsn, Status};
use crate::frame::{
    Correlator, FLAG_RESPONSE, HEADER_LEN, Header, MAX_FRAME_LEN, MessageType, Role,
};
use crate::secret::Secret;

/// Limits from the attribute registry (§3.1).
pub mod limits {
    /// `ClientName` (z/OS: 24).
    pub const CLIENT_NAME: usize = 24;
    /// `StackName`.
    pub const STACK_NAME: usize = 64;
    /// `SystemName`.
    pub const SYSTEM_NAME: usize = 64;
    /// `UserId`.
    pub const USER_ID: usize = 32;
    /// `Credential`.
    pub const CREDENTIAL: usize = 256;
    /// `Software`.
    pub const SOFTWARE: usize = 64;
    /// `CertLabel` (RACF: 32).
    pub const CERT_LABEL: usize = 32;
    /// `Data`.
    pub const DATA: usize = 1024 * 1024;
    /// `Digest`.
    pub const DIGEST: usize = 64;
    /// `Signature`.
    pub const SIGNATURE: usize = 1024;
    /// `Certificate`.
    pub const CERTIFICATE: usize = 64 * 1024;
    /// `CaCertificate` (nested).
    pub const CA_CERTIFICATE: usize = 128 * 1024;
    /// `SubjectDn`.
    pub const SUBJECT_DN: usize = 1024;
    /// `NmiMessage`: the NMI protocol's largest message (16 MiB).
    pub const NMI_MESSAGE: usize = 16 * 1024 * 1024;
    /// `Requester`.
    pub const REQUESTER: usize = 64;
    /// Largest `KeepaliveInterval` in seconds.
    pub const KEEPALIVE_MAX: u32 = 3600;
}

/// The only API version defined so far.
pub const API_VERSION_1: u16 = 1;
/// Every API version this crate speaks, lowest first.
pub const API_VERSIONS: &[u16] = &[API_VERSION_1];

/// How the user ID is authenticated (`AuthMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// A password checked against the server's salted hash.
    Password,
    /// A PassTicket (`docs/nss-protocol.md` §8).
    PassTicket,
}

impl AuthMethod {
    fn code(self) -> u8 {
        match self {
            AuthMethod::Password => 1,
            AuthMethod::PassTicket => 2,
        }
    }

    fn from_code(v: u8) -> Option<Self> {
        match v {
            1 => Some(AuthMethod::Password),
            2 => Some(AuthMethod::PassTicket),
            _ => None,
        }
    }
}

/// A set of NSS services (`Services`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Services(u32);

impl Services {
    /// No service.
    pub const NONE: Services = Services(0);
    /// The certificate service (sign, verify, certificates).
    pub const CERT: Services = Services(1);
    /// The remote management service (routed NMI requests).
    pub const REMOTE_MGMT: Services = Services(2);
    const ALL: u32 = 3;

    /// From the wire value; `None` if undefined bits are set.
    pub fn from_bits(v: u32) -> Option<Self> {
        (v & !Self::ALL == 0).then_some(Services(v))
    }

    /// The wire value.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// True if every service in `other` is in `self`.
    pub fn contains(self, other: Services) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union.
    #[must_use]
    pub fn with(self, other: Services) -> Services {
        Services(self.0 | other.0)
    }

    /// The services of `self` that are not in `other`.
    #[must_use]
    pub fn without(self, other: Services) -> Services {
        Services(self.0 & !other.0)
    }
}

/// A signature algorithm (§3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SignatureAlgorithm {
    /// RSA PKCS#1 v1.5 with SHA-1.
    RsaPkcs1Sha1,
    /// RSA PKCS#1 v1.5 with SHA-256.
    RsaPkcs1Sha256,
    /// RSA PKCS#1 v1.5 with SHA-384.
    RsaPkcs1Sha384,
    /// RSA PKCS#1 v1.5 with SHA-512.
    RsaPkcs1Sha512,
    /// RSA-PSS with SHA-256 (MGF1-SHA-256, salt 32).
    RsaPssSha256,
    /// RSA-PSS with SHA-384.
    RsaPssSha384,
    /// RSA-PSS with SHA-512.
    RsaPssSha512,
    /// ECDSA P-256 with SHA-256, DER signature.
    EcdsaP256Sha256,
    /// ECDSA P-384 with SHA-384, DER signature.
    EcdsaP384Sha384,
    /// ECDSA P-256 with SHA-256, r‖s signature.
    EcdsaP256Sha256Fixed,
    /// ECDSA P-384 with SHA-384, r‖s signature.
    EcdsaP384Sha384Fixed,
    /// RSA PKCS#1 v1.5 type 1 padding over a digest without DigestInfo
    /// (IKEv1 signatures).
    RsaPkcs1Raw,
}

/// Which inputs an algorithm takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputRule {
    /// `Data`, or a `Digest` of exactly this many bytes.
    DataOrDigest(usize),
    /// Only `Data`.
    DataOnly,
    /// Only a `Digest` of 1–64 bytes.
    DigestOnly,
}

/// The key type an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// RSA.
    Rsa,
    /// EC on P-256.
    EcP256,
    /// EC on P-384.
    EcP384,
}

impl SignatureAlgorithm {
    /// Every algorithm, in code order.
    pub const ALL: [SignatureAlgorithm; 12] = [
        SignatureAlgorithm::RsaPkcs1Sha1,
        SignatureAlgorithm::RsaPkcs1Sha256,
        SignatureAlgorithm::RsaPkcs1Sha384,
        SignatureAlgorithm::RsaPkcs1Sha512,
        SignatureAlgorithm::RsaPssSha256,
        SignatureAlgorithm::RsaPssSha384,
        SignatureAlgorithm::RsaPssSha512,
        SignatureAlgorithm::EcdsaP256Sha256,
        SignatureAlgorithm::EcdsaP384Sha384,
        SignatureAlgorithm::EcdsaP256Sha256Fixed,
        SignatureAlgorithm::EcdsaP384Sha384Fixed,
        SignatureAlgorithm::RsaPkcs1Raw,
    ];

    /// The wire code.
    pub fn code(self) -> u16 {
        match self {
            SignatureAlgorithm::RsaPkcs1Sha1 => 1,
            SignatureAlgorithm::RsaPkcs1Sha256 => 2,
            SignatureAlgorithm::RsaPkcs1Sha384 => 3,
            SignatureAlgorithm::RsaPkcs1Sha512 => 4,
            SignatureAlgorithm::RsaPssSha256 => 5,
            SignatureAlgorithm::RsaPssSha384 => 6,
            SignatureAlgorithm::RsaPssSha512 => 7,
            SignatureAlgorithm::EcdsaP256Sha256 => 8,
            SignatureAlgorithm::EcdsaP384Sha384 => 9,
            SignatureAlgorithm::EcdsaP256Sha256Fixed => 10,
            SignatureAlgorithm::EcdsaP384Sha384Fixed => 11,
            SignatureAlgorithm::RsaPkcs1Raw => 12,
        }
    }

    /// From the wire code.
    pub fn from_code(v: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.code() == v)
    }

    /// The documented name.
    pub fn name(self) -> &'static str {
        match self {
            SignatureAlgorithm::RsaPkcs1Sha1 => "RSA_PKCS1_SHA1",
            SignatureAlgorithm::RsaPkcs1Sha256 => "RSA_PKCS1_SHA256",
            SignatureAlgorithm::RsaPkcs1Sha384 => "RSA_PKCS1_SHA384",
            SignatureAlgorithm::RsaPkcs1Sha512 => "RSA_PKCS1_SHA512",
            SignatureAlgorithm::RsaPssSha256 => "RSA_PSS_SHA256",
            SignatureAlgorithm::RsaPssSha384 => "RSA_PSS_SHA384",
            SignatureAlgorithm::RsaPssSha512 => "RSA_PSS_SHA512",
            SignatureAlgorithm::EcdsaP256Sha256 => "ECDSA_P256_SHA256",
            SignatureAlgorithm::EcdsaP384Sha384 => "ECDSA_P384_SHA384",
            SignatureAlgorithm::EcdsaP256Sha256Fixed => "ECDSA_P256_SHA256_FIXED",
            SignatureAlgorithm::EcdsaP384Sha384Fixed => "ECDSA_P384_SHA384_FIXED",
            SignatureAlgorithm::RsaPkcs1Raw => "RSA_PKCS1_RAW",
        }
    }

    /// Which inputs the algorithm accepts.
    pub fn input_rule(self) -> InputRule {
        match self {
            SignatureAlgorithm::RsaPkcs1Sha1 => InputRule::DataOrDigest(20),
            SignatureAlgorithm::RsaPkcs1Sha256 => InputRule::DataOrDigest(32),
            SignatureAlgorithm::RsaPkcs1Sha384 => InputRule::DataOrDigest(48),
            SignatureAlgorithm::RsaPkcs1Sha512 => InputRule::DataOrDigest(64),
            SignatureAlgorithm::RsaPkcs1Raw => InputRule::DigestOnly,
            _ => InputRule::DataOnly,
        }
    }

    /// The key type the algorithm needs.
    pub fn key_kind(self) -> KeyKind {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 | SignatureAlgorithm::EcdsaP256Sha256Fixed => {
                KeyKind::EcP256
            }
            SignatureAlgorithm::EcdsaP384Sha384 | SignatureAlgorithm::EcdsaP384Sha384Fixed => {
                KeyKind::EcP384
            }
            _ => KeyKind::Rsa,
        }
    }

    /// True if `input` is allowed for this algorithm.
    pub fn accepts(self, input: &SignInput) -> bool {
        match (self.input_rule(), input) {
            (InputRule::DataOrDigest(_) | InputRule::DataOnly, SignInput::Data(_)) => true,
            (InputRule::DataOrDigest(n), SignInput::Digest(d)) => d.len() == n,
            (InputRule::DigestOnly, SignInput::Digest(d)) => !d.is_empty() && d.len() <= 64,
            _ => false,
        }
    }
}

impl std::fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What is signed or verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInput {
    /// The octets themselves; the signer hashes them.
    Data(Vec<u8>),
    /// A precomputed hash.
    Digest(Vec<u8>),
}

/// The outcome of a VERIFY (§5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Path and signature verified.
    Valid,
    /// The signature does not verify with the certificate's key.
    BadSignature,
    /// No path to a CA certificate the client may use.
    Untrusted,
    /// A certificate on the path is outside its validity period.
    Expired,
    /// A certificate on the path is revoked.
    Revoked,
    /// A certificate cannot be parsed or used for signatures.
    BadCertificate,
    /// The algorithm does not fit the certificate's key.
    AlgorithmMismatch,
}

impl Verdict {
    const ALL: [Verdict; 7] = [
        Verdict::Valid,
        Verdict::BadSignature,
        Verdict::Untrusted,
        Verdict::Expired,
        Verdict::Revoked,
        Verdict::BadCertificate,
        Verdict::AlgorithmMismatch,
    ];

    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            Verdict::Valid => 0,
            Verdict::BadSignature => 1,
            Verdict::Untrusted => 2,
            Verdict::Expired => 3,
            Verdict::Revoked => 4,
            Verdict::BadCertificate => 5,
            Verdict::AlgorithmMismatch => 6,
        }
    }

    /// From the wire code.
    pub fn from_code(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.code() == v)
    }

    /// The documented name.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Valid => "VALID",
            Verdict::BadSignature => "BAD_SIGNATURE",
            Verdict::Untrusted => "UNTRUSTED",
            Verdict::Expired => "EXPIRED",
            Verdict::Revoked => "REVOKED",
            Verdict::BadCertificate => "BAD_CERTIFICATE",
            Verdict::AlgorithmMismatch => "ALGORITHM_MISMATCH",
        }
    }
}

/// CONNECT request (§5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// The NSS client name (≤ 24).
    pub client_name: String,
    /// The stack (network namespace) the client serves.
    pub stack_name: String,
    /// The client's system name.
    pub system_name: String,
    /// The user ID on the server.
    pub user_id: String,
    /// Password or PassTicket.
    pub auth_method: AuthMethod,
    /// The password or PassTicket.
    pub credential: Secret,
    /// The services the client selected.
    pub services: Services,
    /// Every API version the client speaks.
    pub api_versions: Vec<u16>,
    /// Optional software identification.
    pub software: Option<String>,
}

/// CONNECT response (§5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectResponse {
    /// The services enabled for this connection.
    pub services: Services,
    /// The server's system name.
    pub system_name: String,
    /// The API version chosen.
    pub api_version: u16,
    /// Every API version the server speaks.
    pub server_api_versions: Vec<u16>,
    /// The server's connection ID.
    pub connection_id: u32,
    /// Seconds of silence after which the client sends a KEEPALIVE.
    pub keepalive_interval: u32,
    /// Optional software identification.
    pub software: Option<String>,
}

/// SIGN request (§5.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignRequest {
    /// The certificate label; `None` = the client's default certificate.
    pub label: Option<String>,
    /// The algorithm.
    pub algorithm: SignatureAlgorithm,
    /// What to sign.
    pub input: SignInput,
}

/// SIGN response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignResponse {
    /// The signature.
    pub signature: Vec<u8>,
    /// The label of the certificate whose key signed.
    pub label: String,
}

/// Which certificate a VERIFY uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifySubject {
    /// The signer's certificate first, then intermediates (DER).
    Certificates(Vec<Vec<u8>>),
    /// A certificate in the server's keyring.
    Label(String),
}

/// VERIFY request (§5.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyRequest {
    /// The algorithm.
    pub algorithm: SignatureAlgorithm,
    /// What was signed.
    pub input: SignInput,
    /// The signature to check.
    pub signature: Vec<u8>,
    /// Whose key.
    pub subject: VerifySubject,
}

/// VERIFY response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyResponse {
    /// The outcome.
    pub verdict: Verdict,
    /// The verified end entity's subject, if known.
    pub subject_dn: Option<String>,
}

/// GET_CERTIFICATE request (§5.7).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GetCertificateRequest {
    /// The label; `None` = the client's default certificate.
    pub label: Option<String>,
}

/// GET_CERTIFICATE response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetCertificateResponse {
    /// The label.
    pub label: String,
    /// The certificate, then its issuers up to the root (DER, at least one).
    pub chain: Vec<Vec<u8>>,
}

/// One CA certificate (GET_CA_CERTIFICATES, §5.8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaCertificate {
    /// Its keyring label.
    pub label: String,
    /// DER.
    pub der: Vec<u8>,
}

/// MGMT_REQUEST request (§5.9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MgmtRequest {
    /// One complete NMI request.
    pub nmi: Vec<u8>,
    /// The local user who issued it on the server host.
    pub requester: Option<String>,
}

/// MGMT_REQUEST response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MgmtResponse {
    /// One complete NMI response.
    pub nmi: Vec<u8>,
}

/// A request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// CONNECT.
    Connect(ConnectRequest),
    /// DISCONNECT.
    Disconnect,
    /// KEEPALIVE.
    Keepalive,
    /// SIGN.
    Sign(SignRequest),
    /// VERIFY.
    Verify(VerifyRequest),
    /// GET_CERTIFICATE.
    GetCertificate(GetCertificateRequest),
    /// GET_CA_CERTIFICATES.
    GetCaCertificates,
    /// MGMT_REQUEST.
    Mgmt(MgmtRequest),
}

impl Request {
    /// The message type.
    pub fn msg_type(&self) -> MessageType {
        match self {
            Request::Connect(_) => MessageType::CONNECT,
            Request::Disconnect => MessageType::DISCONNECT,
            Request::Keepalive => MessageType::KEEPALIVE,
            Request::Sign(_) => MessageType::SIGN,
            Request::Verify(_) => MessageType::VERIFY,
            Request::GetCertificate(_) => MessageType::GET_CERTIFICATE,
            Request::GetCaCertificates => MessageType::GET_CA_CERTIFICATES,
            Request::Mgmt(_) => MessageType::MGMT_REQUEST,
        }
    }
}

/// A response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseBody {
    /// A failed request (status ≠ 0): the type it answers and, for CONNECT
    /// with `NSSRsnBadVersion`, the server's API versions.
    Failed {
        /// The request type being answered (may be unknown to this crate).
        msg_type: MessageType,
        /// `ServerApiVersion` values (CONNECT / NSSRsnBadVersion only).
        server_api_versions: Vec<u16>,
    },
    /// CONNECT succeeded.
    Connect(ConnectResponse),
    /// DISCONNECT acknowledged.
    Disconnect,
    /// KEEPALIVE answered.
    Keepalive,
    /// SIGN succeeded.
    Sign(SignResponse),
    /// VERIFY evaluated.
    Verify(VerifyResponse),
    /// GET_CERTIFICATE succeeded.
    GetCertificate(GetCertificateResponse),
    /// GET_CA_CERTIFICATES succeeded.
    GetCaCertificates(Vec<CaCertificate>),
    /// MGMT_REQUEST answered.
    Mgmt(MgmtResponse),
}

impl ResponseBody {
    /// The message type this answers.
    pub fn msg_type(&self) -> MessageType {
        match self {
            ResponseBody::Failed { msg_type, .. } => *msg_type,
            ResponseBody::Connect(_) => MessageType::CONNECT,
            ResponseBody::Disconnect => MessageType::DISCONNECT,
            ResponseBody::Keepalive => MessageType::KEEPALIVE,
            ResponseBody::Sign(_) => MessageType::SIGN,
            ResponseBody::Verify(_) => MessageType::VERIFY,
            ResponseBody::GetCertificate(_) => MessageType::GET_CERTIFICATE,
            ResponseBody::GetCaCertificates(_) => MessageType::GET_CA_CERTIFICATES,
            ResponseBody::Mgmt(_) => MessageType::MGMT_REQUEST,
        }
    }

    /// A failure of `msg_type` (the usual error response).
    pub fn failed(msg_type: MessageType) -> Self {
        ResponseBody::Failed {
            msg_type,
            server_api_versions: Vec::new(),
        }
    }
}

/// One frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request {
        /// Chosen by the requester.
        correlator: Correlator,
        /// The request.
        request: Request,
    },
    /// A response.
    Response {
        /// The request's correlator.
        correlator: Correlator,
        /// Return and reason code (OK unless `body` is `Failed`).
        status: Status,
        /// The body.
        body: ResponseBody,
    },
    /// A TERMINATE notification.
    Terminate {
        /// The correlator of the request that caused it, or zero.
        correlator: Correlator,
        /// Why the sender is closing.
        status: Status,
    },
}

impl Message {
    /// A successful response.
    pub fn ok(correlator: Correlator, body: ResponseBody) -> Self {
        Message::Response {
            correlator,
            status: Status::OK,
            body,
        }
    }

    /// An error response to a request of `msg_type`.
    pub fn error(correlator: Correlator, msg_type: MessageType, status: Status) -> Self {
        Message::Response {
            correlator,
            status,
            body: ResponseBody::failed(msg_type),
        }
    }

    /// The message type.
    pub fn msg_type(&self) -> MessageType {
        match self {
            Message::Request { request, .. } => request.msg_type(),
            Message::Response { body, .. } => body.msg_type(),
            Message::Terminate { .. } => MessageType::TERMINATE,
        }
    }

    /// The correlator.
    pub fn correlator(&self) -> Correlator {
        match self {
            Message::Request { correlator, .. }
            | Message::Response { correlator, .. }
            | Message::Terminate { correlator, .. } => *correlator,
        }
    }

    /// Encode the whole frame. Fails (local misuse) if a field breaks the
    /// registry's limits, a failed response claims success or the reverse,
    /// or the frame exceeds [`MAX_FRAME_LEN`].
    pub fn encode(&self) -> Result<Vec<u8>, Error> {
        let mut w = Writer::default();
        let (flags, status) = match self {
            Message::Request { request, .. } => {
                encode_request(&mut w, request)?;
                (0, Status::OK)
            }
            Message::Response { status, body, .. } => {
                let failed = matches!(body, ResponseBody::Failed { .. });
                if failed == status.is_ok() {
                    return Err(Error::InvalidField {
                        attr: 0,
                        reason: "a Failed body needs a non-zero return code and vice versa",
                    });
                }
                encode_response(&mut w, body)?;
                (FLAG_RESPONSE, *status)
            }
            Message::Terminate { status, .. } => (0, *status),
        };
        let length = HEADER_LEN + w.buf.len();
        if length > MAX_FRAME_LEN {
            return Err(Error::TooLarge { length });
        }
        let header = Header {
            flags,
            msg_type: self.msg_type(),
            length: u32::try_from(length).map_err(|_| Error::TooLarge { length })?,
            status,
            reserved: 0,
            correlator: self.correlator(),
        };
        let mut out = Vec::with_capacity(length);
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(&w.buf);
        Ok(out)
    }

    /// Decode the body of a frame whose header has passed
    /// [`Header::parse`], as received by an endpoint of role `receiver`.
    ///
    /// On error, [`Error::is_fatal_for`] says whether the connection must be
    /// closed, and [`error_reply`] gives the frame to send.
    pub fn decode(header: &Header, body: &[u8], receiver: Role) -> Result<Message, Error> {
        if body.len() != header.body_len() {
            return Err(Error::Truncated { at: body.len() });
        }
        let correlator = header.correlator;
        let mt = header.msg_type;
        if mt == MessageType::TERMINATE {
            if header.is_response() {
                return Err(Error::WrongDirection(mt));
            }
            if header.flags != 0 || header.reserved != 0 {
                return Err(Error::ReservedNonzero);
            }
            AttrList::parse(body, 0)?.finish()?;
            return Ok(Message::Terminate {
                correlator,
                status: header.status,
            });
        }
        if header.flags & !FLAG_RESPONSE != 0 || header.reserved != 0 {
            return Err(Error::ReservedNonzero);
        }
        let mut a = AttrList::parse(body, 0)?;
        if header.is_response() {
            if mt.name().is_none() {
                return Err(Error::BadType(mt.0));
            }
            if !receiver.may_request(mt) {
                return Err(Error::WrongDirection(mt));
            }
            let body = if header.status.is_ok() {
                decode_response(&mut a, mt)?
            } else {
                let server_api_versions =
                    if mt == MessageType::CONNECT && header.status.rsn == Rsn::BAD_VERSION {
                        a.u16_list(t::SERVER_API_VERSION)?
                    } else {
                        Vec::new()
                    };
                ResponseBody::Failed {
                    msg_type: mt,
                    server_api_versions,
                }
            };
            a.finish()?;
            Ok(Message::Response {
                correlator,
                status: header.status,
                body,
            })
        } else {
            if mt.name().is_none() {
                return Err(Error::BadType(mt.0));
            }
            if !receiver.peer_may_request(mt) {
                return Err(Error::WrongDirection(mt));
            }
            if !header.status.is_ok() || header.status.rsn != Rsn::NONE {
                return Err(Error::ReservedNonzero);
            }
            let request = decode_request(&mut a, mt)?;
            a.finish()?;
            Ok(Message::Request {
                correlator,
                request,
            })
        }
    }

    /// Decode one complete frame held in `frame` (header and body, nothing
    /// more), checking the header against `limit`.
    pub fn decode_frame(frame: &[u8], limit: usize, receiver: Role) -> Result<Message, Error> {
        let header = Header::parse_prefix(frame, limit)?;
        let body = frame.get(HEADER_LEN..).unwrap_or(&[]);
        if body.len() != header.body_len() {
            return Err(Error::Truncated { at: frame.len() });
        }
        Message::decode(&header, body, receiver)
    }
}

/// What to do about a frame that failed to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer the request with this error response; the connection stays.
    Respond(Message),
    /// Send this TERMINATE (if the transport still works) and close.
    Terminate(Message),
}

/// The frame to send after `err` decoding a frame with `header` (`None` if
/// the header itself failed) (§7).
pub fn error_reply(header: Option<&Header>, err: &Error) -> Reply {
    let status = err.status();
    match header {
        Some(h) if !err.is_fatal_for(h) => {
            Reply::Respond(Message::error(h.correlator, h.msg_type, status))
        }
        _ => Reply::Terminate(Message::Terminate {
            correlator: header.map_or(Correlator::ZERO, |h| h.correlator),
            status,
        }),
    }
}

fn encode_request(w: &mut Writer, r: &Request) -> Result<(), Error> {
    match r {
        Request::Connect(c) => {
            w.string(
                t::CLIENT_NAME,
                &c.client_name,
                limits::CLIENT_NAME,
                Charset::Name,
            )?;
            w.string(
                t::STACK_NAME,
                &c.stack_name,
                limits::STACK_NAME,
                Charset::Name,
            )?;
            w.string(
                t::SYSTEM_NAME,
                &c.system_name,
                limits::SYSTEM_NAME,
                Charset::Name,
            )?;
            w.string(t::USER_ID, &c.user_id, limits::USER_ID, Charset::Name)?;
            w.u8(t::AUTH_METHOD, c.auth_method.code())?;
            w.bounded(t::CREDENTIAL, c.credential.expose(), 1, limits::CREDENTIAL)?;
            w.u32(t::SERVICES, c.services.bits())?;
            if c.api_versions.is_empty() {
                return Err(Error::InvalidField {
                    attr: t::API_VERSION,
                    reason: "at least one API version is needed",
                });
            }
            for v in &c.api_versions {
                w.u16(t::API_VERSION, *v)?;
            }
            if let Some(s) = &c.software {
                w.string(t::SOFTWARE, s, limits::SOFTWARE, Charset::Text)?;
            }
        }
        Request::Disconnect | Request::Keepalive | Request::GetCaCertificates => {}
        Request::Sign(s) => {
            if let Some(l) = &s.label {
                w.string(t::CERT_LABEL, l, limits::CERT_LABEL, Charset::Label)?;
            }
            encode_alg_input(w, s.algorithm, &s.input)?;
        }
        Request::Verify(v) => {
            if let VerifySubject::Label(l) = &v.subject {
                w.string(t::CERT_LABEL, l, limits::CERT_LABEL, Charset::Label)?;
            }
            encode_alg_input(w, v.algorithm, &v.input)?;
            w.bounded(t::SIGNATURE, &v.signature, 1, limits::SIGNATURE)?;
            if let VerifySubject::Certificates(certs) = &v.subject {
                if certs.is_empty() {
                    return Err(Error::InvalidField {
                        attr: t::CERTIFICATE,
                        reason: "at least one certificate is needed",
                    });
                }
                for c in certs {
                    w.bounded(t::CERTIFICATE, c, 1, limits::CERTIFICATE)?;
                }
            }
        }
        Request::GetCertificate(g) => {
            if let Some(l) = &g.label {
                w.string(t::CERT_LABEL, l, limits::CERT_LABEL, Charset::Label)?;
            }
        }
        Request::Mgmt(m) => {
            w.bounded(t::NMI_MESSAGE, &m.nmi, 1, limits::NMI_MESSAGE)?;
            if let Some(r) = &m.requester {
                w.string(t::REQUESTER, r, limits::REQUESTER, Charset::Name)?;
            }
        }
    }
    Ok(())
}

fn encode_alg_input(
    w: &mut Writer,
    alg: SignatureAlgorithm,
    input: &SignInput,
) -> Result<(), Error> {
    if !alg.accepts(input) {
        return Err(Error::InvalidField {
            attr: t::SIGNATURE_ALGORITHM,
            reason: "input kind or digest length not allowed for this algorithm",
        });
    }
    w.u16(t::SIGNATURE_ALGORITHM, alg.code())?;
    match input {
        SignInput::Data(d) => w.bounded(t::DATA, d, 0, limits::DATA),
        SignInput::Digest(d) => w.bounded(t::DIGEST, d, 1, limits::DIGEST),
    }
}

fn encode_response(w: &mut Writer, b: &ResponseBody) -> Result<(), Error> {
    match b {
        ResponseBody::Failed {
            server_api_versions,
            ..
        } => {
            for v in server_api_versions {
                w.u16(t::SERVER_API_VERSION, *v)?;
            }
        }
        ResponseBody::Connect(c) => {
            w.string(
                t::SYSTEM_NAME,
                &c.system_name,
                limits::SYSTEM_NAME,
                Charset::Name,
            )?;
            w.u32(t::SERVICES, c.services.bits())?;
            w.u16(t::API_VERSION, c.api_version)?;
            if c.server_api_versions.is_empty() {
                return Err(Error::InvalidField {
                    attr: t::SERVER_API_VERSION,
                    reason: "at least one API version is needed",
                });
            }
            for v in &c.server_api_versions {
                w.u16(t::SERVER_API_VERSION, *v)?;
            }
            if let Some(s) = &c.software {
                w.string(t::SOFTWARE, s, limits::SOFTWARE, Charset::Text)?;
            }
            w.u32(t::CONNECTION_ID, c.connection_id)?;
            if !(1..=limits::KEEPALIVE_MAX).contains(&c.keepalive_interval) {
                return Err(Error::InvalidField {
                    attr: t::KEEPALIVE_INTERVAL,
                    reason: "keepalive interval must be 1-3600 seconds",
                });
            }
            w.u32(t::KEEPALIVE_INTERVAL, c.keepalive_interval)?;
        }
        ResponseBody::Disconnect | ResponseBody::Keepalive => {}
        ResponseBody::Sign(s) => {
            w.string(t::CERT_LABEL, &s.label, limits::CERT_LABEL, Charset::Label)?;
            w.bounded(t::SIGNATURE, &s.signature, 1, limits::SIGNATURE)?;
        }
        ResponseBody::Verify(v) => {
            w.u8(t::VERDICT, v.verdict.code())?;
            if let Some(dn) = &v.subject_dn {
                w.string(t::SUBJECT_DN, dn, limits::SUBJECT_DN, Charset::Text)?;
            }
        }
        ResponseBody::GetCertificate(g) => {
            w.string(t::CERT_LABEL, &g.label, limits::CERT_LABEL, Charset::Label)?;
            if g.chain.is_empty() {
                return Err(Error::InvalidField {
                    attr: t::CERTIFICATE,
                    reason: "at least one certificate is needed",
                });
            }
            for c in &g.chain {
                w.bounded(t::CERTIFICATE, c, 1, limits::CERTIFICATE)?;
            }
        }
        ResponseBody::GetCaCertificates(list) => {
            for c in list {
                w.nested(t::CA_CERTIFICATE, limits::CA_CERTIFICATE, |n| {
                    n.string(t::CERT_LABEL, &c.label, limits::CERT_LABEL, Charset::Label)?;
                    n.bounded(t::CERTIFICATE, &c.der, 1, limits::CERTIFICATE)
                })?;
            }
        }
        ResponseBody::Mgmt(m) => {
            w.bounded(t::NMI_MESSAGE, &m.nmi, 1, limits::NMI_MESSAGE)?;
        }
    }
    Ok(())
}

fn bad(attr: u16, reason: &'static str) -> Error {
    Error::BadAttribute { attr, reason }
}

fn decode_alg_input(a: &mut AttrList<'_>) -> Result<(SignatureAlgorithm, SignInput), Error> {
    let code = a.u16_req(t::SIGNATURE_ALGORITHM)?;
    let alg = SignatureAlgorithm::from_code(code)
        .ok_or(bad(t::SIGNATURE_ALGORITHM, "unknown signature algorithm"))?;
    let data = a.bytes_opt(t::DATA, 0, limits::DATA)?;
    let digest = a.bytes_opt(t::DIGEST, 1, limits::DIGEST)?;
    let input = match (data, digest) {
        (Some(d), None) => SignInput::Data(d.to_vec()),
        (None, Some(d)) => SignInput::Digest(d.to_vec()),
        (Some(_), Some(_)) => return Err(bad(t::DIGEST, "both Data and Digest present")),
        (None, None) => return Err(Error::MissingAttribute { attr: t::DATA }),
    };
    if !alg.accepts(&input) {
        let attr = match input {
            SignInput::Data(_) => t::DATA,
            SignInput::Digest(_) => t::DIGEST,
        };
        return Err(bad(
            attr,
            "input kind or digest length not allowed for this algorithm",
        ));
    }
    Ok((alg, input))
}

fn decode_label_opt(a: &mut AttrList<'_>) -> Result<Option<String>, Error> {
    a.string_opt(t::CERT_LABEL, limits::CERT_LABEL, Charset::Label)
}

fn decode_request(a: &mut AttrList<'_>, mt: MessageType) -> Result<Request, Error> {
    Ok(match mt {
        MessageType::CONNECT => {
            let client_name = a.string_req(t::CLIENT_NAME, limits::CLIENT_NAME, Charset::Name)?;
            let stack_name = a.string_req(t::STACK_NAME, limits::STACK_NAME, Charset::Name)?;
            let system_name = a.string_req(t::SYSTEM_NAME, limits::SYSTEM_NAME, Charset::Name)?;
            let user_id = a.string_req(t::USER_ID, limits::USER_ID, Charset::Name)?;
            let auth_method = AuthMethod::from_code(a.u8_req(t::AUTH_METHOD)?)
                .ok_or(bad(t::AUTH_METHOD, "unknown authentication method"))?;
            let credential =
                Secret::from_slice(a.bytes_req(t::CREDENTIAL, 1, limits::CREDENTIAL)?);
            let services = Services::from_bits(a.u32_req(t::SERVICES)?)
                .ok_or(bad(t::SERVICES, "undefined service bits"))?;
            let api_versions = a.u16_list(t::API_VERSION)?;
            if api_versions.is_empty() {
                return Err(Error::MissingAttribute {
                    attr: t::API_VERSION,
                });
            }
            let software = a.string_opt(t::SOFTWARE, limits::SOFTWARE, Charset::Text)?;
            Request::Connect(ConnectRequest {
                client_name,
                stack_name,
                system_name,
                user_id,
                auth_method,
                credential,
                services,
                api_versions,
                software,
            })
        }
        MessageType::DISCONNECT => Request::Disconnect,
        MessageType::KEEPALIVE => Request::Keepalive,
        MessageType::GET_CA_CERTIFICATES => Request::GetCaCertificates,
        MessageType::SIGN => {
            let label = decode_label_opt(a)?;
            let (algorithm, input) = decode_alg_input(a)?;
            Request::Sign(SignRequest {
                label,
                algorithm,
                input,
            })
        }
        MessageType::VERIFY => {
            let label = decode_label_opt(a)?;
            let (algorithm, input) = decode_alg_input(a)?;
            let signature = a.bytes_req(t::SIGNATURE, 1, limits::SIGNATURE)?.to_vec();
            let certs = a.bytes_list(t::CERTIFICATE, 1, limits::CERTIFICATE)?;
            let subject = match (label, certs.is_empty()) {
                (Some(l), true) => VerifySubject::Label(l),
                (None, false) => {
                    VerifySubject::Certificates(certs.into_iter().map(<[u8]>::to_vec).collect())
                }
                (Some(_), false) => {
                    return Err(bad(t::CERT_LABEL, "both CertLabel and Certificate present"));
                }
                (None, true) => {
                    return Err(Error::MissingAttribute {
                        attr: t::CERTIFICATE,
                    });
                }
            };
            Request::Verify(VerifyRequest {
                algorithm,
                input,
                signature,
                subject,
            })
        }
        MessageType::GET_CERTIFICATE => Request::GetCertificate(GetCertificateRequest {
            label: decode_label_opt(a)?,
        }),
        MessageType::MGMT_REQUEST => Request::Mgmt(MgmtRequest {
            nmi: a
                .bytes_req(t::NMI_MESSAGE, 1, limits::NMI_MESSAGE)?
                .to_vec(),
            requester: a.string_opt(t::REQUESTER, limits::REQUESTER, Charset::Name)?,
        }),
        other => return Err(Error::BadType(other.0)),
    })
}

fn decode_response(a: &mut AttrList<'_>, mt: MessageType) -> Result<ResponseBody, Error> {
    Ok(match mt {
        MessageType::CONNECT => {
            let system_name = a.string_req(t::SYSTEM_NAME, limits::SYSTEM_NAME, Charset::Name)?;
            let services = Services::from_bits(a.u32_req(t::SERVICES)?)
                .ok_or(bad(t::SERVICES, "undefined service bits"))?;
            let api_version = a.u16_req(t::API_VERSION)?;
            let server_api_versions = a.u16_list(t::SERVER_API_VERSION)?;
            if server_api_versions.is_empty() {
                return Err(Error::MissingAttribute {
                    attr: t::SERVER_API_VERSION,
                });
            }
            let software = a.string_opt(t::SOFTWARE, limits::SOFTWARE, Charset::Text)?;
            let connection_id = a.u32_req(t::CONNECTION_ID)?;
            let keepalive_interval = a.u32_req(t::KEEPALIVE_INTERVAL)?;
            if !(1..=limits::KEEPALIVE_MAX).contains(&keepalive_interval) {
                return Err(bad(
                    t::KEEPALIVE_INTERVAL,
                    "keepalive interval out of range",
                ));
            }
            ResponseBody::Connect(ConnectResponse {
                services,
                system_name,
                api_version,
                server_api_versions,
                connection_id,
                keepalive_interval,
                software,
            })
        }
        MessageType::DISCONNECT => ResponseBody::Disconnect,
        MessageType::KEEPALIVE => ResponseBody::Keepalive,
        MessageType::SIGN => {
            let label = a.string_req(t::CERT_LABEL, limits::CERT_LABEL, Charset::Label)?;
            let signature = a.bytes_req(t::SIGNATURE, 1, limits::SIGNATURE)?.to_vec();
            ResponseBody::Sign(SignResponse { signature, label })
        }
        MessageType::VERIFY => {
            let verdict = Verdict::from_code(a.u8_req(t::VERDICT)?)
                .ok_or(bad(t::VERDICT, "unknown verdict"))?;
            let subject_dn = a.string_opt(t::SUBJECT_DN, limits::SUBJECT_DN, Charset::Text)?;
            ResponseBody::Verify(VerifyResponse {
                verdict,
                subject_dn,
            })
        }
        MessageType::GET_CERTIFICATE => {
            let label = a.string_req(t::CERT_LABEL, limits::CERT_LABEL, Charset::Label)?;
            let chain: Vec<Vec<u8>> = a
                .bytes_list(t::CERTIFICATE, 1, limits::CERTIFICATE)?
                .into_iter()
                .map(<[u8]>::to_vec)
                .collect();
            if chain.is_empty() {
                return Err(Error::MissingAttribute {
                    attr: t::CERTIFICATE,
                });
            }
            ResponseBody::GetCertificate(GetCertificateResponse { label, chain })
        }
        MessageType::GET_CA_CERTIFICATES => {
            let mut out = Vec::new();
            for v in a.bytes_list(t::CA_CERTIFICATE, 0, limits::CA_CERTIFICATE)? {
                let mut n = AttrList::parse(v, 0)?;
                let label = n.string_req(t::CERT_LABEL, limits::CERT_LABEL, Charset::Label)?;
                let der = n
                    .bytes_req(t::CERTIFICATE, 1, limits::CERTIFICATE)?
                    .to_vec();
                n.finish()?;
                out.push(CaCertificate { label, der });
            }
            ResponseBody::GetCaCertificates(out)
        }
        MessageType::MGMT_REQUEST => ResponseBody::Mgmt(MgmtResponse {
            nmi: a
                .bytes_req(t::NMI_MESSAGE, 1, limits::NMI_MESSAGE)?
                .to_vec(),
        }),
        other => return Err(Error::BadType(other.0)),
    })
}
