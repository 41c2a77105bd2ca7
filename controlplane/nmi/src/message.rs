//! Typed requests and responses, and whole messages ([`Frame`]) — sans-IO.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::codes::{Failure, ReasonCode, ReturnCode};
use crate::error::Error;
use crate::header::{HEADER_LEN, Header, MsgType, Target};
use crate::records::*;

/// A request, by type, with its body.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// GET_STACKINFO.
    GetStackInfo,
    /// GET_IKETUN.
    GetIkeTun(Selection),
    /// GET_IKETUNCASCADE.
    GetIkeTunCascade(Selection),
    /// GET_IPTUNDYNIKE.
    GetIpTunDynIke(Selection),
    /// GET_IPTUNDYNSTACK.
    GetIpTunDynStack(Selection),
    /// GET_IPTUNMANUAL.
    GetIpTunManual(Selection),
    /// GET_IPFLTCURR.
    GetIpFltCurr(Selection),
    /// GET_IPFLTDEFAULT.
    GetIpFltDefault(Selection),
    /// GET_IPFLTPOLICY.
    GetIpFltPolicy(Selection),
    /// GET_IPINTERFACES.
    GetIpInterfaces,
    /// GET_PORTTRANS.
    GetPortTrans,
    /// GET_IKENSINFO.
    GetIkeNsInfo,
    /// GET_CLIENTINFO.
    GetClientInfo,
    /// GET_SUMMARY.
    GetSummary,
    /// TRAFFIC_TEST.
    TrafficTest(TrafficTest),
    /// SET_IPFLTDEFAULT.
    SetIpFltDefault,
    /// SET_IPFLTPOLICY.
    SetIpFltPolicy,
    /// ACT_IPTUNMANUAL.
    ActIpTunManual(TunnelControl),
    /// DEACT_IPTUNMANUAL.
    DeactIpTunManual(TunnelControl),
    /// ACT_IPTUNDYN.
    ActIpTunDyn(TunnelControl),
    /// DEACT_IPTUNDYN.
    DeactIpTunDyn(TunnelControl),
    /// REFRESH_IPTUNDYN.
    RefreshIpTunDyn(TunnelControl),
    /// DEACT_IKETUN.
    DeactIkeTun(TunnelControl),
    /// REFRESH_IKETUN.
    RefreshIkeTun(TunnelControl),
    /// ACT_IKETUN.
    ActIkeTun(TunnelControl),
    /// REFRESH_CONFIG (protocol version 2).
    RefreshConfig,
}

/// What body a request type carries.
enum BodyRule {
    Empty,
    OptionalSelection,
    Required,
}

fn body_rule(t: MsgType) -> BodyRule {
    match t {
        MsgType::GET_IKETUN
        | MsgType::GET_IKETUNCASCADE
        | MsgType::GET_IPTUNDYNIKE
        | MsgType::GET_IPTUNDYNSTACK
        | MsgType::GET_IPTUNMANUAL
        | MsgType::GET_IPFLTCURR
        | MsgType::GET_IPFLTDEFAULT
        | MsgType::GET_IPFLTPOLICY => BodyRule::OptionalSelection,
        MsgType::TRAFFIC_TEST
        | MsgType::ACT_IPTUNMANUAL
        | MsgType::DEACT_IPTUNMANUAL
        | MsgType::ACT_IPTUNDYN
        | MsgType::DEACT_IPTUNDYN
        | MsgType::REFRESH_IPTUNDYN
        | MsgType::DEACT_IKETUN
        | MsgType::REFRESH_IKETUN
        | MsgType::ACT_IKETUN => BodyRule::Required,
        _ => BodyRule::Empty,
    }
}

fn bad_body(t: MsgType, e: &serde_json::Error) -> Failure {
    Failure::invalid(
        ReasonCode::BAD_BODY,
        format!("the {t} body does not decode: {e}"),
    )
}

fn decode_json<T: DeserializeOwned>(t: MsgType, body: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| bad_body(t, &e))
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(v).map_err(Error::Encode)
}

fn tunnel_control(t: MsgType, body: &[u8]) -> Result<TunnelControl, Failure> {
    let c: TunnelControl = decode_json(t, body)?;
    if c.tunnels.is_empty() || c.tunnels.len() > MAX_TUNNELS_PER_REQUEST {
        return Err(Failure::invalid(
            ReasonCode::BAD_BODY,
            format!("a {t} request names 1 to {MAX_TUNNELS_PER_REQUEST} tunnels"),
        ));
    }
    Ok(c)
}

impl Request {
    /// The message type.
    pub fn msg_type(&self) -> MsgType {
        match self {
            Request::GetStackInfo => MsgType::GET_STACKINFO,
            Request::GetIkeTun(_) => MsgType::GET_IKETUN,
            Request::GetIkeTunCascade(_) => MsgType::GET_IKETUNCASCADE,
            Request::GetIpTunDynIke(_) => MsgType::GET_IPTUNDYNIKE,
            Request::GetIpTunDynStack(_) => MsgType::GET_IPTUNDYNSTACK,
            Request::GetIpTunManual(_) => MsgType::GET_IPTUNMANUAL,
            Request::GetIpFltCurr(_) => MsgType::GET_IPFLTCURR,
            Request::GetIpFltDefault(_) => MsgType::GET_IPFLTDEFAULT,
            Request::GetIpFltPolicy(_) => MsgType::GET_IPFLTPOLICY,
            Request::GetIpInterfaces => MsgType::GET_IPINTERFACES,
            Request::GetPortTrans => MsgType::GET_PORTTRANS,
            Request::GetIkeNsInfo => MsgType::GET_IKENSINFO,
            Request::GetClientInfo => MsgType::GET_CLIENTINFO,
            Request::GetSummary => MsgType::GET_SUMMARY,
            Request::TrafficTest(_) => MsgType::TRAFFIC_TEST,
            Request::SetIpFltDefault => MsgType::SET_IPFLTDEFAULT,
            Request::SetIpFltPolicy => MsgType::SET_IPFLTPOLICY,
            Request::ActIpTunManual(_) => MsgType::ACT_IPTUNMANUAL,
            Request::DeactIpTunManual(_) => MsgType::DEACT_IPTUNMANUAL,
            Request::ActIpTunDyn(_) => MsgType::ACT_IPTUNDYN,
            Request::DeactIpTunDyn(_) => MsgType::DEACT_IPTUNDYN,
            Request::RefreshIpTunDyn(_) => MsgType::REFRESH_IPTUNDYN,
            Request::DeactIkeTun(_) => MsgType::DEACT_IKETUN,
            Request::RefreshIkeTun(_) => MsgType::REFRESH_IKETUN,
            Request::ActIkeTun(_) => MsgType::ACT_IKETUN,
            Request::RefreshConfig => MsgType::REFRESH_CONFIG,
        }
    }

    /// The body bytes (empty for requests without a body and for an empty selection).
    pub fn encode_body(&self) -> Result<Vec<u8>, Error> {
        match self {
            Request::GetIkeTun(s)
            | Request::GetIkeTunCascade(s)
            | Request::GetIpTunDynIke(s)
            | Request::GetIpTunDynStack(s)
            | Request::GetIpTunManual(s)
            | Request::GetIpFltCurr(s)
            | Request::GetIpFltDefault(s)
            | Request::GetIpFltPolicy(s) => {
                if s.is_empty() {
                    Ok(Vec::new())
                } else {
                    to_json(s)
                }
            }
            Request::TrafficTest(t) => to_json(t),
            Request::ActIpTunManual(c)
            | Request::DeactIpTunManual(c)
            | Request::ActIpTunDyn(c)
            | Request::DeactIpTunDyn(c)
            | Request::RefreshIpTunDyn(c)
            | Request::DeactIkeTun(c)
            | Request::RefreshIkeTun(c)
            | Request::ActIkeTun(c) => to_json(c),
            _ => Ok(Vec::new()),
        }
    }

    /// Decodes a request body (processing steps 9–10). The header must have passed
    /// [`Header::check_request`].
    pub fn decode(t: MsgType, body: &[u8]) -> Result<Request, Failure> {
        match body_rule(t) {
            BodyRule::Empty if !body.is_empty() => {
                return Err(Failure::invalid(
                    ReasonCode::MSG_SIZE,
                    format!("a {t} request has no body"),
                ));
            }
            BodyRule::Required if body.is_empty() => {
                return Err(Failure::invalid(
                    ReasonCode::MSG_SIZE,
                    format!("a {t} request needs a body"),
                ));
            }
            _ => {}
        }
        let sel = || -> Result<Selection, Failure> {
            if body.is_empty() {
                Ok(Selection::default())
            } else {
                decode_json(t, body)
            }
        };
        Ok(match t {
            MsgType::GET_STACKINFO => Request::GetStackInfo,
            MsgType::GET_IKETUN => Request::GetIkeTun(sel()?),
            MsgType::GET_IKETUNCASCADE => Request::GetIkeTunCascade(sel()?),
            MsgType::GET_IPTUNDYNIKE => Request::GetIpTunDynIke(sel()?),
            MsgType::GET_IPTUNDYNSTACK => Request::GetIpTunDynStack(sel()?),
            MsgType::GET_IPTUNMANUAL => Request::GetIpTunManual(sel()?),
            MsgType::GET_IPFLTCURR => Request::GetIpFltCurr(sel()?),
            MsgType::GET_IPFLTDEFAULT => Request::GetIpFltDefault(sel()?),
            MsgType::GET_IPFLTPOLICY => Request::GetIpFltPolicy(sel()?),
            MsgType::GET_IPINTERFACES => Request::GetIpInterfaces,
            MsgType::GET_PORTTRANS => Request::GetPortTrans,
            MsgType::GET_IKENSINFO => Request::GetIkeNsInfo,
            MsgType::GET_CLIENTINFO => Request::GetClientInfo,
            MsgType::GET_SUMMARY => Request::GetSummary,
            MsgType::TRAFFIC_TEST => Request::TrafficTest(decode_json(t, body)?),
            MsgType::SET_IPFLTDEFAULT => Request::SetIpFltDefault,
            MsgType::SET_IPFLTPOLICY => Request::SetIpFltPolicy,
            MsgType::ACT_IPTUNMANUAL => Request::ActIpTunManual(tunnel_control(t, body)?),
            MsgType::DEACT_IPTUNMANUAL => Request::DeactIpTunManual(tunnel_control(t, body)?),
            MsgType::ACT_IPTUNDYN => Request::ActIpTunDyn(tunnel_control(t, body)?),
            MsgType::DEACT_IPTUNDYN => Request::DeactIpTunDyn(tunnel_control(t, body)?),
            MsgType::REFRESH_IPTUNDYN => Request::RefreshIpTunDyn(tunnel_control(t, body)?),
            MsgType::DEACT_IKETUN => Request::DeactIkeTun(tunnel_control(t, body)?),
            MsgType::REFRESH_IKETUN => Request::RefreshIkeTun(tunnel_control(t, body)?),
            MsgType::ACT_IKETUN => Request::ActIkeTun(tunnel_control(t, body)?),
            MsgType::REFRESH_CONFIG => Request::RefreshConfig,
            other => {
                return Err(Failure::invalid(
                    ReasonCode::BAD_TYPE,
                    format!("{other} is not a request type"),
                ));
            }
        })
    }
}

/// A successful response body, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Response {
    /// GET_STACKINFO.
    StackInfo(StackInfoList),
    /// GET_IKETUN.
    IkeTunnels(IkeTunnelList),
    /// GET_IKETUNCASCADE.
    IkeTunnelCascade(IkeTunnelCascadeList),
    /// GET_IPTUNDYNIKE, GET_IPTUNDYNSTACK, GET_IPTUNMANUAL.
    IpTunnels(IpTunnelList),
    /// GET_IPFLTCURR, GET_IPFLTDEFAULT, GET_IPFLTPOLICY.
    Filters(FilterList),
    /// GET_IPINTERFACES.
    Interfaces(InterfaceList),
    /// GET_PORTTRANS.
    PortTrans(PortTransList),
    /// GET_IKENSINFO.
    IkeNsInfo(IkeNsInfoList),
    /// GET_CLIENTINFO.
    ClientInfo(ClientInfoList),
    /// GET_SUMMARY.
    Summary(Summary),
    /// TRAFFIC_TEST.
    TrafficTest(TrafficTestResult),
    /// SET_IPFLTDEFAULT, SET_IPFLTPOLICY.
    FilterSet(FilterSetResult),
    /// ACT_*, DEACT_*, REFRESH_IPTUNDYN, REFRESH_IKETUN.
    TunnelControl(TunnelControlResult),
    /// REFRESH_CONFIG.
    ConfigRefresh(ConfigRefreshResult),
}

/// The response kinds, for checking a response against its request type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    StackInfo,
    IkeTunnels,
    IkeTunnelCascade,
    IpTunnels,
    Filters,
    Interfaces,
    PortTrans,
    IkeNsInfo,
    ClientInfo,
    Summary,
    TrafficTest,
    FilterSet,
    TunnelControl,
    ConfigRefresh,
}

fn kind_of(t: MsgType) -> Option<Kind> {
    Some(match t {
        MsgType::GET_STACKINFO => Kind::StackInfo,
        MsgType::GET_IKETUN => Kind::IkeTunnels,
        MsgType::GET_IKETUNCASCADE => Kind::IkeTunnelCascade,
        MsgType::GET_IPTUNDYNIKE | MsgType::GET_IPTUNDYNSTACK | MsgType::GET_IPTUNMANUAL => {
            Kind::IpTunnels
        }
        MsgType::GET_IPFLTCURR | MsgType::GET_IPFLTDEFAULT | MsgType::GET_IPFLTPOLICY => {
            Kind::Filters
        }
        MsgType::GET_IPINTERFACES => Kind::Interfaces,
        MsgType::GET_PORTTRANS => Kind::PortTrans,
        MsgType::GET_IKENSINFO => Kind::IkeNsInfo,
        MsgType::GET_CLIENTINFO => Kind::ClientInfo,
        MsgType::GET_SUMMARY => Kind::Summary,
        MsgType::TRAFFIC_TEST => Kind::TrafficTest,
        MsgType::SET_IPFLTDEFAULT | MsgType::SET_IPFLTPOLICY => Kind::FilterSet,
        MsgType::ACT_IPTUNMANUAL
        | MsgType::DEACT_IPTUNMANUAL
        | MsgType::ACT_IPTUNDYN
        | MsgType::DEACT_IPTUNDYN
        | MsgType::REFRESH_IPTUNDYN
        | MsgType::DEACT_IKETUN
        | MsgType::REFRESH_IKETUN
        | MsgType::ACT_IKETUN => Kind::TunnelControl,
        MsgType::REFRESH_CONFIG => Kind::ConfigRefresh,
        _ => return None,
    })
}

impl Response {
    fn kind(&self) -> Kind {
        match self {
            Response::StackInfo(_) => Kind::StackInfo,
            Response::IkeTunnels(_) => Kind::IkeTunnels,
            Response::IkeTunnelCascade(_) => Kind::IkeTunnelCascade,
            Response::IpTunnels(_) => Kind::IpTunnels,
            Response::Filters(_) => Kind::Filters,
            Response::Interfaces(_) => Kind::Interfaces,
            Response::PortTrans(_) => Kind::PortTrans,
            Response::IkeNsInfo(_) => Kind::IkeNsInfo,
            Response::ClientInfo(_) => Kind::ClientInfo,
            Response::Summary(_) => Kind::Summary,
            Response::TrafficTest(_) => Kind::TrafficTest,
            Response::FilterSet(_) => Kind::FilterSet,
            Response::TunnelControl(_) => Kind::TunnelControl,
            Response::ConfigRefresh(_) => Kind::ConfigRefresh,
        }
    }

    /// True if this is the response kind the request type `t` requires.
    pub fn answers(&self, t: MsgType) -> bool {
        kind_of(t) == Some(self.kind())
    }

    /// The body bytes.
    pub fn encode_body(&self) -> Result<Vec<u8>, Error> {
        match self {
            Response::StackInfo(v) => to_json(v),
            Response::IkeTunnels(v) => to_json(v),
            Response::IkeTunnelCascade(v) => to_json(v),
            Response::IpTunnels(v) => to_json(v),
            Response::Filters(v) => to_json(v),
            Response::Interfaces(v) => to_json(v),
            Response::PortTrans(v) => to_json(v),
            Response::IkeNsInfo(v) => to_json(v),
            Response::ClientInfo(v) => to_json(v),
            Response::Summary(v) => to_json(v),
            Response::TrafficTest(v) => to_json(v),
            Response::FilterSet(v) => to_json(v),
            Response::TunnelControl(v) => to_json(v),
            Response::ConfigRefresh(v) => to_json(v),
        }
    }

    /// The body as indented JSON, fields in wire order (what `ipsec --json` prints).
    pub fn to_json_pretty(&self) -> Result<String, Error> {
        let r = match self {
            Response::StackInfo(v) => serde_json::to_string_pretty(v),
            Response::IkeTunnels(v) => serde_json::to_string_pretty(v),
            Response::IkeTunnelCascade(v) => serde_json::to_string_pretty(v),
            Response::IpTunnels(v) => serde_json::to_string_pretty(v),
            Response::Filters(v) => serde_json::to_string_pretty(v),
            Response::Interfaces(v) => serde_json::to_string_pretty(v),
            Response::PortTrans(v) => serde_json::to_string_pretty(v),
            Response::IkeNsInfo(v) => serde_json::to_string_pretty(v),
            Response::ClientInfo(v) => serde_json::to_string_pretty(v),
            Response::Summary(v) => serde_json::to_string_pretty(v),
            Response::TrafficTest(v) => serde_json::to_string_pretty(v),
            Response::FilterSet(v) => serde_json::to_string_pretty(v),
            Response::TunnelControl(v) => serde_json::to_string_pretty(v),
            Response::ConfigRefresh(v) => serde_json::to_string_pretty(v),
        };
        r.map_err(Error::Encode)
    }

    /// Decodes the body of a successful (rc 0) response to a request of type `t`.
    pub fn decode(t: MsgType, body: &[u8]) -> Result<Response, Error> {
        let kind = kind_of(t).ok_or(Error::Protocol(format!(
            "{t} is not a request type, so it has no response body"
        )))?;
        let j = |e: serde_json::Error| Error::Decode {
            msg_type: t,
            source: e,
        };
        Ok(match kind {
            Kind::StackInfo => Response::StackInfo(serde_json::from_slice(body).map_err(j)?),
            Kind::IkeTunnels => Response::IkeTunnels(serde_json::from_slice(body).map_err(j)?),
            Kind::IkeTunnelCascade => {
                Response::IkeTunnelCascade(serde_json::from_slice(body).map_err(j)?)
            }
            Kind::IpTunnels => Response::IpTunnels(serde_json::from_slice(body).map_err(j)?),
            Kind::Filters => Response::Filters(serde_json::from_slice(body).map_err(j)?),
            Kind::Interfaces => Response::Interfaces(serde_json::from_slice(body).map_err(j)?),
            Kind::PortTrans => Response::PortTrans(serde_json::from_slice(body).map_err(j)?),
            Kind::IkeNsInfo => Response::IkeNsInfo(serde_json::from_slice(body).map_err(j)?),
            Kind::ClientInfo => Response::ClientInfo(serde_json::from_slice(body).map_err(j)?),
            Kind::Summary => Response::Summary(serde_json::from_slice(body).map_err(j)?),
            Kind::TrafficTest => Response::TrafficTest(serde_json::from_slice(body).map_err(j)?),
            Kind::FilterSet => Response::FilterSet(serde_json::from_slice(body).map_err(j)?),
            Kind::TunnelControl => {
                Response::TunnelControl(serde_json::from_slice(body).map_err(j)?)
            }
            Kind::ConfigRefresh => {
                Response::ConfigRefresh(serde_json::from_slice(body).map_err(j)?)
            }
        })
    }
}

/// A whole message: header and body. Used for relaying (nssd forwards request bytes unchanged)
/// and by the client and server to read and write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Header; `body_len` equals `body.len()` in frames this crate builds.
    pub header: Header,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Frame {
    /// The message bytes (header with `body_len` set from the body).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut h = self.header.clone();
        h.body_len = u32::try_from(self.body.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(HEADER_LEN.saturating_add(self.body.len()));
        out.extend_from_slice(&h.to_bytes());
        out.extend_from_slice(&self.body);
        out
    }

    /// Parses one complete message from `bytes` (exactly one message, no trailing bytes), at most
    /// `max_len` bytes long. Checks the identifier and the length only.
    pub fn parse(bytes: &[u8], max_len: usize) -> Result<Frame, Failure> {
        let header = Header::parse_slice(bytes).ok_or_else(|| {
            Failure::invalid(
                ReasonCode::MSG_SIZE,
                format!(
                    "a message is at least {HEADER_LEN} bytes, got {}",
                    bytes.len()
                ),
            )
        })?;
        header.check_framing(max_len)?;
        if header.message_len() != bytes.len() {
            return Err(Failure::invalid(
                ReasonCode::MSG_SIZE,
                format!(
                    "the header announces {} bytes, the message has {}",
                    header.message_len(),
                    bytes.len()
                ),
            ));
        }
        let body = bytes.get(HEADER_LEN..).unwrap_or_default().to_vec();
        Ok(Frame { header, body })
    }

    /// A request message.
    pub fn request(
        request: &Request,
        version: u16,
        correlator: u32,
        target: Option<&Target>,
    ) -> Result<Frame, Error> {
        let body = request.encode_body()?;
        let mut header = Header::request(request.msg_type(), version, correlator, target);
        header.body_len = u32::try_from(body.len()).map_err(|_| Error::TooLarge(body.len()))?;
        Ok(Frame { header, body })
    }

    /// A successful response to `request`.
    pub fn response(
        request: &Header,
        target: Option<&Target>,
        response: &Response,
    ) -> Result<Frame, Error> {
        let body = response.encode_body()?;
        let mut header = Header::server(
            request.msg_type,
            request.version,
            request.correlator,
            ReturnCode::OK,
            ReasonCode::NONE,
            target,
        );
        header.body_len = u32::try_from(body.len()).map_err(|_| Error::TooLarge(body.len()))?;
        Ok(Frame { header, body })
    }

    /// An error response to `request`, with an `ErrorInfo` body.
    pub fn failure(request: &Header, target: Option<&Target>, failure: &Failure) -> Frame {
        let version = if request.version == 0 {
            crate::MIN_VERSION
        } else {
            request.version
        };
        Frame::server_message(
            request.msg_type,
            version,
            request.correlator,
            target,
            failure,
        )
    }

    /// TERM with the failure's rc/rsn (or 0/0 with a message for an orderly shutdown).
    pub fn term(version: u16, failure: &Failure) -> Frame {
        Frame::server_message(MsgType::TERM, version, 0, None, failure)
    }

    fn server_message(
        t: MsgType,
        version: u16,
        correlator: u32,
        target: Option<&Target>,
        failure: &Failure,
    ) -> Frame {
        let info = ErrorInfo {
            message: failure.message.clone(),
            profile: failure.profile.clone(),
        };
        let body = serde_json::to_vec(&info).unwrap_or_default();
        let mut header = Header::server(t, version, correlator, failure.rc, failure.rsn, target);
        header.body_len = u32::try_from(body.len()).unwrap_or(0);
        Frame { header, body }
    }

    /// INIT with the server's information.
    pub fn init(info: &ServerInfo) -> Result<Frame, Error> {
        let body = to_json(info)?;
        let mut header = Header::server(
            MsgType::INIT,
            info.max_version,
            0,
            ReturnCode::OK,
            ReasonCode::NONE,
            None,
        );
        header.body_len = u32::try_from(body.len()).map_err(|_| Error::TooLarge(body.len()))?;
        Ok(Frame { header, body })
    }

    /// Decodes an error/TERM body (`ErrorInfo`), tolerating an empty body.
    pub fn error_info(&self) -> Option<ErrorInfo> {
        if self.body.is_empty() {
            return None;
        }
        serde_json::from_slice(&self.body).ok()
    }
}
