//! The z/OS "system name" equivalent on Linux.

/// The system name gatekey uses where z/OS uses the sysname (profile names
/// such as `EZB.NSS.<sysname>.…`, default NSS client names
/// `<sysname>_<stack>`): the first label of the host name, in upper case.
///
/// Reads `/proc/sys/kernel/hostname`; falls back to `LOCALHOST` if it cannot
/// be read or is empty.
pub fn system_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    system_name_from(&host)
}

/// The system name derived from a host name (see [`system_name`]).
pub fn system_name_from(host: &str) -> String {
    let first = host.trim().split('.').next().unwrap_or("");
    if first.is_empty() {
        "LOCALHOST".into()
    } else {
        first.to_ascii_uppercase()
    }
}

#[cfg(test)]
mod tests {
    use super::system_name_from;

    #[test]
    fn first_label_uppercased() {
        assert_eq!(system_name_from("gw1.example.net\n"), "GW1");
        assert_eq!(system_name_from(""), "LOCALHOST");
    }
}
