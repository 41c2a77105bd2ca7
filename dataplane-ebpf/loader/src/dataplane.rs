//! The kernel side: loading the eBPF object into a stack, attaching it to
//! interfaces, pinning, writing filter sets atomically, switching sets, and
//! reading counters.

use std::collections::{BTreeMap, BTreeSet, HashMap as StdHashMap};
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aya::maps::{Array, HashMap, LpmTrie, MapData, PerCpuArray, PerCpuValues, lpm_trie::Key};
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::tc::{
    NlOptions, SchedClassifierLink, TcAttachOptions, TcHandle, qdisc_add_clsact,
};
use aya::programs::{LinkOrder, SchedClassifier, TcAttachType};
use aya::util::KernelVersion;
use aya::{Ebpf, EbpfLoader};
use gatekey_dataplane_common::{
    ALL_MAPS, Bitmap, Config, Counter, DIR_IN, IfInfo, LAYOUT_VERSION, LpmData, MAP_ADDRS,
    MAP_BITMAPS, MAP_CONFIG, MAP_CONTROL, MAP_COUNTERS, MAP_IFINFO, MAP_RULE_META, MAP_STATS,
    MAP_TABLES, PROG_IN_ETH, PROG_IN_L3, PROG_OUT_ETH, PROG_OUT_L3, RuleMeta, SET_DEFAULT,
    SET_POLICY, SLOTS, Table, counter_id, ctl, rule_kind, stat,
};

use crate::compile::{Compiled, Dir};
use crate::netns::Stack;
use crate::{EBPF_OBJECT, Error};

/// Default number of lookup classes per table slot (each class is a
/// 520-byte bitmap; three slots).
pub const DEFAULT_CLASSES_PER_SLOT: u32 = 12_288;

/// Minimum time between a set switch and overwriting the slot it vacated:
/// packets still being classified with the old slot finish long before.
const SLOT_REUSE_GRACE: Duration = Duration::from_millis(50);

/// TC priority and handle of gatekey's filter on kernels without TCX.
const NL_PRIORITY: u16 = 1;
const NL_HANDLE: TcHandle = TcHandle::new(0, 0x6b67);

/// A filter set, by its display name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SetId {
    /// The profile's IPSEC block.
    Default,
    /// The policy file plus dynamic filters.
    Policy,
}

impl SetId {
    /// The eBPF-side number.
    pub fn number(self) -> u32 {
        match self {
            SetId::Default => SET_DEFAULT,
            SetId::Policy => SET_POLICY,
        }
    }

    /// From the eBPF-side number.
    pub fn from_number(n: u32) -> Self {
        if n == SET_POLICY {
            SetId::Policy
        } else {
            SetId::Default
        }
    }

    /// `default` / `policy`.
    pub fn name(self) -> &'static str {
        match self {
            SetId::Default => "default",
            SetId::Policy => "policy",
        }
    }
}

/// Options for loading.
#[derive(Debug, Clone)]
pub struct Options {
    /// Lookup classes per slot (used when the maps are created; pinned maps
    /// keep the size they were created with).
    pub classes_per_slot: u32,
    /// Log events per second per CPU (0 = unlimited).
    pub log_rate: u32,
    /// Log burst.
    pub log_burst: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            classes_per_slot: DEFAULT_CLASSES_PER_SLOT,
            log_rate: 100,
            log_burst: 200,
        }
    }
}

/// How a program is attached to an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// A TCX link (kernel ≥ 6.6), pinned in bpffs.
    Tcx,
    /// A clsact cls_bpf filter (older kernels); owned by the kernel.
    Netlink,
}

/// One program attachment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Interface name.
    pub ifname: String,
    /// Interface index (in the stack's namespace).
    pub ifindex: u32,
    /// Direction.
    pub dir: Dir,
    /// TCX or netlink.
    pub mode: AttachMode,
    /// True if an existing attachment was updated in place.
    pub replaced: bool,
}

/// An interface of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Name.
    pub name: String,
    /// Index.
    pub index: u32,
    /// Loopback.
    pub loopback: bool,
    /// ARPHRD_* hardware type.
    pub hatype: u16,
}

impl Interface {
    /// Does the interface have a 14-byte Ethernet header (else: none)?
    /// `None` for link types the filter cannot handle.
    pub fn ethernet(&self) -> Option<bool> {
        match self.hatype {
            1 => Some(true), // ARPHRD_ETHER
            // NONE (tun, wireguard), TUNNEL, TUNNEL6, SIT, IPGRE, IP6GRE
            0xfffe | 768 | 769 | 776 | 778 | 823 => Some(false),
            _ => None,
        }
    }
}

/// The interfaces of the calling thread's network namespace.
fn interfaces_here() -> Result<Vec<Interface>, Error> {
    let addrs = nix::ifaddrs::getifaddrs()
        .map_err(|e| Error::io("listing interfaces", "getifaddrs", e.into()))?;
    let mut out: BTreeMap<String, Interface> = BTreeMap::new();
    for a in addrs {
        let Some(link) = a.address.as_ref().and_then(|s| s.as_link_addr()) else {
            continue;
        };
        let index = u32::try_from(link.ifindex()).unwrap_or(0);
        out.entry(a.interface_name.clone()).or_insert(Interface {
            name: a.interface_name.clone(),
            index,
            loopback: a
                .flags
                .contains(nix::net::if_::InterfaceFlags::IFF_LOOPBACK),
            hatype: link.hatype(),
        });
    }
    Ok(out.into_values().collect())
}

/// A counter, summed over CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleCounter {
    /// Counter id.
    pub id: u32,
    /// Filter name (`SYSDEFAULTDENYRULE` for the implicit deny).
    pub name: String,
    /// Filter set.
    pub set: SetId,
    /// Direction.
    pub dir: Dir,
    /// 4, 6, or 0 for both (system counters).
    pub family: u8,
    /// [`rule_kind`].
    pub kind: u8,
    /// Position in its table.
    pub position: u32,
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// IpSec filters: packets dropped for lack of the right SA.
    pub sa_drops: u64,
}

/// Dataplane statistics, summed over CPUs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Log events written to the ring buffer.
    pub log_emitted: u64,
    /// Suppressed by the rate limit.
    pub log_rate_limited: u64,
    /// Lost: ring buffer full (no reader).
    pub log_lost: u64,
    /// Non-first fragments that took their first fragment's verdict.
    pub frag_hit: u64,
    /// Non-first fragments classified without ports.
    pub frag_miss: u64,
    /// Non-IP frames passed.
    pub non_ip: u64,
}

/// What [`Dataplane::install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallReport {
    /// The set.
    pub set: SetId,
    /// The slot written.
    pub slot: u32,
    /// Filters per direction (inbound, outbound).
    pub filters: [usize; 2],
    /// Lookup classes used.
    pub classes: usize,
    /// Counters kept from the previous contents of the set.
    pub counters_kept: usize,
}

/// gatekey's filter loaded into one stack.
///
/// Opening creates (or reuses pinned) maps and loads the programs; nothing
/// is enforced until [`Dataplane::attach`]. Writing a set goes to the spare
/// slot and is switched in with one byte ([`Dataplane::install`]), so
/// packets never see a half-written set.
#[derive(Debug)]
pub struct Dataplane {
    stack: Stack,
    pin_dir: Option<PathBuf>,
    ebpf: Ebpf,
    classes_per_slot: u32,
    last_flip: Option<Instant>,
}

/// The bpffs magic number (`BPF_FS_MAGIC`).
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Make sure `/sys/fs/bpf` is a bpffs (mount one if not).
pub fn ensure_bpffs() -> Result<(), Error> {
    let root = Path::new("/sys/fs/bpf");
    let is_bpffs = nix::sys::statfs::statfs(root)
        .map(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
        .unwrap_or(false);
    if is_bpffs {
        return Ok(());
    }
    nix::mount::mount(
        Some("bpf"),
        root,
        Some("bpf"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| Error::io("mounting bpffs on", root, e.into()))
}

impl Dataplane {
    /// Load into `stack`, with maps, links and programs pinned under
    /// `/sys/fs/bpf/gatekey/<stack>/` (reusing what is already pinned there).
    pub fn open(stack: &Stack, opts: &Options) -> Result<Self, Error> {
        Self::open_with(stack, Some(stack.pin_dir()), opts)
    }

    /// Load with maps pinned under `pin_dir`, or unpinned (`None`: everything
    /// goes away with this value; for tests).
    pub fn open_with(
        stack: &Stack,
        pin_dir: Option<PathBuf>,
        opts: &Options,
    ) -> Result<Self, Error> {
        let mut classes_per_slot = opts.classes_per_slot.max(64);
        if let Some(dir) = &pin_dir {
            ensure_bpffs()?;
            fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
            check_layout(dir)?;
            if let Ok(m) = MapData::from_pin(dir.join(MAP_BITMAPS))
                && let Ok(info) = m.info()
            {
                classes_per_slot = info.max_entries() / SLOTS;
            }
        }
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(MAP_BITMAPS, SLOTS * classes_per_slot);
        if let Some(dir) = &pin_dir {
            for name in ALL_MAPS {
                loader.map_pin_path(name, dir.join(name));
            }
        }
        let mut ebpf = loader.load(EBPF_OBJECT)?;
        for name in [PROG_IN_ETH, PROG_OUT_ETH, PROG_IN_L3, PROG_OUT_L3] {
            let prog: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or(Error::Missing {
                    kind: "program",
                    name,
                })?
                .try_into()
                .map_err(|e| Error::program(format!("{name} is not a TC program"), e))?;
            prog.load()
                .map_err(|e| Error::program(format!("loading {name} (verifier)"), e))?;
        }
        let mut dp = Self {
            stack: stack.clone(),
            pin_dir,
            ebpf,
            classes_per_slot,
            last_flip: None,
        };
        dp.init(opts)?;
        Ok(dp)
    }

    fn init(&mut self, opts: &Options) -> Result<(), Error> {
        let mut cfg = self.config()?;
        cfg.layout_version = LAYOUT_VERSION;
        cfg.log_rate = opts.log_rate;
        cfg.log_burst = opts.log_burst;
        self.write_config(&cfg)?;
        let c = self.control()?;
        if c & ctl::INITIALIZED == 0 {
            self.write_control(ctl::make(SET_DEFAULT, 0, 1))?;
        }
        Ok(())
    }

    /// The stack.
    pub fn stack(&self) -> &Stack {
        &self.stack
    }

    /// Where things are pinned (None: not pinned).
    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    /// Lookup classes per slot.
    pub fn classes_per_slot(&self) -> u32 {
        self.classes_per_slot
    }

    /// The loaded object (for tests and benchmarks: maps, programs).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The loaded object, read-only.
    pub fn ebpf_ref(&self) -> &Ebpf {
        &self.ebpf
    }

    /// A loaded program by name (for `BPF_PROG_TEST_RUN`).
    pub fn program(&self, name: &'static str) -> Result<&SchedClassifier, Error> {
        self.ebpf
            .program(name)
            .ok_or(Error::Missing {
                kind: "program",
                name,
            })?
            .try_into()
            .map_err(|e| Error::program(format!("{name} is not a TC program"), e))
    }

    fn map(&self, name: &'static str) -> Result<&aya::maps::Map, Error> {
        self.ebpf
            .map(name)
            .ok_or(Error::Missing { kind: "map", name })
    }

    fn map_mut<'a, T>(&'a mut self, name: &'static str) -> Result<T, Error>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let m = self
            .ebpf
            .map_mut(name)
            .ok_or(Error::Missing { kind: "map", name })?;
        T::try_from(m).map_err(|e| Error::map(format!("opening {name}"), e))
    }

    fn map_ref<'a, T>(&'a self, name: &'static str) -> Result<T, Error>
    where
        T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
    {
        T::try_from(self.map(name)?).map_err(|e| Error::map(format!("opening {name}"), e))
    }

    fn config(&self) -> Result<Config, Error> {
        let a: Array<_, Config> = self.map_ref(MAP_CONFIG)?;
        a.get(&0, 0).map_err(|e| Error::map("reading GK_CONFIG", e))
    }

    fn write_config(&mut self, cfg: &Config) -> Result<(), Error> {
        let mut a: Array<_, Config> = self.map_mut(MAP_CONFIG)?;
        a.set(0, cfg, 0)
            .map_err(|e| Error::map("writing GK_CONFIG", e))
    }

    /// The control word ([`ctl`]).
    pub fn control(&self) -> Result<u32, Error> {
        let a: Array<_, u32> = self.map_ref(MAP_CONTROL)?;
        a.get(&0, 0)
            .map_err(|e| Error::map("reading GK_CONTROL", e))
    }

    fn write_control(&mut self, c: u32) -> Result<(), Error> {
        let mut a: Array<_, u32> = self.map_mut(MAP_CONTROL)?;
        a.set(0, c, 0)
            .map_err(|e| Error::map("writing GK_CONTROL", e))?;
        self.last_flip = Some(Instant::now());
        Ok(())
    }

    /// The active filter set.
    pub fn active_set(&self) -> Result<SetId, Error> {
        Ok(SetId::from_number(ctl::active_set(self.control()?)))
    }

    /// Make `set` the active one (one atomic write). Does not touch the
    /// marker file; see [`crate::marker`].
    pub fn switch(&mut self, set: SetId) -> Result<(), Error> {
        let c = self.control()?;
        let new = ctl::make(set.number(), ctl::default_slot(c), ctl::policy_slot(c));
        self.write_control(new)
    }

    /// Has `set` been loaded?
    pub fn is_loaded(&self, set: SetId) -> Result<bool, Error> {
        Ok(self.config()?.loaded_sets & (1 << set.number()) != 0)
    }

    /// Replace the contents of `set` with `compiled`: write the spare slot,
    /// then switch the set to it with one atomic write. Packets see either the
    /// old set or the new one. Counters of filters that are unchanged (same
    /// name, direction and content) keep counting.
    pub fn install(&mut self, set: SetId, compiled: &Compiled) -> Result<InstallReport, Error> {
        let classes = compiled.bitmaps.len();
        if classes > self.classes_per_slot as usize {
            return Err(Error::Compile(format!(
                "the set needs {classes} lookup classes but this stack's maps hold {} per slot",
                self.classes_per_slot
            )));
        }
        let control = self.control()?;
        let slot = ctl::spare_slot(control);
        // Let packets classified with the table last vacated finish.
        if let Some(t) = self.last_flip {
            let since = t.elapsed();
            if since < SLOT_REUSE_GRACE {
                std::thread::sleep(SLOT_REUSE_GRACE - since);
            }
        }
        let base = slot * self.classes_per_slot;
        let set_no = set.number();

        // Counter ids: keep those of identical filters, allocate the rest.
        let existing = self.set_meta(set_no)?;
        let mut by_hash: StdHashMap<u64, (u32, RuleMeta)> = existing
            .iter()
            .map(|(id, m)| (m.key_hash, (*id, *m)))
            .collect();
        let used: BTreeSet<u32> = existing.keys().copied().collect();
        let first = counter_id::FIRST_RULE + set_no * counter_id::PER_SET;
        let mut free = (first..first + counter_id::PER_SET).filter(|id| !used.contains(id));
        let generation = self.next_generation()?;
        let mut new_meta: Vec<(u32, RuleMeta)> = Vec::new();
        let mut kept = 0usize;
        let mut tables: Vec<Box<Table>> = Vec::new();
        let mut live: BTreeSet<u32> = BTreeSet::new();
        for (d, dir) in Dir::BOTH.iter().enumerate() {
            let mut table = compiled
                .tables
                .get(d)
                .map(|t| t.boxed_copy())
                .ok_or_else(|| Error::Compile("missing table".into()))?;
            let entries = compiled.entries.get(d).map_or(&[][..], Vec::as_slice);
            let mut seen: StdHashMap<String, u32> = StdHashMap::new();
            for (i, e) in entries.iter().enumerate() {
                let ident = e.identity(*dir);
                let occurrence = seen.entry(ident.clone()).or_insert(0);
                let key_hash = fnv1a(format!("{set_no}|{ident}|{occurrence}").as_bytes());
                *occurrence += 1;
                let (id, generation) = match by_hash.remove(&key_hash) {
                    Some((id, m)) => {
                        kept += 1;
                        (id, m.generation)
                    }
                    None => {
                        let id = free.next().ok_or_else(|| {
                            Error::Compile("no free counter ids (too many filters)".into())
                        })?;
                        (id, generation)
                    }
                };
                let meta = RuleMeta {
                    name: name_bytes(&e.name),
                    set: u8::try_from(set_no).unwrap_or(0),
                    dir: u8::try_from(dir.index()).unwrap_or(0),
                    family: if e.family == gatekey_config::filter::Family::V4 {
                        4
                    } else {
                        6
                    },
                    kind: e.kind.code(),
                    position: u32::try_from(i).unwrap_or(u32::MAX),
                    generation,
                    _pad: 0,
                    key_hash,
                };
                let is_new = !existing.contains_key(&id);
                if is_new
                    || existing
                        .get(&id)
                        .is_some_and(|m| m.position != meta.position)
                {
                    new_meta.push((id, meta));
                }
                if is_new {
                    self.zero_counter(id)?;
                }
                live.insert(id);
                if let Some(r) = table.rules.get_mut(i) {
                    r.counter = id;
                    r.generation = generation;
                }
            }
            // Class ids are relative: move them into the slot.
            rebase(&mut table, base);
            table.hdr.generation = generation;
            tables.push(table);
        }
        {
            let mut meta: HashMap<_, u32, RuleMeta> = self.map_mut(MAP_RULE_META)?;
            for (id, m) in &new_meta {
                meta.insert(id, m, 0)
                    .map_err(|e| Error::map("writing GK_RULE_META", e))?;
            }
        }
        {
            let mut bitmaps: Array<_, Bitmap> = self.map_mut(MAP_BITMAPS)?;
            for (i, b) in compiled.bitmaps.iter().enumerate() {
                let idx = base + u32::try_from(i).unwrap_or(u32::MAX);
                bitmaps
                    .set(idx, b, 0)
                    .map_err(|e| Error::map("writing GK_BITMAPS", e))?;
            }
        }
        {
            let mut trie: LpmTrie<_, LpmData, u32> = self.map_mut(MAP_ADDRS)?;
            let stale: Vec<Key<LpmData>> = trie
                .keys()
                .filter_map(Result::ok)
                .filter(|k| k.data().first() == Some(&u8::try_from(slot).unwrap_or(u8::MAX)))
                .collect();
            for k in &stale {
                let _ = trie.remove(k);
            }
            for l in &compiled.lpm {
                let (len, data) = l.key(slot);
                trie.insert(&Key::new(len, data), base + l.class, 0)
                    .map_err(|e| Error::map("writing GK_ADDRS (is the address trie full?)", e))?;
            }
        }
        {
            let mut t: Array<_, Table> = self.map_mut(MAP_TABLES)?;
            for (d, table) in tables.iter().enumerate() {
                let idx = slot * 2 + u32::try_from(d).unwrap_or(0);
                t.set(idx, table.as_ref(), 0)
                    .map_err(|e| Error::map("writing GK_TABLES", e))?;
            }
        }
        // The switch: one byte.
        let control = self.control()?;
        let (d, p) = if set == SetId::Policy {
            (ctl::default_slot(control), slot)
        } else {
            (slot, ctl::policy_slot(control))
        };
        self.write_control(ctl::make(ctl::active_set(control), d, p))?;
        let mut cfg = self.config()?;
        cfg.loaded_sets |= 1 << set_no;
        self.write_config(&cfg)?;
        // Forget counter ids the new set no longer uses.
        {
            let mut meta: HashMap<_, u32, RuleMeta> = self.map_mut(MAP_RULE_META)?;
            for id in existing.keys().filter(|id| !live.contains(id)) {
                let _ = meta.remove(id);
            }
        }
        Ok(InstallReport {
            set,
            slot,
            filters: [
                compiled.entries.first().map_or(0, Vec::len),
                compiled.entries.get(1).map_or(0, Vec::len),
            ],
            classes,
            counters_kept: kept,
        })
    }

    fn next_generation(&mut self) -> Result<u32, Error> {
        let mut cfg = self.config()?;
        cfg.generation = cfg.generation.wrapping_add(1).max(1);
        self.write_config(&cfg)?;
        Ok(cfg.generation)
    }

    fn set_meta(&self, set_no: u32) -> Result<BTreeMap<u32, RuleMeta>, Error> {
        let meta: HashMap<_, u32, RuleMeta> = self.map_ref(MAP_RULE_META)?;
        let mut out = BTreeMap::new();
        for item in meta.iter() {
            let (id, m) = item.map_err(|e| Error::map("reading GK_RULE_META", e))?;
            if u32::from(m.set) == set_no {
                out.insert(id, m);
            }
        }
        Ok(out)
    }

    fn zero_counter(&mut self, id: u32) -> Result<(), Error> {
        let n = aya::util::nr_cpus().map_err(|(what, e)| Error::io("counting CPUs", what, e))?;
        let mut c: PerCpuArray<_, Counter> = self.map_mut(MAP_COUNTERS)?;
        let zeros = PerCpuValues::try_from(vec![Counter::default(); n])
            .map_err(|e| Error::io("building per-CPU values", "GK_COUNTERS", e))?;
        c.set(id, zeros, 0)
            .map_err(|e| Error::map("zeroing a counter", e))
    }

    /// Every counter in use: the filters of both sets, the implicit denies,
    /// the ICMP exceptions and the malformed-packet drops.
    pub fn counters(&self) -> Result<Vec<RuleCounter>, Error> {
        let counters: PerCpuArray<_, Counter> = self.map_ref(MAP_COUNTERS)?;
        let sum = |id: u32| -> Result<Counter, Error> {
            let v = counters
                .get(&id, 0)
                .map_err(|e| Error::map("reading GK_COUNTERS", e))?;
            Ok(v.iter().fold(Counter::default(), |a, c| Counter {
                packets: a.packets + c.packets,
                bytes: a.bytes + c.bytes,
                sa_drops: a.sa_drops + c.sa_drops,
            }))
        };
        let mut out = Vec::new();
        let mut system = |id: u32, name: &str, set: SetId, dir: u32| -> Result<(), Error> {
            let c = sum(id)?;
            out.push(RuleCounter {
                id,
                name: name.to_owned(),
                set,
                dir: Dir::from_index(dir),
                family: 0,
                kind: rule_kind::SYSTEM,
                position: u32::MAX,
                packets: c.packets,
                bytes: c.bytes,
                sa_drops: c.sa_drops,
            });
            Ok(())
        };
        for set in [SetId::Default, SetId::Policy] {
            for dir in [DIR_IN, gatekey_dataplane_common::DIR_OUT] {
                system(
                    counter_id::IMPLICIT_DENY + set.number() * 2 + dir,
                    "SYSDEFAULTDENYRULE",
                    set,
                    dir,
                )?;
            }
        }
        for dir in [DIR_IN, gatekey_dataplane_common::DIR_OUT] {
            system(
                counter_id::ICMP_EXCEPTION + dir,
                "SYSDEFAULTICMP",
                SetId::Default,
                dir,
            )?;
            system(
                counter_id::MALFORMED + dir,
                "SYSMALFORMED",
                SetId::Default,
                dir,
            )?;
        }
        let meta: HashMap<_, u32, RuleMeta> = self.map_ref(MAP_RULE_META)?;
        let mut rules = Vec::new();
        for item in meta.iter() {
            let (id, m) = item.map_err(|e| Error::map("reading GK_RULE_META", e))?;
            let c = sum(id)?;
            rules.push(RuleCounter {
                id,
                name: name_string(&m.name),
                set: SetId::from_number(u32::from(m.set)),
                dir: Dir::from_index(u32::from(m.dir)),
                family: m.family,
                kind: m.kind,
                position: m.position,
                packets: c.packets,
                bytes: c.bytes,
                sa_drops: c.sa_drops,
            });
        }
        rules.sort_by_key(|r| (r.set, r.dir, r.position));
        out.extend(rules);
        Ok(out)
    }

    /// Dataplane statistics.
    pub fn stats(&self) -> Result<Stats, Error> {
        let s: PerCpuArray<_, u64> = self.map_ref(MAP_STATS)?;
        let get = |i: u32| -> Result<u64, Error> {
            Ok(s.get(&i, 0)
                .map_err(|e| Error::map("reading GK_STATS", e))?
                .iter()
                .sum())
        };
        Ok(Stats {
            log_emitted: get(stat::LOG_EMITTED)?,
            log_rate_limited: get(stat::LOG_RATE_LIMITED)?,
            log_lost: get(stat::LOG_LOST)?,
            frag_hit: get(stat::FRAG_HIT)?,
            frag_miss: get(stat::FRAG_MISS)?,
            non_ip: get(stat::NON_IP)?,
        })
    }

    /// The interfaces of the stack.
    pub fn interfaces(&self) -> Result<Vec<Interface>, Error> {
        self.stack.run_in(interfaces_here)?
    }

    /// Attach the filter to `names` (or every non-loopback interface of the
    /// stack if `None`), ingress and egress, and record each interface's
    /// security class (`secclass`, by name; default 0). With a pin directory,
    /// TCX links are pinned there (`link-<if>-in`, `link-<if>-out`) and
    /// netlink filters stay attached when this value is dropped; re-attaching
    /// replaces the program in place. Interfaces of link types the filter
    /// cannot parse are refused.
    pub fn attach(
        &mut self,
        names: Option<&[String]>,
        secclass: &BTreeMap<String, u32>,
    ) -> Result<Vec<Attachment>, Error> {
        let stack = self.stack.clone();
        let stack_name = stack.name().to_owned();
        let pin_dir = self.pin_dir.clone();
        let ebpf = &mut self.ebpf;
        type Attached = (Vec<Attachment>, Vec<(u32, u32)>);
        let result = stack.run_in(move || -> Result<Attached, Error> {
            let all = interfaces_here()?;
            let chosen: Vec<Interface> = match names {
                Some(names) => {
                    let mut v = Vec::new();
                    for n in names {
                        let i =
                            all.iter()
                                .find(|i| &i.name == n)
                                .ok_or_else(|| Error::Command {
                                    command: format!("attach to {n}"),
                                    detail: format!("no interface {n} in stack {stack_name}"),
                                })?;
                        v.push(i.clone());
                    }
                    v
                }
                None => all.into_iter().filter(|i| !i.loopback).collect(),
            };
            let tcx = KernelVersion::current()
                .map(|v| v >= KernelVersion::new(6, 6, 0))
                .unwrap_or(false);
            let mut out = Vec::new();
            let mut classes = Vec::new();
            for iface in &chosen {
                let eth = iface.ethernet().ok_or_else(|| Error::Command {
                    command: format!("attach to {}", iface.name),
                    detail: format!(
                        "link type {} is not supported (Ethernet, tun, IP tunnels are)",
                        iface.hatype
                    ),
                })?;
                if !tcx {
                    // clsact may already exist ("Exclusivity flag on"): fine.
                    let _ = qdisc_add_clsact(&iface.name);
                }
                for dir in Dir::BOTH {
                    let name = match (dir, eth) {
                        (Dir::In, true) => PROG_IN_ETH,
                        (Dir::Out, true) => PROG_OUT_ETH,
                        (Dir::In, false) => PROG_IN_L3,
                        (Dir::Out, false) => PROG_OUT_L3,
                    };
                    let prog: &mut SchedClassifier = ebpf
                        .program_mut(name)
                        .ok_or(Error::Missing {
                            kind: "program",
                            name,
                        })?
                        .try_into()
                        .map_err(|e| Error::program(name, e))?;
                    let attach_type = if dir == Dir::In {
                        TcAttachType::Ingress
                    } else {
                        TcAttachType::Egress
                    };
                    let replaced = if tcx {
                        attach_tcx(prog, iface, dir, attach_type, pin_dir.as_deref())?
                    } else {
                        attach_netlink(prog, iface, attach_type, pin_dir.is_some())?
                    };
                    out.push(Attachment {
                        ifname: iface.name.clone(),
                        ifindex: iface.index,
                        dir,
                        mode: if tcx {
                            AttachMode::Tcx
                        } else {
                            AttachMode::Netlink
                        },
                        replaced,
                    });
                }
                classes.push((iface.index, secclass.get(&iface.name).copied().unwrap_or(0)));
            }
            Ok((out, classes))
        })??;
        let (attachments, classes) = result;
        {
            let mut info: HashMap<_, u32, IfInfo> = self.map_mut(MAP_IFINFO)?;
            for (index, class) in classes {
                info.insert(index, IfInfo { secclass: class }, 0)
                    .map_err(|e| Error::map("writing GK_IFINFO", e))?;
            }
        }
        self.pin_programs()?;
        Ok(attachments)
    }

    /// Pin the programs in use as `prog-<name>` (replacing older pins), so
    /// that `bpftool` and operators see what enforces the stack.
    fn pin_programs(&mut self) -> Result<(), Error> {
        let Some(dir) = self.pin_dir.clone() else {
            return Ok(());
        };
        for name in [PROG_IN_ETH, PROG_OUT_ETH, PROG_IN_L3, PROG_OUT_L3] {
            let path = dir.join(format!("prog-{name}"));
            if path.exists() {
                fs::remove_file(&path).map_err(|e| Error::io("replacing", &path, e))?;
            }
            let prog: &mut SchedClassifier = self
                .ebpf
                .program_mut(name)
                .ok_or(Error::Missing {
                    kind: "program",
                    name,
                })?
                .try_into()
                .map_err(|e| Error::program(name, e))?;
            prog.pin(&path)
                .map_err(|e| Error::io("pinning", &path, io::Error::other(e)))?;
        }
        Ok(())
    }

    /// Remove everything gatekey attached to and pinned for `stack`: links,
    /// netlink filters, maps. The stack is then unfiltered.
    pub fn unload(stack: &Stack) -> Result<(), Error> {
        let dir = stack.pin_dir();
        let prog_names = [PROG_IN_ETH, PROG_OUT_ETH, PROG_IN_L3, PROG_OUT_L3];
        stack.run_in(|| {
            if let Ok(ifaces) = interfaces_here() {
                for i in ifaces.iter().filter(|i| !i.loopback) {
                    for t in [TcAttachType::Ingress, TcAttachType::Egress] {
                        for p in prog_names {
                            let _ = aya::programs::tc::qdisc_detach_program(&i.name, t, p);
                        }
                    }
                }
            }
        })?;
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(|e| Error::io("removing", &dir, e))?;
        }
        Ok(())
    }
}

fn attach_tcx(
    prog: &mut SchedClassifier,
    iface: &Interface,
    dir: Dir,
    attach_type: TcAttachType,
    pin_dir: Option<&Path>,
) -> Result<bool, Error> {
    let suffix = if dir == Dir::In { "in" } else { "out" };
    let pin = pin_dir.map(|d| d.join(format!("link-{}-{suffix}", iface.name)));
    if let Some(pin) = &pin
        && pin.exists()
    {
        // Replace the program of the pinned link atomically.
        let old = PinnedLink::from_pin(pin)
            .map_err(|e| Error::io("opening pinned link", pin, io::Error::other(e)))?;
        let link: SchedClassifierLink = FdLink::from(old)
            .try_into()
            .map_err(|e| Error::io("reusing pinned link", pin, io::Error::other(e)))?;
        let id = prog
            .attach_to_link(link)
            .map_err(|e| Error::program(format!("updating the link on {}", iface.name), e))?;
        // The pin keeps the link; dropping our handle only closes a fd.
        let _ = prog.take_link(id);
        return Ok(true);
    }
    let id = prog
        .attach_with_options(
            &iface.name,
            attach_type,
            TcAttachOptions::TcxOrder(LinkOrder::first()),
        )
        .map_err(|e| Error::program(format!("attaching to {} {suffix}", iface.name), e))?;
    if let Some(pin) = pin {
        let link = prog
            .take_link(id)
            .map_err(|e| Error::program("taking the link", e))?;
        let fd: FdLink = link
            .try_into()
            .map_err(|e| Error::io("pinning link", &pin, io::Error::other(e)))?;
        fd.pin(&pin)
            .map_err(|e| Error::io("pinning link", &pin, io::Error::other(e)))?;
    }
    Ok(false)
}

fn attach_netlink(
    prog: &mut SchedClassifier,
    iface: &Interface,
    attach_type: TcAttachType,
    persist: bool,
) -> Result<bool, Error> {
    // Replace an existing gatekey filter in place, else create one.
    let replaced =
        match SchedClassifierLink::attached(&iface.name, attach_type, NL_PRIORITY, NL_HANDLE, None)
        {
            Ok(link) => prog.attach_to_link(link).ok(),
            Err(_) => None,
        };
    let (id, was_replaced) = match replaced {
        Some(id) => (id, true),
        None => (
            prog.attach_with_options(
                &iface.name,
                attach_type,
                TcAttachOptions::Netlink(NlOptions {
                    priority: NL_PRIORITY,
                    handle: NL_HANDLE,
                    classid: None,
                }),
            )
            .map_err(|e| Error::program(format!("attaching to {}", iface.name), e))?,
            false,
        ),
    };
    if persist {
        // A netlink filter belongs to the kernel: let this handle go without
        // detaching it.
        let link = prog
            .take_link(id)
            .map_err(|e| Error::program("taking the link", e))?;
        std::mem::forget(link);
    }
    Ok(was_replaced)
}

/// Refuse pinned maps of another layout version.
fn check_layout(dir: &Path) -> Result<(), Error> {
    let path = dir.join(MAP_CONFIG);
    if !path.exists() {
        return Ok(());
    }
    let data = MapData::from_pin(&path).map_err(|e| Error::map("opening pinned GK_CONFIG", e))?;
    let map = aya::maps::Map::Array(data);
    let a: Array<_, Config> =
        Array::try_from(map).map_err(|e| Error::map("opening pinned GK_CONFIG", e))?;
    let cfg = a
        .get(&0, 0)
        .map_err(|e| Error::map("reading pinned GK_CONFIG", e))?;
    if cfg.layout_version != 0 && cfg.layout_version != LAYOUT_VERSION {
        return Err(Error::Layout {
            dir: dir.to_path_buf(),
            found: cfg.layout_version,
            expected: LAYOUT_VERSION,
        });
    }
    Ok(())
}

fn rebase(t: &mut Table, base: u32) {
    let add = |c: &mut u32| {
        if *c != u32::MAX {
            *c += base;
        }
    };
    t.proto_class.iter_mut().for_each(add);
    t.misc_class.iter_mut().for_each(add);
    for ix in [&mut t.sport, &mut t.dport] {
        add(&mut ix.unknown_class);
        ix.classes.iter_mut().for_each(add);
    }
}

/// FNV-1a, 64 bits: stable across builds (unlike `DefaultHasher`).
fn fnv1a(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn name_bytes(name: &str) -> [u8; 48] {
    let mut out = [0u8; 48];
    for (o, b) in out.iter_mut().zip(name.bytes().take(47)) {
        *o = b;
    }
    out
}

/// A NUL-padded name as a string.
pub fn name_string(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(b.get(..end).unwrap_or(&[])).into_owned()
}

/// An address as 16 bytes (IPv4 in the first 4), as the eBPF side stores
/// it.
pub fn addr_from_bytes(family: u8, b: &[u8; 16]) -> IpAddr {
    if family == 4 {
        IpAddr::V4(std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]))
    } else {
        IpAddr::V6(std::net::Ipv6Addr::from(*b))
    }
}
