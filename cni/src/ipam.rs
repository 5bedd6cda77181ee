//! Address management with host-local's on-disk semantics, inside the plugin.
//!
//! Why not delegate to the `host-local` binary: one process, one lock and
//! the rollback in the same place. ADD reserves, asks the daemon for the
//! port and releases on any failure without a second exec; CHECK and GC see
//! the same store; and nothing depends on `CNI_PATH` holding a compatible
//! host-local.
//!
//! The store is host-local's (`plugins/ipam/host-local/backend/disk`), so
//! an operator's tools read it the same way:
//! - `<dataDir>/<network>/` holds one file per reserved address, named by
//!   the address, containing `<containerID>\n<ifname>`, created with
//!   `O_EXCL` so a reservation is atomic even without the lock;
//! - `last_reserved_ip.<range set index>` remembers where round-robin
//!   allocation continues, so a crash-looping pod does not get its old
//!   address straight back;
//! - `lock` is held with `flock` around every operation (allocate, release,
//!   find, GC), so concurrent plugin processes are safe. The wait is bounded
//!   ([`LOCK_WAIT`]); running out of it is code 11 (try again later).
//!
//! The network address, the last address (IPv4 broadcast) and the gateway
//! are never handed out, nor an address the caller names as taken (one a
//! podswitchd port already holds: a range may overlap ports made by hand).

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cidr::{Cidr, from_int, to_int};
use crate::types::{CniError, RangeConf, code};

/// How long an operation waits for the store lock before giving up.
pub const LOCK_WAIT: Duration = Duration::from_secs(30);

const LOCK_FILE: &str = "lock";
const LAST_RESERVED_PREFIX: &str = "last_reserved_ip.";

/// One validated range of a range set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// The subnet (network address, prefix).
    pub subnet: Cidr,
    /// First address handed out.
    pub start: IpAddr,
    /// Last address handed out.
    pub end: IpAddr,
    /// Never handed out; returned as the gateway.
    pub gateway: IpAddr,
}

impl Range {
    /// Validates one `ranges[set][index]` entry; errors (code 7) name it.
    pub fn from_conf(conf: &RangeConf, key: &str) -> Result<Range, CniError> {
        let subnet = Cidr::parse(&conf.subnet).ok_or_else(|| {
            CniError::config(format!(
                "{key}.subnet = {:?}: not an address/prefix",
                conf.subnet
            ))
        })?;
        if subnet.network() != subnet.addr {
            return Err(CniError::config(format!(
                "{key}.subnet = {}: host bits are set (network is {}/{})",
                conf.subnet,
                subnet.network(),
                subnet.prefix
            )));
        }
        let max = if subnet.is_ipv4() { 32 } else { 128 };
        if subnet.prefix + 1 >= max {
            return Err(CniError::config(format!(
                "{key}.subnet = {}: network too small to allocate from",
                conf.subnet
            )));
        }
        let inside = |what: &str, ip: IpAddr| -> Result<IpAddr, CniError> {
            let usable = subnet.contains(ip)
                && to_int(ip) > to_int(subnet.network())
                && to_int(ip) < to_int(subnet.last());
            if usable {
                Ok(ip)
            } else {
                Err(CniError::config(format!(
                    "{key}.{what} = {ip}: not a host address of {subnet}"
                )))
            }
        };
        let first_host = from_int(subnet.addr, to_int(subnet.network()) + 1);
        let last_host = from_int(subnet.addr, to_int(subnet.last()) - 1);
        let gateway = inside("gateway", conf.gateway.unwrap_or(first_host))?;
        let start = inside("rangeStart", conf.range_start.unwrap_or(first_host))?;
        let end = inside("rangeEnd", conf.range_end.unwrap_or(last_host))?;
        if to_int(start) > to_int(end) {
            return Err(CniError::config(format!(
                "{key}.rangeStart = {start}: after rangeEnd = {end}"
            )));
        }
        Ok(Range {
            subnet,
            start,
            end,
            gateway,
        })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.start.is_ipv4()
            && (to_int(self.start)..=to_int(self.end)).contains(&to_int(ip))
    }

    fn size(&self) -> u128 {
        to_int(self.end) - to_int(self.start) + 1
    }
}

/// Validates `ipam.ranges`: every range, and no overlap between any two.
pub fn ranges_from_conf(conf: &[Vec<RangeConf>]) -> Result<Vec<Vec<Range>>, CniError> {
    let mut sets = Vec::new();
    for (i, set) in conf.iter().enumerate() {
        if set.is_empty() {
            return Err(CniError::config(format!(
                "ipam.ranges[{i}]: empty range set"
            )));
        }
        let mut ranges = Vec::new();
        for (j, range) in set.iter().enumerate() {
            ranges.push(Range::from_conf(range, &format!("ipam.ranges[{i}][{j}]"))?);
        }
        sets.push(ranges);
    }
    let all: Vec<&Range> = sets.iter().flatten().collect();
    for (a, ra) in all.iter().enumerate() {
        for rb in &all[a + 1..] {
            if ra.subnet.contains(rb.subnet.addr) || rb.subnet.contains(ra.subnet.addr) {
                return Err(CniError::config(format!(
                    "ipam.ranges: {} overlaps {}",
                    ra.subnet, rb.subnet
                )));
            }
        }
    }
    Ok(sets)
}

/// One reserved address: the address with the subnet's prefix, and the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The address with its subnet's prefix length.
    pub address: Cidr,
    /// The range's gateway.
    pub gateway: IpAddr,
}

/// One reservation file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// The address (the file name).
    pub ip: IpAddr,
    /// Owner container ID.
    pub container_id: String,
    /// Owner interface (empty in host-local's legacy format).
    pub ifname: String,
}

impl Reservation {
    fn belongs_to(&self, container_id: &str, ifname: &str) -> bool {
        self.container_id == container_id && (self.ifname == ifname || self.ifname.is_empty())
    }
}

/// The store of one network: `<dataDir>/<network>/`.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// The held store lock; released on drop (the file is closed).
struct StoreLock {
    _file: File,
}

impl Store {
    /// The store of `network` under `data_dir` (created if missing).
    pub fn open(data_dir: &Path, network: &str) -> Result<Store, CniError> {
        let dir = data_dir.join(network);
        std::fs::create_dir_all(&dir)
            .map_err(|e| CniError::io(format!("create IPAM store {}: {e}", dir.display())))?;
        Ok(Store { dir })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> Result<StoreLock, CniError> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| CniError::io(format!("open {}: {e}", path.display())))?;
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(StoreLock { _file: file }),
                Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(CniError::new(
                        code::TRY_AGAIN,
                        "IPAM store busy",
                        format!("{} held for over {} s", path.display(), LOCK_WAIT.as_secs()),
                    ));
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(CniError::io(format!("flock {}: {e}", path.display())));
                }
            }
        }
    }

    /// Every reservation in the store (files that do not parse are skipped).
    fn scan(&self) -> Result<Vec<Reservation>, CniError> {
        let entries = std::fs::read_dir(&self.dir)
            .map_err(|e| CniError::io(format!("read {}: {e}", self.dir.display())))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(ip) = name.to_str().and_then(|n| n.parse::<IpAddr>().ok()) else {
                continue;
            };
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let mut lines = text.lines().map(str::trim);
            let container_id = lines.next().unwrap_or("").to_string();
            let ifname = lines.next().unwrap_or("").to_string();
            out.push(Reservation {
                ip,
                container_id,
                ifname,
            });
        }
        Ok(out)
    }

    /// Reserves one address per range set for (`container_id`, `ifname`),
    /// honouring `requested` addresses; all or nothing.
    pub fn allocate(
        &self,
        sets: &[Vec<Range>],
        container_id: &str,
        ifname: &str,
        requested: &[IpAddr],
    ) -> Result<Vec<Allocation>, CniError> {
        self.allocate_except(sets, container_id, ifname, requested, &BTreeMap::new())
    }

    /// As [`Store::allocate`], never handing out an address of `taken`
    /// (address → whose it is, for the error when it is requested).
    pub fn allocate_except(
        &self,
        sets: &[Vec<Range>],
        container_id: &str,
        ifname: &str,
        requested: &[IpAddr],
        taken: &BTreeMap<IpAddr, String>,
    ) -> Result<Vec<Allocation>, CniError> {
        let _lock = self.lock()?;
        let existing = self.scan()?;
        if let Some(r) = existing.iter().find(|r| r.belongs_to(container_id, ifname)) {
            return Err(CniError::new(
                code::ADDRESS_CONFLICT,
                "duplicate allocation is not allowed",
                format!("{container_id}/{ifname} already holds {}", r.ip),
            ));
        }
        let wanted = assign_requested(sets, requested)?;
        let mut done: Vec<Allocation> = Vec::new();
        for (index, set) in sets.iter().enumerate() {
            let owner = (container_id, ifname);
            let result = match wanted[index] {
                Some(ip) => self.reserve_requested(set, ip, owner, taken),
                None => self.reserve_next(index, set, existing.len(), owner, taken),
            };
            match result {
                Ok(allocation) => {
                    let last = self.dir.join(format!("{LAST_RESERVED_PREFIX}{index}"));
                    // Losing this only weakens round-robin, never correctness.
                    let _ = std::fs::write(&last, allocation.address.addr.to_string());
                    done.push(allocation);
                }
                Err(e) => {
                    for a in &done {
                        let _ = std::fs::remove_file(self.dir.join(a.address.addr.to_string()));
                    }
                    return Err(e);
                }
            }
        }
        Ok(done)
    }

    fn reserve_requested(
        &self,
        set: &[Range],
        ip: IpAddr,
        (container_id, ifname): (&str, &str),
        taken: &BTreeMap<IpAddr, String>,
    ) -> Result<Allocation, CniError> {
        let range = set
            .iter()
            .find(|r| r.contains(ip))
            .ok_or_else(|| CniError::env(format!("CNI_ARGS IP = {ip}: not inside any range")))?;
        if ip == range.gateway {
            return Err(CniError::env(format!(
                "CNI_ARGS IP = {ip}: is the gateway of {}",
                range.subnet
            )));
        }
        if let Some(whose) = taken.get(&ip) {
            return Err(CniError::new(
                code::ADDRESS_CONFLICT,
                "requested address is taken",
                format!("CNI_ARGS IP = {ip}: already the address of {whose}"),
            ));
        }
        if self.try_reserve(ip, container_id, ifname)? {
            Ok(allocation(range, ip))
        } else {
            Err(CniError::new(
                code::ADDRESS_CONFLICT,
                "requested address is taken",
                format!("CNI_ARGS IP = {ip}: reserved by another container"),
            ))
        }
    }

    fn reserve_next(
        &self,
        index: usize,
        set: &[Range],
        reserved: usize,
        (container_id, ifname): (&str, &str),
        taken: &BTreeMap<IpAddr, String>,
    ) -> Result<Allocation, CniError> {
        let last = std::fs::read_to_string(self.dir.join(format!("{LAST_RESERVED_PREFIX}{index}")))
            .ok()
            .and_then(|t| t.trim().parse::<IpAddr>().ok());
        let mut position = match last.and_then(|ip| set.iter().position(|r| r.contains(ip))) {
            Some(r) => next_position(set, r, last.unwrap_or(set[r].start)),
            None => (0, set[0].start),
        };
        // Each step that fails hits a reserved file, a taken address or a
        // gateway, so a free address turns up within that many + 1 distinct steps.
        let total: u128 = set.iter().map(Range::size).sum();
        let steps = total.min((reserved + taken.len() + set.len() + 1) as u128);
        for _ in 0..steps {
            let (r, ip) = position;
            let free = ip != set[r].gateway && !taken.contains_key(&ip);
            if free && self.try_reserve(ip, container_id, ifname)? {
                return Ok(allocation(&set[r], ip));
            }
            position = next_position(set, r, ip);
        }
        let subnets: Vec<String> = set.iter().map(|r| r.subnet.to_string()).collect();
        Err(CniError::new(
            code::RANGE_EXHAUSTED,
            "no free address",
            format!(
                "ipam.ranges[{index}] ({}) has no free address",
                subnets.join(", ")
            ),
        ))
    }

    /// Creates the reservation file; false when it exists already.
    fn try_reserve(&self, ip: IpAddr, container_id: &str, ifname: &str) -> Result<bool, CniError> {
        let path = self.dir.join(ip.to_string());
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path);
        match file {
            Ok(mut file) => {
                let written = file.write_all(format!("{container_id}\n{ifname}").as_bytes());
                if let Err(e) = written {
                    let _ = std::fs::remove_file(&path);
                    return Err(CniError::io(format!("write {}: {e}", path.display())));
                }
                Ok(true)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(CniError::io(format!("create {}: {e}", path.display()))),
        }
    }

    /// Releases every address held by (`container_id`, `ifname`); unknown
    /// owners are not an error. Returns the addresses released.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, CniError> {
        let _lock = self.lock()?;
        self.remove_where(|r| r.belongs_to(container_id, ifname))
    }

    /// The addresses held by (`container_id`, `ifname`).
    pub fn find(&self, container_id: &str, ifname: &str) -> Result<Vec<IpAddr>, CniError> {
        let _lock = self.lock()?;
        Ok(self
            .scan()?
            .into_iter()
            .filter(|r| r.belongs_to(container_id, ifname))
            .map(|r| r.ip)
            .collect())
    }

    /// Every reservation (under the lock).
    pub fn reservations(&self) -> Result<Vec<Reservation>, CniError> {
        let _lock = self.lock()?;
        self.scan()
    }

    /// GC: releases every reservation whose owner is not in `keep`.
    pub fn retain(&self, keep: &HashSet<(String, String)>) -> Result<Vec<IpAddr>, CniError> {
        let _lock = self.lock()?;
        self.remove_where(|r| !keep.contains(&(r.container_id.clone(), r.ifname.clone())))
    }

    fn remove_where(&self, remove: impl Fn(&Reservation) -> bool) -> Result<Vec<IpAddr>, CniError> {
        let mut released = Vec::new();
        for r in self.scan()?.into_iter().filter(|r| remove(r)) {
            let path = self.dir.join(r.ip.to_string());
            match std::fs::remove_file(&path) {
                Ok(()) => released.push(r.ip),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(CniError::io(format!("remove {}: {e}", path.display()))),
            }
        }
        Ok(released)
    }
}

fn allocation(range: &Range, ip: IpAddr) -> Allocation {
    Allocation {
        address: Cidr {
            addr: ip,
            prefix: range.subnet.prefix,
        },
        gateway: range.gateway,
    }
}

/// The address after `ip` in range `r`, wrapping to the next range's start.
fn next_position(set: &[Range], r: usize, ip: IpAddr) -> (usize, IpAddr) {
    if to_int(ip) < to_int(set[r].end) {
        (r, from_int(ip, to_int(ip) + 1))
    } else {
        let next = (r + 1) % set.len();
        (next, set[next].start)
    }
}

/// Matches each requested address to the range set containing it.
fn assign_requested(
    sets: &[Vec<Range>],
    requested: &[IpAddr],
) -> Result<Vec<Option<IpAddr>>, CniError> {
    let mut wanted = vec![None; sets.len()];
    for &ip in requested {
        let index = sets
            .iter()
            .position(|set| set.iter().any(|r| r.contains(ip)))
            .ok_or_else(|| CniError::env(format!("CNI_ARGS IP = {ip}: not inside any range")))?;
        if let Some(other) = wanted[index].replace(ip) {
            return Err(CniError::env(format!(
                "CNI_ARGS IP = {ip}: range set {index} already gets {other}"
            )));
        }
    }
    Ok(wanted)
}

#[cfg(test)]
pub(crate) mod tests;
