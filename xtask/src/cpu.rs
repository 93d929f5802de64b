//! Where the CPU goes during a benchmark: the CPU time (user + system, from `/proc`) of every
//! process of each kind on the machine (the load generator, `refundry serve`, the sandbox,
//! PostgreSQL), and how busy the machine's cores were. Linux only; elsewhere it reads nothing.

use std::collections::BTreeMap;
use std::time::Duration;

/// The kinds of process a benchmark runs, in the order they are reported.
pub const KINDS: [&str; 4] = ["load generator", "refundry serve", "sandbox", "postgres"];

/// CPU time per process kind, and the machine's busy and total time, at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    by_kind: BTreeMap<&'static str, u64>,
    busy: u64,
    total: u64,
}

/// What happened between two snapshots.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// CPU time per process kind.
    pub by_kind: BTreeMap<&'static str, Duration>,
    /// Share of the machine's cores busy (0 to 1).
    pub busy: f64,
}

/// The clock ticks per second `/proc` counts in (the kernel's USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: u64 = 100;

impl Snapshot {
    /// Reads `/proc` now.
    pub fn take() -> Self {
        let mut by_kind = BTreeMap::new();
        let me = std::process::id();
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                let dir = entry.path();
                let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
                    continue;
                };
                let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
                if let Some(kind) = kind(pid == me, &stat, &cmdline) {
                    *by_kind.entry(kind).or_default() += ticks(&stat);
                }
            }
        }
        let (busy, total) = machine(&std::fs::read_to_string("/proc/stat").unwrap_or_default());
        Self {
            by_kind,
            busy,
            total,
        }
    }

    /// What was used from `self` to `later`.
    pub fn until(&self, later: &Snapshot) -> Usage {
        let by_kind = KINDS
            .iter()
            .map(|k| {
                let used = later
                    .by_kind
                    .get(k)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(self.by_kind.get(k).copied().unwrap_or(0));
                (*k, Duration::from_millis(used * 1000 / TICKS_PER_SECOND))
            })
            .collect();
        let total = later.total.saturating_sub(self.total);
        let busy = later.busy.saturating_sub(self.busy);
        Usage {
            by_kind,
            busy: if total == 0 {
                0.0
            } else {
                busy as f64 / total as f64
            },
        }
    }
}

/// The kind of a process from its `stat` and `cmdline`; `None` for the rest of the machine.
fn kind(is_me: bool, stat: &str, cmdline: &[u8]) -> Option<&'static str> {
    if is_me {
        return Some("load generator");
    }
    let comm = stat.split_once('(')?.1.rsplit_once(')')?.0;
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    let is_refundry = args.first().is_some_and(|a| a.ends_with(b"refundry"));
    match () {
        _ if comm == "postgres" => Some("postgres"),
        _ if is_refundry && args.iter().any(|a| *a == b"serve") => Some("refundry serve"),
        _ if is_refundry && args.iter().any(|a| *a == b"sandbox") => Some("sandbox"),
        _ => None,
    }
}

/// utime + stime of a `stat` line (fields 14 and 15, counted after the command's parenthesis).
fn ticks(stat: &str) -> u64 {
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime 15.
    let get = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(14) + get(15)
}

/// (busy, total) ticks of all cores from `/proc/stat`'s `cpu` line.
fn machine(proc_stat: &str) -> (u64, u64) {
    let Some(line) = proc_stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    // idle and iowait.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total.saturating_sub(idle), total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_by_their_fields() {
        // A command name with a space and a parenthesis, as /proc allows.
        let stat = "42 (my (odd) name) S 1 42 42 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 1 0";
        assert_eq!(ticks(stat), 325);
        let (busy, total) = machine("cpu  100 5 50 800 45 0 0 0 0 0\ncpu0 1 2 3 4 5\n");
        assert_eq!((busy, total), (155, 1000));
    }

    #[test]
    fn processes_are_told_apart_by_name_and_arguments() {
        let serve = b"/x/target/release/refundry\0serve\0--config\0c.toml\0";
        let sandbox = b"/x/target/release/refundry\0sandbox\0mfs-africa\0";
        let stat = |comm: &str| format!("7 ({comm}) S 1");
        assert_eq!(
            kind(false, &stat("refundry"), serve),
            Some("refundry serve")
        );
        assert_eq!(kind(false, &stat("refundry"), sandbox), Some("sandbox"));
        assert_eq!(
            kind(false, &stat("postgres"), b"postgres: refundry bench"),
            Some("postgres")
        );
        assert_eq!(kind(false, &stat("bash"), b"bash\0"), None);
        assert_eq!(kind(true, &stat("xtask"), b""), Some("load generator"));
    }

    #[test]
    fn usage_is_the_difference_in_milliseconds() {
        let at = |serve: u64, busy: u64, total: u64| Snapshot {
            by_kind: BTreeMap::from([("refundry serve", serve)]),
            busy,
            total,
        };
        let u = at(100, 50, 100).until(&at(350, 230, 300));
        assert_eq!(u.by_kind["refundry serve"], Duration::from_millis(2_500));
        assert_eq!(u.by_kind["postgres"], Duration::ZERO);
        assert!((u.busy - 0.9).abs() < 1e-9);
    }
}
