//! ISAKMP and IKEv1 registry values (RFC 2407, RFC 2408, RFC 2409, RFC 3706, RFC 3947 and
//! the IANA "Internet Key Exchange (IKE) Attributes" and "ISAKMP" registries) as open
//! newtypes: unknown values survive a decode/encode round trip unchanged.

use std::fmt;

macro_rules! registry {
    ($(#[$m:meta])* $name:ident($t:ty) { $($c:ident = $v:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub struct $name(pub $t);

        #[expect(missing_docs, reason = "names are the IANA registry names")]
        impl $name {
            $(pub const $c: Self = Self($v);)*
        }

        impl $name {
            /// The registry name, if this value is one this crate knows.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($v => Some(stringify!($c)),)*
                    _ => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self.name() {
                    Some(n) => f.write_str(n),
                    None => write!(f, "{}({})", stringify!($name), self.0),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    };
}

registry! {
    /// Next Payload type (RFC 2408 §3.1, RFC 3947 §3.2/§5 for NAT-D/NAT-OA; 130/131 are the
    /// pre-RFC draft numbers some peers still send).
    PayloadType(u8) {
        NONE = 0,
        SA = 1,
        PROPOSAL = 2,
        TRANSFORM = 3,
        KE = 4,
        ID = 5,
        CERT = 6,
        CR = 7,
        HASH = 8,
        SIG = 9,
        NONCE = 10,
        N = 11,
        D = 12,
        VID = 13,
        ATTRIBUTE = 14,
        NAT_D = 20,
        NAT_OA = 21,
        NAT_D_DRAFT = 130,
        NAT_OA_DRAFT = 131,
        FRAGMENT = 132,
    }
}

registry! {
    /// Exchange Type (RFC 2408 §3.1, RFC 2409 §5.5).
    ExchangeType(u8) {
        NONE = 0,
        BASE = 1,
        IDENTITY_PROTECTION = 2,
        AUTHENTICATION_ONLY = 3,
        AGGRESSIVE = 4,
        INFORMATIONAL = 5,
        TRANSACTION = 6,
        QUICK = 32,
        NEW_GROUP = 33,
    }
}

registry! {
    /// Notify Message Type (RFC 2408 §3.14.1, RFC 2407 §4.6.3, RFC 3706 §5).
    NotifyType(u16) {
        INVALID_PAYLOAD_TYPE = 1,
        DOI_NOT_SUPPORTED = 2,
        SITUATION_NOT_SUPPORTED = 3,
        INVALID_COOKIE = 4,
        INVALID_MAJOR_VERSION = 5,
        INVALID_MINOR_VERSION = 6,
        INVALID_EXCHANGE_TYPE = 7,
        INVALID_FLAGS = 8,
        INVALID_MESSAGE_ID = 9,
        INVALID_PROTOCOL_ID = 10,
        INVALID_SPI = 11,
        INVALID_TRANSFORM_ID = 12,
        ATTRIBUTES_NOT_SUPPORTED = 13,
        NO_PROPOSAL_CHOSEN = 14,
        BAD_PROPOSAL_SYNTAX = 15,
        PAYLOAD_MALFORMED = 16,
        INVALID_KEY_INFORMATION = 17,
        INVALID_ID_INFORMATION = 18,
        INVALID_CERT_ENCODING = 19,
        INVALID_CERTIFICATE = 20,
        CERT_TYPE_UNSUPPORTED = 21,
        INVALID_CERT_AUTHORITY = 22,
        INVALID_HASH_INFORMATION = 23,
        AUTHENTICATION_FAILED = 24,
        INVALID_SIGNATURE = 25,
        ADDRESS_NOTIFICATION = 26,
        NOTIFY_SA_LIFETIME = 27,
        CERTIFICATE_UNAVAILABLE = 28,
        UNSUPPORTED_EXCHANGE_TYPE = 29,
        UNEQUAL_PAYLOAD_LENGTHS = 30,
        CONNECTED = 16384,
        RESPONDER_LIFETIME = 24576,
        REPLAY_STATUS = 24577,
        INITIAL_CONTACT = 24578,
        R_U_THERE = 36136,
        R_U_THERE_ACK = 36137,
    }
}

impl NotifyType {
    /// Error types are below 8192 (RFC 2408 §3.14.1).
    pub fn is_error(self) -> bool {
        self.0 < 8192
    }
}

registry! {
    /// Protocol ID in the IPsec DOI (RFC 2407 §4.4.1).
    ProtocolId(u8) {
        RESERVED = 0,
        ISAKMP = 1,
        AH = 2,
        ESP = 3,
        IPCOMP = 4,
    }
}

/// Domain of Interpretation: the IPsec DOI (RFC 2407 §4.2).
pub const DOI_IPSEC: u32 = 1;
/// Situation SIT_IDENTITY_ONLY (RFC 2407 §4.2.1), the only one in use.
pub const SIT_IDENTITY_ONLY: u32 = 1;
/// The ISAKMP transform ID KEY_IKE (RFC 2407 §4.4.2).
pub const KEY_IKE: u8 = 1;

registry! {
    /// Phase 1 (Oakley) attribute classes (RFC 2409 Appendix A).
    P1AttrType(u16) {
        ENCRYPTION_ALGORITHM = 1,
        HASH_ALGORITHM = 2,
        AUTHENTICATION_METHOD = 3,
        GROUP_DESCRIPTION = 4,
        GROUP_TYPE = 5,
        GROUP_PRIME = 6,
        GROUP_GENERATOR_ONE = 7,
        GROUP_GENERATOR_TWO = 8,
        GROUP_CURVE_A = 9,
        GROUP_CURVE_B = 10,
        LIFE_TYPE = 11,
        LIFE_DURATION = 12,
        PRF = 13,
        KEY_LENGTH = 14,
        FIELD_SIZE = 15,
        GROUP_ORDER = 16,
    }
}

registry! {
    /// Phase 1 encryption algorithm (RFC 2409 Appendix A, RFC 3602 for AES).
    P1Encr(u16) {
        DES_CBC = 1,
        IDEA_CBC = 2,
        BLOWFISH_CBC = 3,
        RC5_R16_B64_CBC = 4,
        TRIPLE_DES_CBC = 5,
        CAST_CBC = 6,
        AES_CBC = 7,
        CAMELLIA_CBC = 8,
    }
}

registry! {
    /// Phase 1 hash algorithm (RFC 2409 Appendix A, RFC 4868 §2.1 for SHA-2).
    P1Hash(u16) {
        MD5 = 1,
        SHA = 2,
        TIGER = 3,
        SHA2_256 = 4,
        SHA2_384 = 5,
        SHA2_512 = 6,
    }
}

registry! {
    /// Phase 1 authentication method (RFC 2409 Appendix A, RFC 4754 §3; 65001+ are the
    /// XAUTH hybrid methods of draft-beaulieu-ike-xauth, which gatekey does not speak).
    P1Auth(u16) {
        PRE_SHARED_KEY = 1,
        DSS_SIGNATURES = 2,
        RSA_SIGNATURES = 3,
        RSA_ENCRYPTION = 4,
        RSA_REVISED_ENCRYPTION = 5,
        ECDSA_SHA256_P256 = 9,
        ECDSA_SHA384_P384 = 10,
        ECDSA_SHA512_P521 = 11,
        XAUTH_INIT_PSK = 65001,
        XAUTH_RESP_PSK = 65002,
        XAUTH_INIT_RSA = 65005,
        XAUTH_RESP_RSA = 65006,
    }
}

registry! {
    /// Life Type, in phase 1 (RFC 2409 Appendix A) and phase 2 (RFC 2407 §4.5).
    LifeType(u16) {
        SECONDS = 1,
        KILOBYTES = 2,
    }
}

registry! {
    /// IPsec DOI SA attribute classes (RFC 2407 §4.5, RFC 4304 for ESN).
    IpsecAttrType(u16) {
        SA_LIFE_TYPE = 1,
        SA_LIFE_DURATION = 2,
        GROUP_DESCRIPTION = 3,
        ENCAPSULATION_MODE = 4,
        AUTHENTICATION_ALGORITHM = 5,
        KEY_LENGTH = 6,
        KEY_ROUNDS = 7,
        COMPRESS_DICTIONARY_SIZE = 8,
        COMPRESS_PRIVATE_ALGORITHM = 9,
        ECN_TUNNEL = 10,
        EXTENDED_SEQUENCE_NUMBER = 11,
    }
}

registry! {
    /// Encapsulation Mode (RFC 2407 §4.5, RFC 3947 §5.1; 61443/61444 are the draft values).
    EncapMode(u16) {
        TUNNEL = 1,
        TRANSPORT = 2,
        UDP_ENCAPSULATED_TUNNEL = 3,
        UDP_ENCAPSULATED_TRANSPORT = 4,
        UDP_TUNNEL_DRAFT = 61443,
        UDP_TRANSPORT_DRAFT = 61444,
    }
}

registry! {
    /// Authentication Algorithm for AH/ESP (RFC 2407 §4.5, RFC 4868 §2.4).
    AuthAlgorithm(u16) {
        HMAC_MD5 = 1,
        HMAC_SHA = 2,
        DES_MAC = 3,
        KPDK = 4,
        HMAC_SHA2_256 = 5,
        HMAC_SHA2_384 = 6,
        HMAC_SHA2_512 = 7,
        HMAC_RIPEMD = 8,
        AES_XCBC_MAC = 9,
    }
}

registry! {
    /// IPsec ESP transform identifier (RFC 2407 §4.4.4, RFC 3602, RFC 4106).
    EspTransformId(u8) {
        DES_IV64 = 1,
        DES = 2,
        TRIPLE_DES = 3,
        NULL = 11,
        AES = 12,
        AES_CTR = 13,
        AES_CCM_8 = 14,
        AES_CCM_12 = 15,
        AES_CCM_16 = 16,
        AES_GCM_8 = 18,
        AES_GCM_12 = 19,
        AES_GCM_16 = 20,
        NULL_AUTH_AES_GMAC = 23,
    }
}

registry! {
    /// IPsec AH transform identifier (RFC 2407 §4.4.3, RFC 4868).
    AhTransformId(u8) {
        MD5 = 2,
        SHA = 3,
        DES = 4,
        SHA2_256 = 5,
        SHA2_384 = 6,
        SHA2_512 = 7,
    }
}

/// Vendor IDs gatekey sends and recognises.
pub mod vendor {
    /// NAT-T as in RFC 3947 (MD5 of "RFC 3947").
    pub const NAT_T_RFC3947: [u8; 16] = [
        0x4a, 0x13, 0x1c, 0x81, 0x07, 0x03, 0x58, 0x45, 0x5c, 0x57, 0x28, 0xf2, 0x0e, 0x95, 0x45,
        0x2f,
    ];
    /// Dead Peer Detection, version 1.0 (RFC 3706 §5).
    pub const DPD: [u8; 16] = [
        0xaf, 0xca, 0xd7, 0x13, 0x68, 0xa1, 0xf1, 0xc9, 0x6b, 0x86, 0x96, 0xfc, 0x77, 0x57, 0x01,
        0x00,
    ];
}
