//! Memory (VmRSS, VmHWM) and CPU time of a process from Linux `/proc`, to see what the
//! server (and the load tool itself) used during a run.

use serde::Serialize;

/// Clock ticks per second of `/proc/PID/stat` times (USER_HZ, 100 on Linux/x86_64).
const TICKS_PER_SEC: f64 = 100.0;

/// One reading of a process.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    pub pid: u32,
    pub name: String,
    pub rss_kib: u64,
    /// Peak RSS since the process started.
    pub hwm_kib: u64,
    /// User + system CPU time since the process started.
    pub cpu_secs: f64,
}

/// Reads `/proc/<pid>` (`None` when the process is gone or this is not Linux).
pub fn sample(pid: u32) -> Option<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let (rss_kib, hwm_kib) = memory(&status);
    Some(Sample { pid, name: command(&cmdline), rss_kib, hwm_kib, cpu_secs: cpu_ticks(&stat)? as f64 / TICKS_PER_SEC })
}

/// Busy and total CPU ticks of the whole machine, summed over cores, from `/proc/stat`.
pub fn machine() -> Option<(u64, u64)> {
    machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Cores the machine has, for turning machine ticks into "% of a core".
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The `cpu` line: user nice system idle iowait irq softirq steal ...; idle and iowait are
/// not busy.
fn machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).take(8).filter_map(|n| n.parse().ok()).collect();
    if v.len() < 8 {
        return None;
    }
    let total: u64 = v.iter().sum();
    Some((total - v[3] - v[4], total))
}

/// `VmRSS` and `VmHWM` (KiB) from `/proc/PID/status`.
fn memory(status: &str) -> (u64, u64) {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// utime + stime from `/proc/PID/stat`; fields counted after the `)` closing the command
/// name, which may itself contain spaces.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": state is field 3 of the man page, so utime (14) and stime (15) are at 11, 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// The command line, NUL-separated in `/proc`, shortened to its program name and at most
/// three arguments.
fn command(raw: &[u8]) -> String {
    let parts: Vec<String> =
        raw.split(|b| *b == 0).filter(|p| !p.is_empty()).map(|p| String::from_utf8_lossy(p).into_owned()).collect();
    let mut parts = parts.into_iter();
    let Some(program) = parts.next() else { return String::new() };
    let program = program.rsplit('/').next().unwrap_or(&program).to_owned();
    std::iter::once(program).chain(parts.take(3)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_memory() {
        let status = "Name:\ttrellis\nVmPeak:\t  999 kB\nVmHWM:\t   52344 kB\nVmRSS:\t   40100 kB\n";
        assert_eq!(memory(status), (40100, 52344));
        assert_eq!(memory("Name:\tx\n"), (0, 0));
    }

    #[test]
    fn parses_stat_cpu_despite_spaces_in_the_name() {
        let stat = "1234 (tokio runtime) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 3 0 100 0 0";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_machine_ticks() {
        let stat = "cpu  100 5 50 800 20 1 4 0 0 0\ncpu0 50 2 25 400 10 0 2 0 0 0\n";
        assert_eq!(machine_ticks(stat), Some((160, 980)));
        assert_eq!(machine_ticks("intr 1 2 3"), None);
    }

    #[test]
    fn shortens_the_command_line() {
        assert_eq!(command(b"/work/target/release/trellis\0serve\0--roles\0sync\0"), "trellis serve --roles sync");
        assert_eq!(
            command(b"/bin/trellis-loadtest\0--url\0http://x\0--receivers\x00100\0"),
            "trellis-loadtest --url http://x --receivers"
        );
        assert_eq!(command(b""), "");
    }

    #[test]
    fn reads_this_process() {
        if cfg!(target_os = "linux") {
            let s = sample(std::process::id()).expect("own /proc entry");
            assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib);
        }
    }
}
