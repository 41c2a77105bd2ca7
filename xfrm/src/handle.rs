//! The [`Handle`] and its request builders (`handle.state().add(sa).execute().await`).

use std::net::IpAddr;
use std::sync::Arc;

use netlink_packet_xfrm as nx;
use nx::XfrmAttrs;
use tokio::sync::Mutex;

use crate::conn::{self, Conn, Expect, SecretBuf, SeqGen};
use crate::error::{Error, Result};
use crate::event::{AsyncEvent, EventGroups, EventStream, async_event};
use crate::netns::Netns;
use crate::policy::{Policy, PolicyId, PolicyInfo, SpdInfo};
use crate::sa::{Sa, SaCounters, SaId, SaInfo, SadInfo};
use crate::stat::XfrmStat;
use crate::types::{AddressFamily, IpPrefix, Mark, Mode, Proto, Spi};
use crate::wire::{AeMsg, Attrs, NLM_F_REQUEST, SpiInfoMsg, XfrmMsg};

struct Inner {
    conn: Mutex<Conn>,
    seqs: SeqGen,
    netns: Netns,
}

/// A connection to the XFRM subsystem of one network namespace.
///
/// Cheap to clone; clones share one socket. Concurrent requests are serialised on the socket
/// (the kernel processes each synchronously anyway); use a [`Batch`] to install many objects
/// with one system call per datagram.
#[derive(Clone)]
pub struct Handle {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("netns", &self.inner.netns.name())
            .finish()
    }
}

impl Handle {
    /// Opens a handle in the calling thread's network namespace. Must run inside a Tokio runtime.
    pub fn new() -> Result<Self> {
        Self::open(Netns::current())
    }

    /// Opens a handle in the named namespace (`/run/netns/NAME`; `default` = the initial one).
    pub fn open_named(name: &str) -> Result<Self> {
        Self::open(Netns::named(name)?)
    }

    /// Opens a handle in `netns` without moving the calling thread. Must run inside a Tokio
    /// runtime.
    pub fn open(netns: Netns) -> Result<Self> {
        require_runtime()?;
        let sock = conn::open_socket(&netns, &[])?;
        Ok(Handle {
            inner: Arc::new(Inner {
                conn: Mutex::new(Conn::new(sock)?),
                seqs: SeqGen::default(),
                netns,
            }),
        })
    }

    /// The namespace this handle talks to.
    pub fn netns(&self) -> &Netns {
        &self.inner.netns
    }

    /// SA requests.
    pub fn state(&self) -> StateHandle {
        StateHandle(self.clone())
    }

    /// Policy requests.
    pub fn policy(&self) -> PolicyHandle {
        PolicyHandle(self.clone())
    }

    /// A new batch of requests, sent with as few system calls as possible.
    pub fn batch(&self) -> Batch {
        Batch {
            handle: self.clone(),
            buf: SecretBuf::default(),
            items: Vec::new(),
        }
    }

    /// Subscribes to events on a new socket in this handle's namespace.
    pub fn events(&self, groups: EventGroups) -> Result<EventStream> {
        require_runtime()?;
        let sock = conn::open_socket(&self.inner.netns, &groups.group_numbers())?;
        EventStream::new(sock)
    }

    /// The namespace's XFRM error counters (`/proc/net/xfrm_stat`; needs
    /// `CONFIG_XFRM_STATISTICS`). Reads a small procfs file, from a helper thread when the
    /// handle is in another namespace.
    pub fn xfrm_stat(&self) -> Result<XfrmStat> {
        let text = self
            .inner
            .netns
            .run(|| std::fs::read_to_string("/proc/thread-self/net/xfrm_stat"))?;
        Ok(XfrmStat::parse(&text))
    }

    async fn request(
        &self,
        op: &'static str,
        msg: &XfrmMsg,
        expect: Expect,
    ) -> Result<Option<XfrmMsg>> {
        let mut c = self.inner.conn.lock().await;
        c.request(&self.inner.seqs, op, msg, expect).await
    }

    async fn dump(&self, op: &'static str, msg: &XfrmMsg) -> Result<Vec<XfrmMsg>> {
        let mut c = self.inner.conn.lock().await;
        c.dump(&self.inner.seqs, op, msg).await
    }
}

fn require_runtime() -> Result<()> {
    tokio::runtime::Handle::try_current()
        .map(|_| ())
        .map_err(|_| Error::invalid("an XFRM handle must be opened inside a Tokio runtime"))
}

/// A request that can go into a [`Batch`].
pub trait BatchRequest {
    /// The operation name and the message.
    fn into_message(self) -> Result<(&'static str, XfrmMsg)>;
}

macro_rules! ack_request {
    ($(#[$m:meta])* $name:ident { $($field:ident : $ty:ty),* } => |$s:ident| $op:expr, $build:expr) => {
        $(#[$m])*
        #[must_use = "a request does nothing until executed"]
        #[derive(Debug)]
        pub struct $name {
            handle: Handle,
            $($field: $ty,)*
        }

        impl BatchRequest for $name {
            fn into_message(self) -> Result<(&'static str, XfrmMsg)> {
                let $s = self;
                Ok(($op, $build))
            }
        }

        impl $name {
            /// Sends the request and waits for the kernel's acknowledgement.
            pub async fn execute(self) -> Result<()> {
                let handle = self.handle.clone();
                let (op, msg) = self.into_message()?;
                handle.request(op, &msg, Expect::Ack).await.map(|_| ())
            }
        }
    };
}

/// SA requests of a [`Handle`].
#[derive(Debug, Clone)]
pub struct StateHandle(Handle);

impl StateHandle {
    /// Adds an SA (fails with EEXIST if it exists).
    pub fn add(&self, sa: Sa) -> AddSa {
        AddSa {
            handle: self.0.clone(),
            sa,
            update: false,
        }
    }

    /// Updates an existing SA — the way to complete an SA whose SPI came from
    /// [`alloc_spi`](Self::alloc_spi), or to change lifetimes/encapsulation in place.
    pub fn update(&self, sa: Sa) -> AddSa {
        AddSa {
            handle: self.0.clone(),
            sa,
            update: true,
        }
    }

    /// Deletes an SA.
    pub fn delete(&self, id: SaId) -> DeleteSa {
        DeleteSa {
            handle: self.0.clone(),
            id,
        }
    }

    /// Reads one SA (keys included, wiped on drop).
    pub fn get(&self, id: SaId) -> GetSa {
        GetSa {
            handle: self.0.clone(),
            id,
        }
    }

    /// Lists SAs.
    pub fn dump(&self) -> DumpSa {
        DumpSa {
            handle: self.0.clone(),
            proto: None,
            filter: None,
        }
    }

    /// Deletes all SAs (only those of one protocol with `.proto()`).
    pub fn flush(&self) -> FlushSa {
        FlushSa {
            handle: self.0.clone(),
            proto: None,
        }
    }

    /// Allocates an unused SPI for an inbound SA from `src` to `dst` (`XFRM_MSG_ALLOCSPI`).
    /// The kernel creates a larval SA holding the SPI; install the real SA with
    /// [`update`](Self::update) (not `add`) before it times out (30 s). When the range is
    /// exhausted the request fails, and the kernel's larval SA (SPI 0) lingers until it times out.
    pub fn alloc_spi(&self, src: IpAddr, dst: IpAddr, proto: Proto) -> AllocSpi {
        AllocSpi {
            handle: self.0.clone(),
            src,
            dst,
            proto,
            min: 0x100,
            max: 0x0fff_ffff,
            reqid: 0,
            mode: Mode::Tunnel,
            acquire_seq: 0,
            mark: None,
        }
    }

    /// Counters of one SA (bytes, packets, times, replay/integrity failures, sequence numbers).
    pub async fn counters(&self, id: SaId) -> Result<SaCounters> {
        let info = self.get(id).execute().await?;
        // `info` (with its keys) is dropped and wiped here.
        Ok(info.counters())
    }

    /// Replay and lifetime state of one SA (`XFRM_MSG_GETAE`); no key material crosses.
    pub async fn async_event(&self, id: SaId) -> Result<AsyncEvent> {
        let mut attrs = Vec::new();
        if let Some(m) = id.mark {
            attrs.push(XfrmAttrs::Mark(nx::Mark {
                value: m.value,
                mask: m.mask,
            }));
        }
        let w = id.to_wire();
        let msg = XfrmMsg::GetAe(AeMsg {
            id: nx::AsyncEventId {
                sa_id: w.id,
                saddr: id.src.map(|a| nx::Address::from_ip(&a)).unwrap_or_default(),
                flags: nx::XFRM_AE_RVAL | nx::XFRM_AE_LVAL,
                reqid: 0,
            },
            attrs: Attrs(attrs),
        });
        match self
            .0
            .request("get SA replay state", &msg, Expect::Reply)
            .await?
        {
            Some(XfrmMsg::NewAe(m)) => Ok(async_event(&m.id, &m.attrs)),
            other => Err(unexpected("get SA replay state", other)),
        }
    }

    /// SAD summary: number of SAs and hash sizes.
    pub async fn info(&self) -> Result<SadInfo> {
        match self
            .0
            .request(
                "get SAD info",
                &XfrmMsg::GetSadInfo(u32::MAX),
                Expect::Reply,
            )
            .await?
        {
            Some(XfrmMsg::NewSadInfo(m)) => {
                let mut out = SadInfo::default();
                for a in &m.nlas {
                    match a {
                        nx::state::SadInfoAttrs::SadCount(c) => out.count = *c,
                        nx::state::SadInfoAttrs::SadHInfo(h) => {
                            out.hash_size = h.sadhcnt;
                            out.hash_max = h.sadhmcnt;
                        }
                        _ => {}
                    }
                }
                Ok(out)
            }
            other => Err(unexpected("get SAD info", other)),
        }
    }
}

fn unexpected(op: &'static str, m: Option<XfrmMsg>) -> Error {
    Error::UnexpectedReply {
        op,
        msg_type: m.map_or(0, |m| m.message_type()),
    }
}

/// Add or update an SA.
#[must_use = "a request does nothing until executed"]
#[derive(Debug)]
pub struct AddSa {
    handle: Handle,
    sa: Sa,
    update: bool,
}

impl BatchRequest for AddSa {
    fn into_message(self) -> Result<(&'static str, XfrmMsg)> {
        let w = self.sa.to_wire()?;
        Ok(if self.update {
            ("update SA", XfrmMsg::UpdSa(w))
        } else {
            ("add SA", XfrmMsg::NewSa(w))
        })
    }
}

impl AddSa {
    /// Sends the request and waits for the acknowledgement.
    pub async fn execute(self) -> Result<()> {
        let handle = self.handle.clone();
        let (op, msg) = self.into_message()?;
        handle.request(op, &msg, Expect::Ack).await.map(|_| ())
    }
}

ack_request!(
    /// Delete an SA.
    DeleteSa { id: SaId } => |s| "delete SA", XfrmMsg::DelSa(s.id.to_wire())
);

ack_request!(
    /// Flush SAs.
    FlushSa { proto: Option<Proto> } => |s| "flush SAs", XfrmMsg::FlushSa {
        proto: s.proto.map_or(0, u8::from),
        padding: Vec::new(),
    }
);

impl FlushSa {
    /// Only SAs of this protocol ([`Proto::Any`]: ESP, AH and IPComp); default: every SA.
    pub fn proto(mut self, proto: Proto) -> Self {
        self.proto = Some(proto);
        self
    }
}

/// Read one SA.
#[must_use = "a request does nothing until executed"]
#[derive(Debug)]
pub struct GetSa {
    handle: Handle,
    id: SaId,
}

impl GetSa {
    /// Sends the request and returns the SA.
    pub async fn execute(self) -> Result<SaInfo> {
        let msg = XfrmMsg::GetSa(self.id.to_wire());
        match self.handle.request("get SA", &msg, Expect::Reply).await? {
            Some(XfrmMsg::NewSa(mut m)) => Ok(SaInfo::from_wire(&m.info, &mut m.attrs)),
            other => Err(unexpected("get SA", other)),
        }
    }
}

/// List SAs.
#[must_use = "a request does nothing until executed"]
#[derive(Debug)]
pub struct DumpSa {
    handle: Handle,
    proto: Option<Proto>,
    filter: Option<(IpPrefix, IpPrefix)>,
}

impl DumpSa {
    /// Only SAs of this protocol (kernel-side filter).
    pub fn proto(mut self, proto: Proto) -> Self {
        self.proto = Some(proto);
        self
    }

    /// Only SAs whose source and destination fall in these prefixes (kernel-side filter).
    pub fn addresses(mut self, src: IpPrefix, dst: IpPrefix) -> Self {
        self.filter = Some((src, dst));
        self
    }

    /// Sends the request and returns all matching SAs.
    pub async fn execute(self) -> Result<Vec<SaInfo>> {
        let mut attrs = Vec::new();
        if let Some((src, dst)) = self.filter {
            attrs.push(XfrmAttrs::AddressFilter(nx::AddressFilter {
                saddr: nx::Address::from_ip(&src.addr),
                daddr: nx::Address::from_ip(&dst.addr),
                family: AddressFamily::of(&src.addr).into(),
                splen: src.len,
                dplen: dst.len,
            }));
        }
        if let Some(p) = self.proto {
            attrs.push(XfrmAttrs::Proto(p.into()));
        }
        let msgs = self
            .handle
            .dump("dump SAs", &XfrmMsg::DumpSa(Attrs(attrs)))
            .await?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                XfrmMsg::NewSa(mut m) => Some(SaInfo::from_wire(&m.info, &mut m.attrs)),
                _ => None,
            })
            .collect())
    }
}

/// Allocate an SPI.
#[must_use = "a request does nothing until executed"]
#[derive(Debug)]
pub struct AllocSpi {
    handle: Handle,
    src: IpAddr,
    dst: IpAddr,
    proto: Proto,
    min: u32,
    max: u32,
    reqid: u32,
    mode: Mode,
    acquire_seq: u32,
    mark: Option<Mark>,
}

impl AllocSpi {
    /// Allocate within `[min, max]` (default 0x100..=0x0fffffff).
    pub fn range(mut self, min: u32, max: u32) -> Self {
        self.min = min;
        self.max = max;
        self
    }

    /// The reqid the SA will have.
    pub fn reqid(mut self, reqid: u32) -> Self {
        self.reqid = reqid;
        self
    }

    /// The mode the SA will have.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The ACQUIRE sequence number this SPI answers.
    pub fn acquire_seq(mut self, seq: u32) -> Self {
        self.acquire_seq = seq;
        self
    }

    /// Mark of the SA.
    pub fn mark(mut self, mark: Mark) -> Self {
        self.mark = Some(mark);
        self
    }

    /// Sends the request and returns the SPI.
    pub async fn execute(self) -> Result<Spi> {
        if self.min > self.max || self.min == 0 {
            return Err(Error::invalid(format!(
                "bad SPI range {:#x}..={:#x}",
                self.min, self.max
            )));
        }
        if AddressFamily::of(&self.src) != AddressFamily::of(&self.dst) {
            return Err(Error::invalid("ALLOCSPI endpoints mix address families"));
        }
        let mut attrs = Vec::new();
        if let Some(m) = self.mark {
            attrs.push(XfrmAttrs::Mark(nx::Mark {
                value: m.value,
                mask: m.mask,
            }));
        }
        let info = nx::UserSaInfo {
            id: nx::Id {
                daddr: nx::Address::from_ip(&self.dst),
                spi: 0,
                proto: self.proto.into(),
            },
            saddr: nx::Address::from_ip(&self.src),
            family: AddressFamily::of(&self.dst).into(),
            mode: self.mode.into(),
            reqid: self.reqid,
            seq: self.acquire_seq,
            lifetime_cfg: nx::LifetimeConfig::default(),
            ..Default::default()
        };
        let msg = XfrmMsg::AllocSpi(SpiInfoMsg {
            info: nx::UserSpiInfo {
                info,
                min: self.min,
                max: self.max,
            },
            attrs: Attrs(attrs),
        });
        match self
            .handle
            .request("allocate SPI", &msg, Expect::Reply)
            .await?
        {
            Some(XfrmMsg::NewSa(m)) => Ok(Spi(m.info.id.spi)),
            other => Err(unexpected("allocate SPI", other)),
        }
    }
}

/// Policy requests of a [`Handle`].
#[derive(Debug, Clone)]
pub struct PolicyHandle(Handle);

impl PolicyHandle {
    /// Adds a policy (EEXIST if one with the same selector, direction and mark exists).
    pub fn add(&self, policy: Policy) -> AddPolicy {
        AddPolicy {
            handle: self.0.clone(),
            policy,
            update: false,
        }
    }

    /// Adds or replaces a policy.
    pub fn update(&self, policy: Policy) -> AddPolicy {
        AddPolicy {
            handle: self.0.clone(),
            policy,
            update: true,
        }
    }

    /// Deletes a policy.
    pub fn delete(&self, id: PolicyId) -> DeletePolicy {
        DeletePolicy {
            handle: self.0.clone(),
            id,
        }
    }

    /// Reads one policy.
    pub fn get(&self, id: PolicyId) -> GetPolicy {
        GetPolicy {
            handle: self.0.clone(),
            id,
        }
    }

    /// Lists policies.
    pub fn dump(&self) -> DumpPolicy {
        DumpPolicy {
            handle: self.0.clone(),
        }
    }

    /// Deletes all (main-type) policies.
    pub fn flush(&self) -> FlushPolicy {
        FlushPolicy {
            handle: self.0.clone(),
        }
    }

    /// SPD summary: policy counts per direction and hash sizes.
    pub async fn info(&self) -> Result<SpdInfo> {
        match self
            .0
            .request(
                "get SPD info",
                &XfrmMsg::GetSpdInfo(u32::MAX),
                Expect::Reply,
            )
            .await?
        {
            Some(XfrmMsg::NewSpdInfo(m)) => {
                let mut out = SpdInfo::default();
                for a in &m.nlas {
                    match a {
                        nx::policy::SpdInfoAttrs::SpdInfo(i) => {
                            out.in_count = i.incnt;
                            out.out_count = i.outcnt;
                            out.fwd_count = i.fwdcnt;
                            out.in_socket_count = i.inscnt;
                            out.out_socket_count = i.outscnt;
                            out.fwd_socket_count = i.fwdscnt;
                        }
                        nx::policy::SpdInfoAttrs::SpdHInfo(h) => {
                            out.hash_size = h.spdhcnt;
                            out.hash_max = h.spdhmcnt;
                        }
                        _ => {}
                    }
                }
                Ok(out)
            }
            other => Err(unexpected("get SPD info", other)),
        }
    }
}

/// Add or update a policy.
#[must_use = "a request does nothing until executed"]
#[derive(Debug)]
pub struct AddPolicy {
    handle: Handle,
    policy: Policy,
    update: bool,
}

impl BatchRequest for AddPolicy {
    fn into_message(self) -> Result<(&'static str, XfrmMsg)> {
        let w = self.policy.to_wire()?;
        Ok(if self.update {
            ("update policy", XfrmMsg::UpdPolicy(w))
        } else {
            ("add policy", XfrmMsg::NewPolicy(w))
        })
    }
}

impl AddPolicy {
    /// Sends the request and waits for the acknowledgement.
    pub async fn execute(self) -> Result<()> {
        let handle = self.handle.clone();
        let (op, msg) = self.into_message()?;
        handle.request(op, &msg, Expect::Ack).await.map(|_| ())
    }
}

ack_request!(
    /// Delete a policy.
    DeletePolicy { id: PolicyId } => |s| "delete policy", XfrmMsg::DelPolicy(s.id.to_wire())
);

ack_request!(
    /// Flush policies.
    FlushPolicy {} => |_s| "flush policies", XfrmMsg::FlushPolicy(Attrs::default())
);

/// Read one policy.
#[must_use = "a request does nothing until executed"]
#[derive(Debug)]
pub struct GetPolicy {
    handle: Handle,
    id: PolicyId,
}

impl GetPolicy {
    /// Sends the request and returns the policy.
    pub async fn execute(self) -> Result<PolicyInfo> {
        let msg = XfrmMsg::GetPolicy(self.id.to_wire());
        match self
            .handle
            .request("get policy", &msg, Expect::Reply)
            .await?
        {
            Some(XfrmMsg::NewPolicy(m)) => Ok(PolicyInfo::from_wire(&m.info, &m.attrs)),
            other => Err(unexpected("get policy", other)),
        }
    }
}

/// List policies.
#[must_use = "a request does nothing until executed"]
#[derive(Debug)]
pub struct DumpPolicy {
    handle: Handle,
}

impl DumpPolicy {
    /// Sends the request and returns all policies.
    pub async fn execute(self) -> Result<Vec<PolicyInfo>> {
        let msgs = self
            .handle
            .dump("dump policies", &XfrmMsg::DumpPolicy(Attrs::default()))
            .await?;
        Ok(msgs
            .into_iter()
            .filter_map(|m| match m {
                XfrmMsg::NewPolicy(m) => Some(PolicyInfo::from_wire(&m.info, &m.attrs)),
                _ => None,
            })
            .collect())
    }
}

/// Many requests sent together: each datagram carries up to a few hundred requests, the kernel
/// acknowledges only failures, and one barrier acknowledgement closes each datagram (see the
/// crate docs). Requests run in order; a failure does not stop the ones after it.
pub struct Batch {
    handle: Handle,
    buf: SecretBuf,
    items: Vec<(usize, &'static str, Expect)>,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("requests", &self.items.len())
            .finish_non_exhaustive()
    }
}

impl Batch {
    /// Appends a request (anything from the builders that only needs an acknowledgement:
    /// add/update/delete SA or policy, flushes). Invalid requests are refused here, before
    /// anything is sent.
    pub fn push(&mut self, req: impl BatchRequest) -> Result<()> {
        let (op, msg) = req.into_message()?;
        let off = conn::encode(&mut self.buf, &msg, NLM_F_REQUEST, 0);
        self.items.push((off, op, Expect::Ack));
        Ok(())
    }

    /// Appends an SA add.
    pub fn add_sa(&mut self, sa: Sa) -> Result<()> {
        let r = self.handle.state().add(sa);
        self.push(r)
    }

    /// Appends an SA update.
    pub fn update_sa(&mut self, sa: Sa) -> Result<()> {
        let r = self.handle.state().update(sa);
        self.push(r)
    }

    /// Appends an SA delete.
    pub fn delete_sa(&mut self, id: SaId) -> Result<()> {
        let r = self.handle.state().delete(id);
        self.push(r)
    }

    /// Appends a policy add.
    pub fn add_policy(&mut self, p: Policy) -> Result<()> {
        let r = self.handle.policy().add(p);
        self.push(r)
    }

    /// Appends a policy update.
    pub fn update_policy(&mut self, p: Policy) -> Result<()> {
        let r = self.handle.policy().update(p);
        self.push(r)
    }

    /// Appends a policy delete.
    pub fn delete_policy(&mut self, id: PolicyId) -> Result<()> {
        let r = self.handle.policy().delete(id);
        self.push(r)
    }

    /// Number of requests.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Sends everything. The outer error means the socket failed; the vector holds each
    /// request's outcome in order.
    pub async fn execute(mut self) -> Result<Vec<Result<()>>> {
        if self.items.is_empty() {
            return Ok(Vec::new());
        }
        let handle = self.handle.clone();
        let mut c = handle.inner.conn.lock().await;
        let outcomes = c
            .batch(&handle.inner.seqs, &mut self.buf, &self.items)
            .await?;
        Ok(outcomes.into_iter().map(|o| o.map(|_| ())).collect())
    }
}
