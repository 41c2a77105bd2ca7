//! The request/response engine on one XFRM netlink socket.
//!
//! The kernel handles requests sent to a netlink kernel socket synchronously inside
//! `sendmsg(2)`: when `sendmsg` returns, every reply for the datagram is already queued on our
//! socket (dumps continue inside `recvmsg`). So a request costs one send and one receive per
//! reply, and the cheapest way to install many objects is one datagram carrying many requests.
//!
//! A [`Batch`](crate::Batch) therefore packs its requests into datagrams of up to 256
//! messages, asks for *no* per-request acknowledgement, and ends each
//! datagram with an `NLMSG_NOOP` carrying `NLM_F_ACK` as a barrier. The kernel still reports
//! every failure (errors are always sent) with the failed request's sequence number, in order,
//! before the barrier's acknowledgement; any request without an error before the barrier
//! succeeded. A datagram of N requests thus costs one `sendmsg` and, when all succeed, one
//! `recvmsg`. Chunks are sized so the worst case (every request failing) fits in the receive
//! buffer; if it overflows anyway (ENOBUFS), the requests whose outcome is unknown are
//! reported as [`Error::Overrun`](crate::Error::Overrun), never as success.

use std::io;
use std::io::IoSlice;
use std::sync::atomic::{AtomicU32, Ordering};

use netlink_sys::{AsyncSocket, Socket, SocketAddr, TokioSocket, protocols::NETLINK_XFRM};
use rustix::net::{SendAncillaryBuffer, SendFlags, sendmsg, sockopt};
use zeroize::Zeroize;

use crate::error::{Error, KernelError, Result};
use crate::netns::Netns;
use crate::wire::{
    self, ErrorMsg, Message, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_NOOP,
    NlHeader, NlMessages, XfrmMsg,
};

const MSG_DONTWAIT: i32 = 0x40;
const ENOBUFS: i32 = 105;
/// Receive buffer per `recvmsg`. Kernel dump datagrams are at most 32 KiB and unicast replies
/// and notifications are far smaller, so nothing is ever truncated.
const RECV_BUF: usize = 64 * 1024;
/// Socket buffers we ask for (with CAP_NET_ADMIN the `FORCE` variants exceed rmem_max).
const SOCK_BUF: usize = 8 * 1024 * 1024;
/// Datagrams read (or sent) between voluntary yields to the runtime.
const YIELD_EVERY: u32 = 8;
/// Worst-case receive-queue cost of one error reply (skb truesize with a capped echo and an
/// extended-ack message), used to size batches so that all-fail still fits.
const ERROR_TRUESIZE: usize = 2048;

/// What a request expects back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expect {
    /// Only an acknowledgement.
    Ack,
    /// One reply message.
    Reply,
}

/// One outcome of a batched request.
pub(crate) type Outcome = Result<Option<XfrmMsg>>;

/// A buffer that may hold key material: it never reallocates behind our back (growth copies
/// into a new allocation and wipes the old one), and it is wiped on drop.
#[derive(Default)]
pub(crate) struct SecretBuf(Vec<u8>);

impl SecretBuf {
    pub(crate) fn with_capacity(n: usize) -> Self {
        SecretBuf(Vec::with_capacity(n))
    }

    /// Makes room for `extra` more bytes without leaving copies in freed memory.
    pub(crate) fn reserve(&mut self, extra: usize) -> &mut Vec<u8> {
        if self.0.capacity() - self.0.len() < extra {
            let want = (self.0.len() + extra).max(self.0.capacity() * 2).max(4096);
            let mut n = Vec::with_capacity(want);
            n.extend_from_slice(&self.0);
            self.0.zeroize();
            self.0 = n;
        }
        &mut self.0
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn as_mut_vec(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

impl Drop for SecretBuf {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Appends request `msg` with `flags` and `seq` to `buf`; returns its offset.
pub(crate) fn encode(buf: &mut SecretBuf, msg: &XfrmMsg, flags: u16, seq: u32) -> usize {
    let need = wire::NLMSG_HDRLEN + msg.payload_len() + 4;
    let out = buf.reserve(need);
    let start = out.len();
    NlHeader {
        len: 0,
        ty: msg.message_type(),
        flags,
        seq,
        pid: 0,
    }
    .emit(out);
    msg.emit(out);
    let len = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    if let Some(slot) = out.get_mut(start..start + 4) {
        slot.copy_from_slice(&len.to_ne_bytes());
    }
    wire::pad4(out);
    start
}

/// Sequence numbers for one socket.
#[derive(Debug, Default)]
pub(crate) struct SeqGen(AtomicU32);

impl SeqGen {
    /// Reserves `n` consecutive sequence numbers and returns the first.
    pub(crate) fn reserve(&self, n: usize) -> u32 {
        let n = u32::try_from(n).unwrap_or(u32::MAX);
        self.0.fetch_add(n, Ordering::Relaxed).wrapping_add(1)
    }

    pub(crate) fn next(&self) -> u32 {
        // 0 is never used so a zeroed header cannot match a request.
        loop {
            let s = self.0.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
            if s != 0 {
                return s;
            }
        }
    }
}

/// One XFRM netlink socket with its receive buffer.
pub(crate) struct Conn {
    sock: TokioSocket,
    rbuf: Vec<u8>,
    /// A dump whose future was dropped before its end: the kernel keeps the dump running on
    /// this socket (and refuses another with EBUSY) until it has been read to the end.
    abandoned_dump: Option<u32>,
    max_chunk_msgs: usize,
    max_chunk_bytes: usize,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("max_chunk_msgs", &self.max_chunk_msgs)
            .field("max_chunk_bytes", &self.max_chunk_bytes)
            .finish_non_exhaustive()
    }
}

/// Opens an XFRM netlink socket in `ns`, registered with the current Tokio runtime,
/// non-blocking, with extended acks and capped echoes, subscribed to `groups`.
pub(crate) fn open_socket(ns: &Netns, groups: &[u32]) -> Result<TokioSocket> {
    let rt = tokio::runtime::Handle::try_current()
        .map_err(|_| Error::invalid("an XFRM handle must be opened inside a Tokio runtime"))?;
    let groups = groups.to_vec();
    ns.run(move || {
        // The helper thread enters the runtime so the socket registers with its reactor.
        let _rt = rt.enter();
        let mut ts = TokioSocket::new(NETLINK_XFRM)?;
        let s: &mut Socket = ts.socket_mut();
        s.bind(&SocketAddr::new(0, 0))?;
        for g in &groups {
            s.add_membership(*g)?;
        }
        // Best effort: older kernels lack these; the engine works without them.
        let _ = s.set_ext_ack(true);
        let _ = s.set_cap_ack(true);
        if sockopt::set_socket_recv_buffer_size_force(&*s, SOCK_BUF).is_err() {
            let _ = sockopt::set_socket_recv_buffer_size(&*s, SOCK_BUF);
        }
        if sockopt::set_socket_send_buffer_size_force(&*s, SOCK_BUF).is_err() {
            let _ = sockopt::set_socket_send_buffer_size(&*s, SOCK_BUF);
        }
        Ok(ts)
    })
}

/// Receives one datagram into `buf` (cleared first). `Ok(false)` means ENOBUFS: the
/// socket's queue overflowed and messages were lost.
pub(crate) async fn recv_into(sock: &TokioSocket, buf: &mut Vec<u8>) -> Result<bool> {
    buf.clear();
    buf.reserve(RECV_BUF);
    match std::future::poll_fn(|cx| sock.poll_recv(cx, buf)).await {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(ENOBUFS) => Ok(false),
        Err(e) => Err(Error::Io(e)),
    }
}

impl Conn {
    pub(crate) fn new(sock: TokioSocket) -> Result<Self> {
        let rcv = sockopt::socket_recv_buffer_size(sock.socket_ref()).unwrap_or(212_992);
        let snd = sockopt::socket_send_buffer_size(sock.socket_ref()).unwrap_or(212_992);
        Ok(Conn {
            sock,
            rbuf: Vec::with_capacity(RECV_BUF),
            abandoned_dump: None,
            // Leave half the receive buffer as headroom. At most 256 requests per datagram: the
            // kernel holds its XFRM configuration mutex for a whole datagram (~8 ms for 256
            // policies) and runs hash-table resizes between datagrams, while the two system
            // calls a datagram costs are already negligible per request at this size.
            max_chunk_msgs: (rcv / 2 / ERROR_TRUESIZE).clamp(16, 256),
            max_chunk_bytes: snd.saturating_sub(4096).clamp(16 * 1024, 4 * 1024 * 1024),
        })
    }

    /// Sends one datagram. Netlink sends to the kernel never wait for buffer space (the
    /// kernel processes the datagram inside the call), so this is a plain non-blocking
    /// `sendmsg`; a transient EAGAIN/ENOBUFS is retried after yielding.
    async fn send(&self, parts: &[&[u8]]) -> Result<()> {
        let iov: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let mut attempts = 0;
        loop {
            let mut anc = SendAncillaryBuffer::default();
            match sendmsg(self.sock.socket_ref(), &iov, &mut anc, SendFlags::DONTWAIT) {
                Ok(n) if n == total => return Ok(()),
                Ok(n) => {
                    return Err(Error::Io(io::Error::other(format!(
                        "short netlink send: {n} of {total} bytes"
                    ))));
                }
                Err(e)
                    if (e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::NOBUFS)
                        && attempts < 100 =>
                {
                    attempts += 1;
                    tokio::task::yield_now().await;
                }
                Err(e) => return Err(Error::Io(e.into())),
            }
        }
    }

    /// Receives one datagram into `self.rbuf`. `Ok(false)` means ENOBUFS (messages lost).
    async fn recv(&mut self) -> Result<bool> {
        recv_into(&self.sock, &mut self.rbuf).await
    }

    /// Non-blocking receive (after ENOBUFS every reply is already queued).
    fn try_recv(&mut self) -> Result<Option<bool>> {
        self.rbuf.clear();
        self.rbuf.reserve(RECV_BUF);
        match self.sock.socket_ref().recv(&mut self.rbuf, MSG_DONTWAIT) {
            Ok(_) => Ok(Some(true)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.raw_os_error() == Some(ENOBUFS) => Ok(Some(false)),
            Err(e) => Err(Error::Io(e)),
        }
    }

    fn wipe(&mut self) {
        self.rbuf.as_mut_slice().zeroize();
        self.rbuf.clear();
    }

    /// Parses the datagram in `rbuf` and feeds each message to `f`, then wipes the buffer.
    fn each_message(&mut self, mut f: impl FnMut(NlHeader, Result<Message>)) -> Result<()> {
        let mut res = Ok(());
        for m in NlMessages::new(&self.rbuf) {
            match m {
                Ok((hdr, payload)) => f(hdr, Message::parse(&hdr, payload)),
                Err(e) => {
                    res = Err(e);
                    break;
                }
            }
        }
        self.wipe();
        res
    }

    /// Reads an abandoned dump to its end so the socket is clean again.
    async fn finish_abandoned_dump(&mut self) -> Result<()> {
        while let Some(seq) = self.abandoned_dump {
            if !self.recv().await? {
                // Lost messages: the end marker may be among them; give up on the old dump.
                self.abandoned_dump = None;
                break;
            }
            let mut finished = false;
            self.each_message(|hdr, m| {
                if hdr.seq == seq && matches!(m, Ok(Message::Done(_)) | Ok(Message::Error(_))) {
                    finished = true;
                }
            })?;
            if finished {
                self.abandoned_dump = None;
            }
        }
        Ok(())
    }

    /// Sends one request and waits for its acknowledgement or reply.
    pub(crate) async fn request(
        &mut self,
        seqs: &SeqGen,
        op: &'static str,
        msg: &XfrmMsg,
        expect: Expect,
    ) -> Outcome {
        self.finish_abandoned_dump().await?;
        let seq = seqs.next();
        let flags = match expect {
            Expect::Ack => NLM_F_REQUEST | NLM_F_ACK,
            Expect::Reply => NLM_F_REQUEST,
        };
        let mut buf = SecretBuf::with_capacity(wire::NLMSG_HDRLEN + msg.payload_len() + 4);
        encode(&mut buf, msg, flags, seq);
        self.send(&[buf.as_slice()]).await?;
        drop(buf);
        let mut outcome: Option<Outcome> = None;
        while outcome.is_none() {
            if !self.recv().await? {
                return Err(Error::Overrun("the reply to this request was lost"));
            }
            self.each_message(|hdr, m| {
                if hdr.seq != seq || outcome.is_some() {
                    tracing::trace!(seq = hdr.seq, ty = hdr.ty, "ignoring stale netlink message");
                    return;
                }
                outcome = Some(match m {
                    Ok(Message::Error(e)) if e.code == 0 => Ok(None),
                    Ok(Message::Error(e)) => Err(kernel_error(op, &e)),
                    Ok(Message::Xfrm(x)) if expect == Expect::Reply => Ok(Some(*x)),
                    Ok(_) => Err(Error::UnexpectedReply {
                        op,
                        msg_type: hdr.ty,
                    }),
                    Err(e) => Err(e),
                });
            })?;
        }
        outcome.unwrap_or(Ok(None))
    }

    /// Runs a dump request and returns every message of the reply.
    pub(crate) async fn dump(
        &mut self,
        seqs: &SeqGen,
        op: &'static str,
        msg: &XfrmMsg,
    ) -> Result<Vec<XfrmMsg>> {
        self.finish_abandoned_dump().await?;
        let seq = seqs.next();
        let mut buf = SecretBuf::with_capacity(wire::NLMSG_HDRLEN + msg.payload_len() + 4);
        encode(&mut buf, msg, NLM_F_REQUEST | NLM_F_DUMP, seq);
        self.send(&[buf.as_slice()]).await?;
        // Until the end marker is read, a dropped future leaves the dump running.
        self.abandoned_dump = Some(seq);
        let mut out = Vec::new();
        let mut done: Option<Result<()>> = None;
        let mut interrupted = false;
        let mut datagrams = 0u32;
        while done.is_none() {
            // Dump datagrams are always ready, so the loop would never yield on its own: let
            // other tasks on this runtime run between every few (a 10k-SA dump is ~100).
            datagrams += 1;
            if datagrams.is_multiple_of(YIELD_EVERY) {
                tokio::task::yield_now().await;
            }
            if !self.recv().await? {
                // The end marker may be lost too: do not wait for it later.
                self.abandoned_dump = None;
                return Err(Error::Overrun("dump replies were lost; retry the dump"));
            }
            let mut first_err = None;
            self.each_message(|hdr, m| {
                if hdr.seq != seq || done.is_some() {
                    return;
                }
                if hdr.flags & NLM_F_DUMP_INTR != 0 {
                    interrupted = true;
                }
                match m {
                    Ok(Message::Done(d)) if d.code == 0 => done = Some(Ok(())),
                    Ok(Message::Done(d)) => {
                        done = Some(Err(Error::Kernel(KernelError {
                            op,
                            errno: -d.code,
                            extack: wire::parse_ext_ack(&d.tlvs).msg,
                            offset: None,
                        })))
                    }
                    Ok(Message::Error(e)) => {
                        done = Some(if e.code == 0 {
                            Ok(())
                        } else {
                            Err(kernel_error(op, &e))
                        })
                    }
                    Ok(Message::Xfrm(x)) => out.push(*x),
                    Ok(_) => {}
                    Err(e) => {
                        if first_err.is_none() {
                            first_err = Some(e);
                        }
                    }
                }
            })?;
            if let Some(e) = first_err {
                // The rest of the dump is drained before the next request.
                if done.is_some() {
                    self.abandoned_dump = None;
                }
                return Err(e);
            }
        }
        self.abandoned_dump = None;
        if interrupted {
            tracing::debug!(op, "XFRM dump was interrupted by a concurrent change");
        }
        done.unwrap_or(Ok(()))?;
        Ok(out)
    }

    /// Runs a batch: `buf` holds the encoded requests at offsets `items[i].0`, each with flags
    /// `NLM_F_REQUEST` only (no per-request ACK). Sequence numbers are assigned here,
    /// consecutively, so replies map back to requests by subtraction.
    pub(crate) async fn batch(
        &mut self,
        seqs: &SeqGen,
        buf: &mut SecretBuf,
        items: &[(usize, &'static str, Expect)],
    ) -> Result<Vec<Outcome>> {
        self.finish_abandoned_dump().await?;
        let base = seqs.reserve(items.len());
        for (k, it) in items.iter().enumerate() {
            let seq = base.wrapping_add(k as u32);
            if let Some(slot) = buf.as_mut_vec().get_mut(it.0 + 8..it.0 + 12) {
                slot.copy_from_slice(&seq.to_ne_bytes());
            }
        }
        let mut outcomes: Vec<Option<Outcome>> = (0..items.len()).map(|_| None).collect();
        let total = buf.len();
        let mut i = 0;
        let mut chunks = 0u32;
        while i < items.len() {
            // Each datagram keeps the kernel busy for milliseconds and its replies are ready at
            // once: yield now and then so other tasks on this runtime are not starved.
            chunks += 1;
            if chunks.is_multiple_of(YIELD_EVERY) {
                tokio::task::yield_now().await;
            }
            // Chunk [i, j): bounded by message count and datagram size.
            let start = items.get(i).map_or(total, |it| it.0);
            let mut j = i + 1;
            while j < items.len() && j - i < self.max_chunk_msgs {
                let next_end = items.get(j + 1).map_or(total, |it| it.0);
                if next_end - start > self.max_chunk_bytes {
                    break;
                }
                j += 1;
            }
            let end = items.get(j).map_or(total, |it| it.0);
            let chunk = buf.as_slice().get(start..end).unwrap_or_default();
            let barrier_seq = seqs.next();
            let mut barrier = Vec::with_capacity(16);
            NlHeader {
                len: 16,
                ty: NLMSG_NOOP,
                flags: NLM_F_REQUEST | NLM_F_ACK,
                seq: barrier_seq,
                pid: 0,
            }
            .emit(&mut barrier);
            self.send(&[chunk, &barrier]).await?;

            // Map seq -> index within this chunk (seqs are consecutive for batch items).
            let chunk_items = items.get(i..j).unwrap_or_default();
            let first_seq = base.wrapping_add(i as u32);
            let lookup = |seq: u32| -> Option<usize> {
                let off = seq.wrapping_sub(first_seq) as usize;
                (off < chunk_items.len()).then_some(i + off)
            };
            let mut barrier_seen = false;
            let mut lost = false;
            while !barrier_seen {
                let got = if lost {
                    self.try_recv()?
                } else {
                    Some(self.recv().await?)
                };
                match got {
                    None => break, // drained after an overrun
                    Some(false) => {
                        lost = true;
                        continue;
                    }
                    Some(true) => {}
                }
                self.each_message(|hdr, m| {
                    if hdr.seq == barrier_seq {
                        barrier_seen = true;
                        return;
                    }
                    let Some(idx) = lookup(hdr.seq) else {
                        tracing::trace!(seq = hdr.seq, "ignoring stale netlink message");
                        return;
                    };
                    let (_, op, expect) =
                        chunk_items
                            .get(idx - i)
                            .copied()
                            .unwrap_or((0, "", Expect::Ack));
                    let o = match m {
                        Ok(Message::Error(e)) if e.code == 0 => Ok(None),
                        Ok(Message::Error(e)) => Err(kernel_error(op, &e)),
                        Ok(Message::Xfrm(x)) if expect == Expect::Reply => Ok(Some(*x)),
                        Ok(_) => Err(Error::UnexpectedReply {
                            op,
                            msg_type: hdr.ty,
                        }),
                        Err(e) => Err(e),
                    };
                    if let Some(slot) = outcomes.get_mut(idx) {
                        *slot = Some(o);
                    }
                })?;
            }
            for (k, it) in chunk_items.iter().enumerate() {
                if let Some(slot) = outcomes.get_mut(i + k)
                    && slot.is_none()
                {
                    *slot = Some(if barrier_seen && it.2 == Expect::Ack {
                        Ok(None)
                    } else if barrier_seen {
                        Err(Error::UnexpectedReply {
                            op: it.1,
                            msg_type: 0,
                        })
                    } else {
                        Err(Error::Overrun(
                            "the outcome of this batched request is unknown",
                        ))
                    });
                }
            }
            i = j;
        }
        Ok(outcomes
            .into_iter()
            .map(|o| o.unwrap_or(Ok(None)))
            .collect())
    }
}

pub(crate) fn kernel_error(op: &'static str, e: &ErrorMsg) -> Error {
    let ext = e.ext_ack();
    Error::Kernel(KernelError {
        op,
        errno: e.code.checked_neg().unwrap_or(i32::MAX),
        extack: ext.msg,
        offset: ext.offset,
    })
}
