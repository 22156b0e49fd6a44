//! Child processes (killed on drop, on panic and on Ctrl-C) and what `/proc` says about them:
//! CPU time, resident memory, descriptors, the machine's load; loopback-only addressing. Shared
//! by the macro and the soak benches (`benches/soak` includes this file), so each uses a part.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Every child alive, so a signal handler can kill them before the bench exits.
static CHILDREN: Mutex<Option<HashSet<u32>>> = Mutex::new(None);

fn children() -> std::sync::MutexGuard<'static, Option<HashSet<u32>>> {
    CHILDREN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A child process, killed (SIGKILL) and reaped when dropped.
pub struct Guard {
    child: Child,
    name: String,
}

impl Guard {
    /// Spawns `command`, registered for cleanup.
    pub fn spawn(name: &str, command: &mut Command) -> io::Result<Guard> {
        let child = command.spawn().map_err(|e| io::Error::new(e.kind(), format!("starting {name}: {e}")))?;
        children().get_or_insert_with(HashSet::new).insert(child.id());
        Ok(Guard { child, name: name.to_owned() })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the child has exited already (it should run until dropped).
    pub fn alive(&mut self) -> io::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => Err(io::Error::other(format!("{} exited early: {status}", self.name))),
        }
    }
}

impl Guard {
    /// Sends SIGHUP (a reload request).
    pub fn hangup(&self) -> io::Result<()> {
        let status = Command::new("kill").arg("-HUP").arg(self.pid().to_string()).status()?;
        if status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!("kill -HUP {}: {status}", self.pid())))
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(set) = children().as_mut() {
            set.remove(&self.child.id());
        }
    }
}

/// Kills every registered child (from a signal handler: the guards will not run).
pub fn kill_all() {
    let pids: Vec<u32> = children().as_ref().map(|s| s.iter().copied().collect()).unwrap_or_default();
    for pid in pids {
        let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
    }
}

/// CPU time of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu {
    /// Sum of `sum_exec_runtime` over its live threads (`/proc/PID/task/*/schedstat`), ns.
    pub precise_ns: u64,
    /// utime + stime from `/proc/PID/stat`, in clock ticks (all threads, dead ones too).
    pub ticks: u64,
}

/// CPU time of process `pid` now.
pub fn process_cpu(pid: u32) -> io::Result<Cpu> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = stat_ticks(&stat)?;
    let mut precise_ns = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = entry?.path().join("schedstat");
        // A thread may exit between the listing and the read.
        if let Ok(s) = std::fs::read_to_string(path) {
            precise_ns += first_number(&s);
        }
    }
    Ok(Cpu { precise_ns, ticks })
}

/// CPU time of the calling thread, ns.
pub fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat").map(|s| first_number(&s)).unwrap_or(0)
}

fn first_number(s: &str) -> u64 {
    s.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

fn stat_ticks(stat: &str) -> io::Result<u64> {
    // The command name is in parentheses and may hold spaces: fields are counted after it.
    let after = stat.rfind(')').map(|i| &stat[i + 1..]).ok_or_else(|| io::Error::other("bad stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let get = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    Ok(get(11) + get(12))
}

/// Resident memory of `pid` now (`VmRSS`) and at its peak (`VmHWM`), KiB, from one read of
/// `/proc/PID/status`.
pub fn rss_and_hwm_kib(pid: u32) -> io::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no {name} in /proc/{pid}/status")))
    };
    Ok((field("VmRSS")?, field("VmHWM")?))
}

/// Open descriptors of `pid` now (entries of `/proc/PID/fd`).
pub fn fd_count(pid: u32) -> io::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// Threads of `pid` now.
pub fn thread_count(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count() as u64).unwrap_or(0)
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> [f64; 3] {
    let s = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = s.split_whitespace().map(|f| f.parse::<f64>().unwrap_or(f64::NAN));
    [it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN), it.next().unwrap_or(f64::NAN)]
}

/// A free TCP port on `ip` (bound and released: a server started right after takes it).
pub fn free_port(ip: IpAddr) -> io::Result<u16> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// Waits until `addr` accepts connections, for at most `within`.
pub fn wait_listening(addr: SocketAddr, within: Duration) -> io::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(io::Error::new(e.kind(), format!("{addr} not listening after {within:?}: {e}")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Only loopback is ever addressed: every address the bench dials or binds goes through this.
pub fn loopback(addr: SocketAddr) -> SocketAddr {
    assert!(addr.ip().is_loopback(), "refusing non-loopback address {addr}");
    addr
}
