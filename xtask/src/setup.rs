//! `cargo xtask setup`: install everything the build and the tests need.
//!
//! Every step checks first and prints `already done` when there is nothing to
//! do, so a second run on a ready machine takes seconds. A failing step names
//! itself and says what to do.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::fail;
use crate::util::{self, Ctx, Result};

/// Debian packages the project needs on the host (and, through the 9p share
/// of the host's `/usr`, inside the test guests). Add yours here, one line
/// each, with what needs it.
pub const APT_PACKAGES: &[&str] = &[
    // build: C toolchain for cargo and for building bpf-linker against LLVM 22
    "build-essential",
    "pkg-config",
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    // test guests: QEMU, the guest's initramfs userland, vmlinux extraction
    "qemu-system-x86",
    "busybox-static",
    "xz-utils",
    "util-linux",
    "procps",
    // networking tools used on the host and inside guests
    "iproute2",
    "iputils-ping",
    "tcpdump",
    "tshark",
    "nftables",
    "bpftool",
    "socat",
    "iperf3",
    "python3",
    // interoperability peer (strongSwan); libreswan conflicts with
    // strongswan-starter in apt and must not be installed here
    "strongswan-charon",
    "strongswan-swanctl",
    "strongswan-pki",
    // GCM, X25519 and the other algorithms charon needs for the interop tests
    "libstrongswan-standard-plugins",
    "libstrongswan-extra-plugins",
    // kernel-libipsec: charon's user-space ESP for the IKEv1 interop tests on the host
    "libcharon-extra-plugins",
    // benchmarks
    "hyperfine",
    // libraries of libreswan's pluto, which setup unpacks into the cache (see
    // LIBRESWAN_PACKAGE), and certutil for its NSS databases
    "libnss3-tools",
    "libnss3",
    "libnspr4",
    "libunbound8",
    "libldns3",
    "libevent-core-2.1-7",
    "libevent-pthreads-2.1-7",
    "libcurl3-nss",
    "libcap-ng0",
    "libaudit1",
    "libldap-2.5-0",
];

/// bpf-linker must link the LLVM major version of rustc (22).
pub const BPF_LINKER_VERSION: &str = "0.13.0";
const BPF_LINKER_FEATURE: &str = "llvm-22";
const LLVM_PREFIX: &str = "/usr/lib/llvm-22";

/// The toolchain that builds the eBPF crate (with `RUSTC_BOOTSTRAP=1` and
/// `-Z build-std=core`, which needs `rust-src`).
pub const EBPF_TOOLCHAIN: &str = "stable";

/// The second interoperability peer. Debian's package conflicts with
/// strongswan-starter, so it is not installed: setup downloads the .deb and
/// unpacks it into `<cache>/libreswan` (its libraries are in APT_PACKAGES),
/// and the VM scenarios run pluto from there.
const LIBRESWAN_PACKAGE: &str = "libreswan";

/// The Debian meta package whose dependency names the guest kernel.
const KERNEL_META: &str = "linux-image-amd64";

pub fn run(args: &[String]) -> Result<()> {
    if let Some(a) = args.first() {
        return Err(fail!("`cargo xtask setup` takes no arguments (got `{a}`)"));
    }
    let t0 = Instant::now();
    let mut apt = Apt::default();
    step("apt packages", || apt_packages(&mut apt))?;
    step("rust-src for the eBPF toolchain", rust_src)?;
    step(
        &format!("bpf-linker {BPF_LINKER_VERSION} ({BPF_LINKER_FEATURE})"),
        bpf_linker,
    )?;
    step("guest kernel", || guest_kernel(&mut apt))?;
    step("libreswan (unpacked into the cache)", || {
        libreswan(&mut apt)
    })?;
    step("guest initramfs", || {
        let k = Kernel::installed()?;
        crate::guest::ensure_initramfs(&k).map(|(_, built)| built)
    })?;
    println!("setup: all done in {}", util::secs(t0.elapsed()));
    Ok(())
}

/// Run one step; it returns whether it did something.
fn step(name: &str, f: impl FnOnce() -> Result<bool>) -> Result<()> {
    let t = Instant::now();
    println!("setup: {name} ...");
    let _ = std::io::stdout().flush();
    match f() {
        Ok(true) => {
            println!("setup: {name}: done ({})", util::secs(t.elapsed()));
            Ok(())
        }
        Ok(false) => {
            println!("setup: {name}: already done ({})", util::secs(t.elapsed()));
            Ok(())
        }
        Err(e) => Err(fail!("setup step `{name}` failed: {e}")),
    }
}

/// `apt-get update` at most once per setup, and only when needed.
#[derive(Default)]
struct Apt {
    updated: bool,
}

impl Apt {
    fn lists_present() -> bool {
        fs::read_dir("/var/lib/apt/lists")
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
            })
            .unwrap_or(false)
    }

    fn update(&mut self) -> Result<()> {
        if self.updated {
            return Ok(());
        }
        println!("setup:   apt-get update");
        util::run_inherit(apt_cmd("apt-get").args(["update", "-q"]))
            .map_err(|e| fail!("{e}; check the machine's apt sources and network"))?;
        self.updated = true;
        Ok(())
    }

    fn update_if_no_lists(&mut self) -> Result<()> {
        if Self::lists_present() {
            Ok(())
        } else {
            self.update()
        }
    }

    /// Run an apt command; on failure refresh the package lists once and retry.
    fn with_retry(&mut self, mut make: impl FnMut() -> Command) -> Result<()> {
        self.update_if_no_lists()?;
        match util::run_inherit(&mut make()) {
            Ok(()) => Ok(()),
            Err(_) if !self.updated => {
                println!("setup:   retrying after refreshing the package lists");
                self.update()?;
                util::run_inherit(&mut make())
            }
            Err(e) => Err(e),
        }
    }
}

fn apt_cmd(prog: &str) -> Command {
    let mut c = Command::new(prog);
    c.env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null());
    c
}

fn need_root(what: &str) -> Result<()> {
    if util::is_root() {
        Ok(())
    } else {
        Err(fail!("{what} needs root: run `cargo xtask setup` as root"))
    }
}

/// Which of `pkgs` are not installed (one dpkg-query call).
fn missing_packages(pkgs: &[&str]) -> Result<Vec<String>> {
    let out = util::run_capture(
        Command::new("dpkg-query")
            .args(["-W", "-f=${Package} ${db:Status-Abbrev}\n"])
            .args(pkgs),
    )?;
    let text = String::from_utf8_lossy(&out.stdout);
    let installed: Vec<&str> = text
        .lines()
        .filter_map(|l| {
            let (name, status) = l.split_once(' ')?;
            status.starts_with("ii").then_some(name)
        })
        .collect();
    Ok(pkgs
        .iter()
        .filter(|p| !installed.contains(p))
        .map(|p| p.to_string())
        .collect())
}

fn apt_packages(apt: &mut Apt) -> Result<bool> {
    let missing = missing_packages(APT_PACKAGES)?;
    if missing.is_empty() {
        return Ok(false);
    }
    println!("setup:   installing {}", missing.join(" "));
    need_root("installing Debian packages")?;
    apt.with_retry(|| {
        let mut c = apt_cmd("apt-get");
        c.args(["install", "-y", "-q"]).args(&missing);
        c
    })
    .map_err(|e| fail!("{e}; try `apt-get install {}` by hand", missing.join(" ")))?;
    let still = missing_packages(APT_PACKAGES)?;
    if !still.is_empty() {
        return Err(fail!("still not installed: {}", still.join(" ")));
    }
    Ok(true)
}

fn rust_src() -> Result<bool> {
    let sysroot = util::stdout_of(
        Command::new("rustc")
            .env("RUSTUP_TOOLCHAIN", EBPF_TOOLCHAIN)
            .args(["--print", "sysroot"]),
    )
    .map_err(|e| fail!("{e}; install rustup and the {EBPF_TOOLCHAIN} toolchain"))?;
    let src = Path::new(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
    if src.is_dir() {
        return Ok(false);
    }
    util::run_inherit(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        EBPF_TOOLCHAIN,
    ]))
    .map_err(|e| fail!("{e}; run `rustup component add rust-src --toolchain {EBPF_TOOLCHAIN}`"))?;
    Ok(true)
}

/// Is the pinned bpf-linker, built for LLVM 22, installed?
pub fn bpf_linker_ok() -> bool {
    let home = util::cargo_home();
    let bin = util::which("bpf-linker").unwrap_or_else(|| home.join("bin/bpf-linker"));
    let Ok(version) = util::stdout_of(Command::new(&bin).arg("--version")) else {
        return false;
    };
    if version.split_whitespace().nth(1) != Some(BPF_LINKER_VERSION) {
        return false;
    }
    // `cargo install` records the features it built with; a binary that was
    // not installed by cargo is taken as it is.
    match fs::read_to_string(home.join(".crates2.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
    {
        Some(v) => {
            let key = v.get("installs").and_then(|i| i.as_object()).and_then(|m| {
                m.iter()
                    .find(|(k, _)| k.starts_with(&format!("bpf-linker {BPF_LINKER_VERSION} ")))
            });
            match key {
                Some((_, entry)) => entry
                    .get("features")
                    .and_then(|f| f.as_array())
                    .is_some_and(|f| f.iter().any(|x| x == BPF_LINKER_FEATURE)),
                None => true,
            }
        }
        None => true,
    }
}

fn bpf_linker() -> Result<bool> {
    if bpf_linker_ok() {
        return Ok(false);
    }
    if !Path::new(LLVM_PREFIX).join("bin/llvm-config").is_file() {
        return Err(fail!(
            "{LLVM_PREFIX}/bin/llvm-config not found; the apt step installs llvm-22-dev"
        ));
    }
    println!("setup:   building bpf-linker (takes a few minutes on 2 cores)");
    util::run_inherit(
        util::cargo()
            .env("LLVM_PREFIX", LLVM_PREFIX)
            .args(["install", "bpf-linker", "--version", BPF_LINKER_VERSION])
            .args(["--no-default-features", "--features", BPF_LINKER_FEATURE])
            .arg("--locked")
            .arg("--force"),
    )
    .map_err(|e| {
        fail!(
            "{e}; run `LLVM_PREFIX={LLVM_PREFIX} cargo install bpf-linker --version \
             {BPF_LINKER_VERSION} --no-default-features --features {BPF_LINKER_FEATURE} --locked`"
        )
    })?;
    if !bpf_linker_ok() {
        return Err(fail!(
            "bpf-linker installed but `bpf-linker --version` does not say {BPF_LINKER_VERSION}; \
             is an older one earlier on PATH?"
        ));
    }
    Ok(true)
}

/// The unpacked Debian guest kernel in the cache.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// `6.1.0-56-amd64`
    pub release: String,
    /// The unpacked package root (holds `boot/` and `lib/modules/`).
    pub root: PathBuf,
    /// Uncompressed kernel, booted directly through PVH (much faster than bzImage).
    pub vmlinux: PathBuf,
}

impl Kernel {
    fn dir() -> PathBuf {
        util::cache_dir().join("kernel")
    }

    fn at(root: PathBuf) -> Result<Self> {
        let stamp = fs::read_to_string(root.join(".complete"))
            .ctx(|| format!("{} is incomplete", root.display()))?;
        let release = stamp.lines().next().unwrap_or_default().trim().to_string();
        Ok(Kernel {
            vmlinux: root.join("vmlinux"),
            release,
            root,
        })
    }

    /// The kernel `cargo xtask setup` installed last.
    pub fn installed() -> Result<Self> {
        let current = Self::dir().join("current");
        let root = fs::canonicalize(&current).map_err(|_| {
            fail!(
                "no guest kernel in {}: run `cargo xtask setup`",
                Self::dir().display()
            )
        })?;
        Self::at(root).map_err(|e| fail!("{e}: run `cargo xtask setup`"))
    }

    pub fn modules_dir(&self) -> PathBuf {
        self.root.join("lib/modules").join(&self.release)
    }
}

/// The kernel package `linux-image-amd64` currently points to.
fn kernel_package(apt: &mut Apt) -> Result<String> {
    apt.update_if_no_lists()?;
    let find = || -> Result<Option<String>> {
        let text = util::stdout_of(Command::new("apt-cache").args(["depends", KERNEL_META]))?;
        Ok(text.lines().find_map(|l| {
            let dep = l.trim().strip_prefix("Depends:")?.trim();
            (dep.starts_with("linux-image-") && dep.ends_with("-amd64")).then(|| dep.to_string())
        }))
    };
    if let Ok(Some(p)) = find() {
        return Ok(p);
    }
    apt.update()?;
    find()?.ok_or_else(|| fail!("`apt-cache depends {KERNEL_META}` names no linux-image package"))
}

fn guest_kernel(apt: &mut Apt) -> Result<bool> {
    let dir = Kernel::dir();
    let current = dir.join("current");
    // Fastest path: the cached kernel is newer than apt's package lists, so
    // apt cannot name another one (asking apt-cache costs seconds).
    if let Ok(k) = Kernel::installed() {
        use std::os::unix::fs::MetadataExt;
        let stamp = fs::metadata(k.root.join(".complete")).map(|m| m.ctime());
        if let (Ok(stamp), Some(lists)) = (stamp, newest_apt_list())
            && stamp >= lists
        {
            return Ok(false);
        }
    }
    // Fast path: a complete kernel is cached and apt still names it.
    let pkg = kernel_package(apt)?;
    let root = dir.join(&pkg);
    if Kernel::at(root.clone()).is_ok() {
        let cur = fs::read_link(&current).ok();
        if cur.as_deref() != Some(Path::new(&pkg)) {
            let _ = fs::remove_file(&current);
            std::os::unix::fs::symlink(&pkg, &current)
                .ctx(|| format!("linking {}", current.display()))?;
        }
        return Ok(false);
    }
    println!("setup:   downloading {pkg}");
    let dl = dir.join("download");
    let _ = fs::remove_dir_all(&dl);
    fs::create_dir_all(&dl).ctx(|| format!("creating {}", dl.display()))?;
    apt.with_retry(|| {
        let mut c = apt_cmd("apt-get");
        c.current_dir(&dl).args(["download", "-q", &pkg]);
        c
    })
    .map_err(|e| fail!("{e}; try `apt-get update && apt-get download {pkg}`"))?;
    let deb = fs::read_dir(&dl)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| fail!("apt-get download left no .deb in {}", dl.display()))?;

    let tmp = dir.join(format!("{pkg}.tmp"));
    let _ = fs::remove_dir_all(&tmp);
    println!("setup:   unpacking {}", deb.display());
    util::run_inherit(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
    let release = pkg.strip_prefix("linux-image-").unwrap_or(&pkg).to_string();
    let modules = tmp.join("lib/modules").join(&release);
    if !modules.is_dir() {
        return Err(fail!("{} has no lib/modules/{release}", deb.display()));
    }
    // The .deb ships no modules.dep.
    util::run_inherit(
        Command::new("busybox")
            .arg("depmod")
            .arg("-b")
            .arg(&tmp)
            .arg(&release),
    )?;
    if !modules.join("modules.dep").is_file() {
        return Err(fail!("busybox depmod wrote no modules.dep"));
    }
    let vmlinuz = tmp.join("boot").join(format!("vmlinuz-{release}"));
    extract_vmlinux(&vmlinuz, &tmp.join("vmlinux"))?;
    fs::write(tmp.join(".complete"), format!("{release}\n{pkg}\n"))?;
    let _ = fs::remove_dir_all(&root);
    fs::rename(&tmp, &root).ctx(|| format!("moving into {}", root.display()))?;
    let _ = fs::remove_file(&current);
    std::os::unix::fs::symlink(&pkg, &current).ctx(|| format!("linking {}", current.display()))?;
    let _ = fs::remove_dir_all(&dl);
    Ok(true)
}

/// Where setup unpacks libreswan: the package's tree (`usr/libexec/ipsec/pluto`,
/// `usr/sbin/ipsec`, …) and a `.complete` stamp holding its version.
fn libreswan_dir() -> PathBuf {
    util::cache_dir().join("libreswan")
}

/// The version apt would download (`apt-cache policy`'s candidate).
fn libreswan_candidate(apt: &mut Apt) -> Result<String> {
    apt.update_if_no_lists()?;
    let find = || -> Result<Option<String>> {
        let text = util::stdout_of(Command::new("apt-cache").args(["policy", LIBRESWAN_PACKAGE]))?;
        Ok(text.lines().find_map(|l| {
            let v = l.trim().strip_prefix("Candidate:")?.trim();
            (!v.is_empty() && v != "(none)").then(|| v.to_string())
        }))
    };
    if let Ok(Some(v)) = find() {
        return Ok(v);
    }
    apt.update()?;
    find()?.ok_or_else(|| {
        fail!("apt knows no {LIBRESWAN_PACKAGE} package; check the apt sources (Debian main)")
    })
}

/// `pluto --version` from the unpacked tree: proves its libraries are there.
fn libreswan_runs(root: &Path) -> Result<String> {
    let pluto = root.join("usr/libexec/ipsec/pluto");
    let text = util::stdout_of(Command::new(&pluto).arg("--version"))
        .map_err(|e| fail!("{} does not start: {e}", pluto.display()))?;
    if !text.starts_with("Libreswan") {
        return Err(fail!(
            "{} --version printed {:?}, not `Libreswan …`",
            pluto.display(),
            text.lines().next().unwrap_or_default()
        ));
    }
    Ok(text)
}

fn libreswan(apt: &mut Apt) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let dir = libreswan_dir();
    let stamp = dir.join(".complete");
    let cached = fs::read_to_string(&stamp)
        .ok()
        .map(|s| s.trim().to_string());
    // Fastest path: unpacked after apt's lists last changed, so apt cannot
    // offer another version (asking apt-cache costs seconds).
    if cached.is_some()
        && let (Ok(m), Some(lists)) = (fs::metadata(&stamp), newest_apt_list())
        && m.ctime() >= lists
        && libreswan_runs(&dir).is_ok()
    {
        return Ok(false);
    }
    let version = libreswan_candidate(apt)?;
    if cached.as_deref() == Some(version.as_str()) && libreswan_runs(&dir).is_ok() {
        // Same version: refresh the stamp so the next run takes the fast path.
        fs::write(&stamp, format!("{version}\n"))?;
        return Ok(false);
    }
    println!("setup:   downloading {LIBRESWAN_PACKAGE} {version}");
    let cache = util::cache_dir();
    let dl = cache.join("libreswan.download");
    let _ = fs::remove_dir_all(&dl);
    fs::create_dir_all(&dl).ctx(|| format!("creating {}", dl.display()))?;
    let spec = format!("{LIBRESWAN_PACKAGE}={version}");
    apt.with_retry(|| {
        let mut c = apt_cmd("apt-get");
        c.current_dir(&dl).args(["download", "-q", &spec]);
        c
    })
    .map_err(|e| fail!("{e}; try `apt-get update && apt-get download {spec}`"))?;
    let deb = fs::read_dir(&dl)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| fail!("apt-get download left no .deb in {}", dl.display()))?;
    let tmp = cache.join("libreswan.tmp");
    let _ = fs::remove_dir_all(&tmp);
    println!("setup:   unpacking {}", deb.display());
    util::run_inherit(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&tmp))?;
    let first = libreswan_runs(&tmp).map_err(|e| {
        fail!(
            "{e}; a library is missing? `ldd {}/usr/libexec/ipsec/pluto | grep 'not found'` \
             names it; add its package to APT_PACKAGES",
            tmp.display()
        )
    })?;
    println!("setup:   {}", first.lines().next().unwrap_or_default());
    fs::write(tmp.join(".complete"), format!("{version}\n"))?;
    let _ = fs::remove_dir_all(&dir);
    fs::rename(&tmp, &dir).ctx(|| format!("moving into {}", dir.display()))?;
    let _ = fs::remove_dir_all(&dl);
    Ok(true)
}

/// When apt's package lists last changed on this machine (ctime: apt sets
/// the mtime to the server's).
fn newest_apt_list() -> Option<i64> {
    use std::os::unix::fs::MetadataExt;
    fs::read_dir("/var/lib/apt/lists")
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("_Packages"))
        .filter_map(|e| e.metadata().map(|m| m.ctime()).ok())
        .max()
}

/// Decompress the kernel inside a bzImage (xz, as Debian builds it) into an
/// ELF vmlinux that QEMU boots through PVH.
fn extract_vmlinux(bzimage: &Path, out: &Path) -> Result<()> {
    const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0];
    let data = fs::read(bzimage).ctx(|| format!("reading {}", bzimage.display()))?;
    let pos = data
        .windows(XZ_MAGIC.len())
        .position(|w| w == XZ_MAGIC)
        .ok_or_else(|| fail!("{} holds no xz stream", bzimage.display()))?;
    let file = fs::File::create(out).ctx(|| format!("creating {}", out.display()))?;
    let mut child = Command::new("xz")
        .args(["-dc", "--single-stream"])
        .stdin(Stdio::piped())
        .stdout(file)
        .stderr(Stdio::null())
        .spawn()
        .ctx(|| "cannot start xz (package xz-utils)")?;
    if let Some(mut stdin) = child.stdin.take() {
        // xz may stop reading after the stream ends; a broken pipe is fine.
        let _ = stdin.write_all(data.get(pos..).unwrap_or_default());
    }
    let _ = child.wait()?;
    let mut head = [0u8; 4];
    let ok = fs::File::open(out)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok();
    if !ok || &head != b"\x7fELF" {
        return Err(fail!(
            "could not extract an ELF vmlinux from {}",
            bzimage.display()
        ));
    }
    Ok(())
}
