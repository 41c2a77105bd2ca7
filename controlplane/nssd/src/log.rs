//! nssd's log messages: `DBGnnnnX CATEGORY text`, filtered by the
//! NssConfig SyslogLevel bits, emitted as `tracing` events (the binary sends
//! them to syslog local4) and, for tests, to an optional hook.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

pub use gatekey_config::nssd_conf::syslog_level as level;

/// Receives every emitted line (tests use it to assert on log lines).
pub type LogHook = Arc<dyn Fn(&str) + Send + Sync>;

/// The category name printed after the message ID.
pub fn category(bit: u32) -> &'static str {
    match bit {
        level::VERBOSE => "NSS_VERBOSE",
        level::CERTINFO => "NSS_CERTINFO",
        level::LIFECYCLE => "NSS_LIFECYCLE",
        level::MGMT => "NSS_MGMT",
        level::TRACE => "NSS_TRACE",
        _ => "NSS_MINIMUM",
    }
}

/// A cheap, clonable logger.
#[derive(Clone)]
pub struct Logger {
    level: Arc<AtomicU32>,
    hook: Option<LogHook>,
}

impl fmt::Debug for Logger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Logger")
            .field("level", &self.level.load(Ordering::Relaxed))
            .field("hook", &self.hook.is_some())
            .finish()
    }
}

impl Logger {
    /// A logger at `level` bits with an optional hook.
    pub fn new(level: u32, hook: Option<LogHook>) -> Self {
        Logger {
            level: Arc::new(AtomicU32::new(level)),
            hook,
        }
    }

    /// Change the level (refresh).
    pub fn set_level(&self, level: u32) {
        self.level.store(level, Ordering::Relaxed);
    }

    /// The current level bits.
    pub fn level(&self) -> u32 {
        self.level.load(Ordering::Relaxed)
    }

    /// True if messages of category `bit` are emitted.
    pub fn enabled(&self, bit: u32) -> bool {
        self.level() & bit != 0
    }

    /// Emit `id` (e.g. `DBG0104I`) in category `bit` if enabled. Messages
    /// whose ID ends in `E` are emitted whatever the level.
    pub fn log(&self, bit: u32, id: &str, text: fmt::Arguments<'_>) {
        let error = id.ends_with('E');
        if !error && !self.enabled(bit) {
            return;
        }
        let line = format!("{id} {} {text}", category(bit));
        if error {
            tracing::error!("{line}");
        } else if id.ends_with('W') {
            tracing::warn!("{line}");
        } else {
            tracing::info!("{line}");
        }
        if let Some(h) = &self.hook {
            h(&line);
        }
    }
}

/// `nsslog!(logger, level::LIFECYCLE, "DBG0104I", "NSS connID {} - …", id)`.
#[macro_export]
macro_rules! nsslog {
    ($logger:expr, $bit:expr, $id:literal, $($arg:tt)+) => {
        $logger.log($bit, $id, format_args!($($arg)+))
    };
}
