//! `/proc/net/xfrm_stat`: the namespace's XFRM error counters (RFC 4301-style MIB).

/// XFRM error counters of a namespace, in the kernel's order and spelling
/// (`XfrmInNoStates`, `XfrmInStateProtoError`, `XfrmOutPolBlock`, …).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct XfrmStat {
    /// `(name, value)` pairs.
    pub entries: Vec<(String, u64)>,
}

impl XfrmStat {
    /// Parses the procfs text (`Name<whitespace>value` lines; malformed lines are skipped).
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .filter_map(|l| {
                let mut it = l.split_whitespace();
                let name = it.next()?;
                let value = it.next()?.parse().ok()?;
                Some((name.to_owned(), value))
            })
            .collect();
        XfrmStat { entries }
    }

    /// The value of one counter.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// Sum of all inbound error counters (`XfrmIn*`).
    pub fn inbound_errors(&self) -> u64 {
        self.sum("XfrmIn")
    }

    /// Sum of all outbound error counters (`XfrmOut*`).
    pub fn outbound_errors(&self) -> u64 {
        self.sum("XfrmOut")
    }

    fn sum(&self, prefix: &str) -> u64 {
        self.entries
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .fold(0u64, |a, (_, v)| a.saturating_add(*v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_procfs_text() {
        let s = XfrmStat::parse(
            "XfrmInError             \t0\nXfrmInNoStates          \t7\nXfrmOutPolBlock\t2\ngarbage\n",
        );
        assert_eq!(s.get("XfrmInNoStates"), Some(7));
        assert_eq!(s.inbound_errors(), 7);
        assert_eq!(s.outbound_errors(), 2);
        assert_eq!(s.entries.len(), 3);
    }
}
