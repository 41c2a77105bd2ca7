//! The QEMU test guest: initramfs, boot, 9p shares.
//!
//! The guest runs the Debian kernel from the cache (uncompressed vmlinux,
//! booted through PVH under TCG). Its initramfs holds only busybox, two init
//! scripts and the kernel modules listed in [`MODULES`] (with their
//! dependencies). Everything else comes from the host over 9p: `/usr`
//! (read-only, so the whole host userland runs in the guest), `/etc`
//! (read-only, seen through a writable symlink farm), the workspace and
//! target directory (read-only, at their host paths), all kernel modules
//! (for on-demand loading) and one writable directory for results.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::fail;
use crate::setup::Kernel;
use crate::util::{self, Ctx, Result};

/// Kernel modules put in the initramfs and loaded at boot, in this order
/// (each after its dependencies). Others load on demand from the 9p share
/// of the full module tree. Names that are built into the kernel are skipped.
pub const MODULES: &[&str] = &[
    // devices and the shared folders
    "virtio_pci",
    "virtio_net",
    "9pnet_virtio",
    "9p",
    "overlay",
    // links between hosts
    "veth",
    "bridge",
    "dummy",
    // IPsec data path
    "xfrm_user",
    "xfrm_interface",
    "esp4",
    "esp6",
    "ah4",
    "ah6",
    "tunnel4",
    "tunnel6",
    "xfrm4_tunnel",
    "xfrm6_tunnel",
    // crypto used by ESP/AH (drbg: without it every ESP state add fails)
    "drbg",
    "authenc",
    "authencesn",
    "gcm",
    "ghash_generic",
    "ghash_clmulni_intel",
    "ctr",
    "seqiv",
    "echainiv",
    "cbc",
    "hmac",
    "sha256_generic",
    "sha512_generic",
    "aes_generic",
    "aesni_intel",
    "chacha_generic",
    "chacha_x86_64",
    "poly1305_generic",
    "poly1305_x86_64",
    "chacha20poly1305",
    "des_generic",
    "md5",
    "sha1_generic",
    "cmac",
    "xcbc",
    // eBPF on TC (no TCX before 6.6)
    "sch_ingress",
    "cls_bpf",
    "act_bpf",
];

// The kernel command line turns off the crypto API's self-tests
// (`cryptomgr.notests=1`): under TCG they cost seconds at boot and at the
// first SA, and they test the kernel, not gatekey.

/// Modules whose failure to load is expected under TCG.
const MAY_FAIL: &[&str] = &["jitterentropy_rng"];

const MSIZE: u32 = 262_144;

/// First stage, run from the initramfs by the kernel.
const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "gatekey-init: kernel up at $(cut -d' ' -f1 /proc/uptime)s"
while read -r m; do
  insmod "/lib/modules/$m" 2>/dev/null || case " $(cat /may-fail) " in
    *" ${m##*/} "*) ;;
    *) echo "gatekey-init: insmod $m failed" ;;
  esac
done < /modules.load
echo "gatekey-init: modules loaded at $(cut -d' ' -f1 /proc/uptime)s"
R=/newroot
O="trans=virtio,version=9p2000.L,msize=@MSIZE@"
mount -t tmpfs -o mode=0755 root $R
mkdir -p $R/out
mount -t 9p -o "$O" out $R/out || { echo "gatekey-init: cannot mount the results share"; poweroff -f; }
. $R/out/.gatekey/job.env
mkdir -p $R/usr $R/etc $R/proc $R/sys $R/dev $R/run $R/tmp $R/root $R/gatekey/hostetc $R/gatekey/host
for l in bin sbin lib lib64; do ln -s usr/$l $R/$l; done
H=$R/gatekey/host
mount -t 9p -o "$O,ro,cache=loose" host $H || { echo "gatekey-init: cannot mount the host share"; poweroff -f; }
mount --bind $H/usr $R/usr
mount --bind $H/etc $R/gatekey/hostetc
mount -t tmpfs -o mode=1777 tmp $R/tmp
for d in $GK_BINDS; do
  mkdir -p "$R$d" && mount --bind "$H$d" "$R$d"
done
M=$R/gatekey/modroot
mkdir -p $M/bin $M/lib/modules/$(uname -r)
cp /bin/busybox $M/bin/busybox
mount --bind "$H$GK_MODULES" $M/lib/modules/$(uname -r)
mkdir -p $R/gatekey/etc-upper $R/gatekey/etc-work
mount -t overlay -o lowerdir=$R/gatekey/hostetc,upperdir=$R/gatekey/etc-upper,workdir=$R/gatekey/etc-work etc $R/etc
echo "gatekey-init: root ready at $(cut -d' ' -f1 /proc/uptime)s"
mkdir -p $R/var/lib $R/var/log $R/var/tmp $R/var/cache
ln -s /run $R/var/run
ln -s /run/lock $R/var/lock
cp /bin/busybox $R/gatekey/busybox
cp /init2 /modprobe $R/gatekey/
mount --move /dev $R/dev
mount --move /sys $R/sys
mount --move /proc $R/proc
exec switch_root $R /gatekey/init2
"#;

/// Second stage: PID 1 on the real root, runs the scenario agent.
const INIT2: &str = r#"#!/gatekey/busybox sh
B=/gatekey/busybox
$B mount -t tmpfs -o mode=0755 run /run
$B mkdir -p /dev/pts /dev/shm /run/lock
$B mount -t devpts devpts /dev/pts
$B mount -t tmpfs shm /dev/shm
$B mount -t bpf bpf /sys/fs/bpf
$B mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
echo /gatekey/modprobe > /proc/sys/kernel/modprobe
$B hostname gatekey-vm
/usr/sbin/ip link set lo up
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb
. /out/.gatekey/job.env
echo "gatekey-init: userland up at $($B cut -d' ' -f1 /proc/uptime)s"
/bin/sh /out/.gatekey/agent.sh
echo "gatekey-init: agent exited with status $? at $($B cut -d' ' -f1 /proc/uptime)s"
$B sync
$B poweroff -f
"#;

/// The kernel's helper for on-demand module loading.
const MODPROBE: &str = r#"#!/gatekey/busybox sh
exec /gatekey/busybox chroot /gatekey/modroot /bin/busybox modprobe "$@"
"#;

fn guest_cache() -> PathBuf {
    util::cache_dir().join("guest")
}

/// Parse modules.dep into module name → (path, dependency paths).
fn modules_dep(kernel: &Kernel) -> Result<HashMap<String, (String, Vec<String>)>> {
    let path = kernel.modules_dir().join("modules.dep");
    let text = fs::read_to_string(&path)
        .ctx(|| format!("reading {} (run `cargo xtask setup`)", path.display()))?;
    let mut map = HashMap::new();
    for line in text.lines() {
        let Some((m, deps)) = line.split_once(':') else {
            continue;
        };
        let deps = deps.split_whitespace().map(str::to_string).collect();
        map.insert(module_name(m), (m.to_string(), deps));
    }
    Ok(map)
}

/// `kernel/net/ipv4/esp4.ko` → `esp4`; `-` and `_` are the same to the kernel.
fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    base.strip_suffix(".ko").unwrap_or(base).replace('-', "_")
}

/// The module paths to load, dependencies first, each once.
fn load_order(kernel: &Kernel) -> Result<Vec<String>> {
    let deps = modules_dep(kernel)?;
    let builtin: BTreeSet<String> =
        fs::read_to_string(kernel.modules_dir().join("modules.builtin"))
            .unwrap_or_default()
            .lines()
            .map(module_name)
            .collect();
    let by_path: HashMap<&str, &Vec<String>> =
        deps.values().map(|(p, d)| (p.as_str(), d)).collect();
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit(
        path: &str,
        by_path: &HashMap<&str, &Vec<String>>,
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(path.to_string()) {
            return;
        }
        if let Some(ds) = by_path.get(path) {
            for d in ds.iter() {
                visit(d, by_path, seen, order);
            }
        }
        order.push(path.to_string());
    }
    for name in MODULES {
        let name = name.replace('-', "_");
        match deps.get(&name) {
            Some((path, _)) => visit(path, &by_path, &mut seen, &mut order),
            None if builtin.contains(&name) => {}
            None => eprintln!(
                "vm: note: kernel {} has no module {name}; skipped",
                kernel.release
            ),
        }
    }
    Ok(order)
}

/// A stable hash for cache keys (FNV-1a 64).
fn fnv(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.iter() {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h ^= 0xff;
    }
    h
}

fn busybox_path() -> Result<PathBuf> {
    ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| fail!("busybox not found: run `cargo xtask setup` (busybox-static)"))
}

/// Build (or reuse) the initramfs for this kernel. Returns its path and
/// whether it was built now.
pub fn ensure_initramfs(kernel: &Kernel) -> Result<(PathBuf, bool)> {
    let order = load_order(kernel)?;
    let busybox = busybox_path()?;
    let bb = fs::read(&busybox).ctx(|| format!("reading {}", busybox.display()))?;
    let init = INIT.replace("@MSIZE@", &MSIZE.to_string());
    let list = order.join("\n");
    let key = fnv(&[
        kernel.release.as_bytes(),
        init.as_bytes(),
        INIT2.as_bytes(),
        MODPROBE.as_bytes(),
        list.as_bytes(),
        &bb,
    ]);
    let dir = guest_cache();
    let out = dir.join(format!("initramfs-{}-{key:016x}.cpio", kernel.release));
    if out.is_file() {
        return Ok((out, false));
    }
    fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
    let mut cpio = Cpio::default();
    for d in [
        "bin",
        "sbin",
        "proc",
        "sys",
        "dev",
        "newroot",
        "lib",
        "lib/modules",
    ] {
        cpio.dir(d);
    }
    cpio.file("bin/busybox", 0o755, &bb);
    cpio.file("init", 0o755, init.as_bytes());
    cpio.file("init2", 0o755, INIT2.as_bytes());
    cpio.file("modprobe", 0o755, MODPROBE.as_bytes());
    cpio.file("may-fail", 0o644, MAY_FAIL.join(" ").as_bytes());
    let mut load = String::new();
    let mut dirs = BTreeSet::new();
    for path in &order {
        let mut prefix = String::from("lib/modules");
        for comp in Path::new(path)
            .parent()
            .into_iter()
            .flat_map(|p| p.components())
        {
            prefix = format!("{prefix}/{}", comp.as_os_str().to_string_lossy());
            if dirs.insert(prefix.clone()) {
                cpio.dir(&prefix);
            }
        }
        let data =
            fs::read(kernel.modules_dir().join(path)).ctx(|| format!("reading module {path}"))?;
        cpio.file(&format!("lib/modules/{path}"), 0o644, &data);
        load.push_str(path);
        load.push('\n');
    }
    cpio.file("modules.load", 0o644, load.as_bytes());
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    fs::write(&tmp, cpio.finish()).ctx(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, &out).ctx(|| format!("writing {}", out.display()))?;
    // Drop initramfs images of other builds once they are a day old (a
    // checkout on another commit may still be using a recent one).
    if let Ok(rd) = fs::read_dir(&dir) {
        for e in rd.flatten() {
            let p = e.path();
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > Duration::from_secs(86_400));
            if p != out && old && p.extension().is_some_and(|x| x == "cpio") {
                let _ = fs::remove_file(p);
            }
        }
    }
    Ok((out, true))
}

/// A `newc` cpio archive, written in memory.
#[derive(Default)]
struct Cpio {
    buf: Vec<u8>,
    ino: u32,
}

impl Cpio {
    fn entry(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.ino += 1;
        let namesize = name.len() + 1;
        let header = format!(
            "070701{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}{:08X}",
            self.ino,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            namesize,
            0
        );
        self.buf.extend_from_slice(header.as_bytes());
        self.buf.extend_from_slice(name.as_bytes());
        self.buf.push(0);
        self.pad();
        self.buf.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }

    fn dir(&mut self, name: &str) {
        self.entry(name, 0o040_755, &[]);
    }

    fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, 0o100_000 | perm, data);
    }

    fn finish(mut self) -> Vec<u8> {
        self.ino = 0;
        self.entry("TRAILER!!!", 0, &[]);
        self.buf
    }
}

/// Everything needed to boot one guest.
#[derive(Debug)]
pub struct GuestSpec {
    pub kernel: Kernel,
    pub initramfs: PathBuf,
    pub memory_mb: u32,
    pub cpus: u32,
    /// Writable results directory, mounted at /out.
    pub out: PathBuf,
    /// Host directories (workspace, target dir) the guest sees read-only at
    /// the same path; they reach it through the share of the host's `/`.
    pub binds: Vec<PathBuf>,
    /// The shell script PID 1 runs after the root is set up (in /out).
    pub agent: String,
    /// Extra QEMU arguments (network devices between guests).
    pub extra_args: Vec<String>,
    /// This guest's number (1-based); the agent script sees it as `$gkguest`.
    pub index: u32,
    /// Echo the console to stdout with this prefix (`vm-test -v`).
    pub echo: Option<String>,
}

/// The MAC of the NIC that carries topology link number `link` (0-based)
/// into guest `guest`.
pub fn link_mac(guest: u32, link: usize) -> String {
    format!("52:54:00:00:{:02x}:{:02x}", guest, link + 1)
}

impl GuestSpec {
    /// Join link number `link` to another guest through a pair of unix
    /// datagram sockets (no IP traffic on the host at all).
    pub fn add_link_nic(&mut self, link: usize, local: &Path, remote: &Path) {
        let id = format!("l{link}");
        self.extra_args.extend([
            "-netdev".to_string(),
            format!(
                "dgram,id={id},local.type=unix,local.path={},remote.type=unix,remote.path={}",
                local.display(),
                remote.display()
            ),
            "-device".to_string(),
            format!(
                "virtio-net-pci,netdev={id},mac={}",
                link_mac(self.index, link)
            ),
        ]);
    }
}

/// How a guest run ended.
#[derive(Debug)]
pub struct GuestRun {
    /// Host seconds from QEMU start to the first init line.
    pub boot_secs: Option<f64>,
    pub total: Duration,
    pub timed_out: bool,
}

impl GuestSpec {
    /// Write the job file and start QEMU; console output goes to `console`.
    pub fn spawn(&self, console: &Path) -> Result<RunningGuest> {
        let meta = self.out.join(".gatekey");
        fs::create_dir_all(&meta).ctx(|| format!("creating {}", meta.display()))?;
        let mut env = String::new();
        let mut binds = Vec::new();
        for b in &self.binds {
            let p = b.to_string_lossy();
            if p.contains(|c: char| c.is_whitespace() || c == '\'' || c == '$') {
                return Err(fail!(
                    "path {} cannot be shared with the guest (whitespace or quotes)",
                    b.display()
                ));
            }
            binds.push(p.into_owned());
        }
        env.push_str(&format!("GK_BINDS='{}'\n", binds.join(" ")));
        env.push_str(&format!(
            "GK_MODULES='{}'\n",
            self.kernel.modules_dir().display()
        ));
        fs::write(meta.join("job.env"), env)?;
        fs::write(meta.join("agent.sh"), &self.agent)?;

        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", "tcg", "-cpu", "max", "-machine", "pc"])
            .args(["-m", &format!("{}M", self.memory_mb)])
            .args(["-smp", &self.cpus.to_string()])
            .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
            .args(["-nodefaults", "-no-user-config", "-no-reboot"])
            .arg("-kernel")
            .arg(&self.kernel.vmlinux)
            .arg("-initrd")
            .arg(&self.initramfs)
            .arg("-append")
            .arg(format!(
                "console=ttyS0 panic=-1 quiet loglevel=3 random.trust_cpu=on cryptomgr.notests=1 gkguest={} {}",
                self.index,
                std::env::var("GATEKEY_GUEST_CMDLINE").unwrap_or_default()
            ))
;
        // Two shares: the results directory (writable) and the host's `/`
        // (read-only), which carries /usr, /etc, the kernel modules and the
        // workspace. Each virtio device costs boot time under TCG.
        let all = [
            ("out", self.out.as_path(), true),
            ("host", Path::new("/"), false),
        ];
        for (i, (tag, path, writable)) in all.iter().enumerate() {
            let mut v = format!(
                "local,id=fs{i},path={},security_model=none,multidevs=remap",
                path.display(),
            );
            if !writable {
                v.push_str(",readonly=on");
            }
            cmd.arg("-fsdev").arg(v);
            cmd.arg("-device")
                .arg(format!("virtio-9p-pci,fsdev=fs{i},mount_tag={tag}"));
        }
        cmd.args(&self.extra_args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .ctx(|| "cannot start qemu-system-x86_64 (run `cargo xtask setup`)")?;
        let mut log =
            fs::File::create(console).ctx(|| format!("creating {}", console.display()))?;
        let (tx, rx) = mpsc::channel();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let err_tx = tx.clone();
        let echo = self.echo.clone();
        let reader = std::thread::spawn(move || {
            let mut boot = None;
            if let Some(out) = stdout {
                for line in BufReader::new(out).split(b'\n').map_while(|l| l.ok()) {
                    let line = String::from_utf8_lossy(&line);
                    let line = line.trim_end_matches('\r');
                    if boot.is_none() && line.starts_with("gatekey-init: kernel up") {
                        boot = Some(start.elapsed().as_secs_f64());
                        let _ = tx.send(());
                    }
                    let _ = writeln!(log, "{line}");
                    if let Some(p) = &echo {
                        println!("{p}{line}");
                    }
                }
            }
            boot
        });
        let err_reader = std::thread::spawn(move || {
            let mut text = String::new();
            if let Some(err) = stderr {
                for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
                    text.push_str(&line);
                    text.push('\n');
                }
            }
            drop(err_tx);
            text
        });
        Ok(RunningGuest {
            child,
            start,
            reader: Some(reader),
            err_reader: Some(err_reader),
            booted: rx,
        })
    }
}

/// A guest that is running.
#[derive(Debug)]
pub struct RunningGuest {
    child: Child,
    start: Instant,
    reader: Option<std::thread::JoinHandle<Option<f64>>>,
    err_reader: Option<std::thread::JoinHandle<String>>,
    booted: mpsc::Receiver<()>,
}

/// How a guest's start went ([`RunningGuest::wait_boot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootWait {
    /// The guest's init reported the kernel up.
    Up,
    /// QEMU ended before that (its exit is examined by [`RunningGuest::wait`]).
    Ended,
    /// Nothing within the limit.
    Silent,
}

impl RunningGuest {
    /// Wait at most `limit` (from the spawn) for the guest's init to report
    /// the kernel up.
    pub fn wait_boot(&self, limit: Duration) -> BootWait {
        let left = limit.saturating_sub(self.start.elapsed());
        match self.booted.recv_timeout(left) {
            Ok(()) => BootWait::Up,
            Err(mpsc::RecvTimeoutError::Disconnected) => BootWait::Ended,
            Err(mpsc::RecvTimeoutError::Timeout) => BootWait::Silent,
        }
    }

    /// Stop the guest now.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        if let Some(r) = self.err_reader.take() {
            let _ = r.join();
        }
    }

    /// Wait for the guest to power off, at most `limit`; kill it after that.
    pub fn wait(mut self, limit: Duration) -> Result<(GuestRun, String)> {
        let mut timed_out = false;
        loop {
            if self.child.try_wait()?.is_some() {
                break;
            }
            if self.start.elapsed() > limit {
                timed_out = true;
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let boot_secs = self.reader.take().and_then(|r| r.join().ok()).flatten();
        let stderr = self
            .err_reader
            .take()
            .and_then(|r| r.join().ok())
            .unwrap_or_default();
        Ok((
            GuestRun {
                boot_secs,
                total: self.start.elapsed(),
                timed_out,
            },
            stderr,
        ))
    }
}

/// Host directories the guest sees at the same path: the workspace, and the
/// target directory if it is elsewhere.
pub fn bind_paths() -> Vec<PathBuf> {
    let ws = util::workspace_root();
    let target = util::target_dir();
    let mut binds = vec![ws.clone()];
    if !target.starts_with(&ws) {
        binds.push(target);
    }
    binds
}

/// Prepare the standard guest for a results directory.
pub fn standard_spec(out: &Path, agent: String) -> Result<GuestSpec> {
    let kernel = Kernel::installed()?;
    if !kernel.vmlinux.is_file() {
        return Err(fail!(
            "{} missing: run `cargo xtask setup`",
            kernel.vmlinux.display()
        ));
    }
    let (initramfs, _) = ensure_initramfs(&kernel)?;
    let binds = bind_paths();
    Ok(GuestSpec {
        kernel,
        initramfs,
        memory_mb: 512,
        cpus: 1,
        out: out.to_path_buf(),
        binds,
        agent,
        extra_args: Vec::new(),
        index: 1,
        echo: None,
    })
}
