//! Multi-queue TAP devices with virtio-net headers, one [`TapQueue`] per
//! worker.
//!
//! Hand-written on `libc` because no crate does L2 TAP with
//! `TUNSETVNETHDRSZ`, `TUNSETOFFLOAD` and `IFF_MULTI_QUEUE` together (see
//! the research notes, A1); the shape follows cloud-hypervisor's
//! `net_util/tap.rs` and Firecracker's `tap.rs`: probe `TUNGETFEATURES`
//! first, wrap each ioctl once, say which step failed.
//!
//! Each frame is preceded by a 12-byte `virtio_net_hdr_v1`
//! ([`super::vnet`]): with offloads on, the pod's kernel hands us TCP
//! super-frames (up to 64 KiB) with a partial checksum and we may hand it
//! the same. Queue fds are non-blocking: the worker polls
//! [`PortQueue::poll_fd`] and reads until `EAGAIN`.
//!
//! Two kernel facts shape the API. `TUNSETIFF` looks the name up in the
//! netns the `/dev/net/tun` fd was *opened* in; and a queue fd stays
//! attached when its device moves to another netns. [`pod`] builds on
//! both: [`create_pod_tap`] opens the queues in the node netns and then
//! moves the device, [`attach_pod_tap`] opens them from inside the pod
//! netns.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::netlink::{NetlinkError, Rtnetlink, check_ifname};
use super::vnet::{self, VNET_HDR_LEN_V1};
use super::{DeviceDrops, PortQueue};
use crate::packet::{Batch, Frame, PortId};

mod pod;
pub mod tunnel_tx;

pub use pod::{
    PodPlacement, attach_pod_tap, create_pod_tap, delete_pod_tap, delete_tap, sync_pod_addressing,
};

/// Most queues one TAP may have (`MAX_TAP_QUEUES` in the kernel).
pub const MAX_QUEUES: usize = 256;
/// Offloads asked for with [`TapOptions::offload`]: partial checksums and
/// TCP segmentation (IPv4, IPv6, with ECN).
pub const OFFLOAD_FLAGS: libc::c_uint =
    libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN;
/// `TUNSETIFF` flags of every queue.
const QUEUE_FLAGS: libc::c_int =
    libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE;
const TUN_PATH: &CStr = c"/dev/net/tun";

/// How to open a TAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TapOptions {
    /// Number of queues (one per worker), 1..=[`MAX_QUEUES`].
    pub queues: usize,
    /// Ask the kernel for GSO super-frames and partial checksums
    /// ([`OFFLOAD_FLAGS`]); off, every frame arrives complete.
    pub offload: bool,
    /// Keep the device when the last queue closes (`TUNSETPERSIST`), so a
    /// restarted daemon can attach to it again.
    pub persist: bool,
}

impl Default for TapOptions {
    fn default() -> Self {
        TapOptions {
            queues: 1,
            offload: true,
            persist: false,
        }
    }
}

/// Why a TAP could not be opened or placed.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The queue count is out of range.
    #[error("TAP queue count {0} is not in 1..={MAX_QUEUES}")]
    BadQueueCount(usize),
    /// A device name the kernel would refuse.
    #[error("bad TAP name")]
    BadName(#[source] NetlinkError),
    /// `/dev/net/tun` could not be opened.
    #[error("opening /dev/net/tun")]
    OpenTun(#[source] io::Error),
    /// `TUNGETFEATURES` failed.
    #[error("reading the TUN driver's features (TUNGETFEATURES)")]
    GetFeatures(#[source] io::Error),
    /// The driver cannot prepend virtio-net headers.
    #[error("the kernel's TUN driver lacks IFF_VNET_HDR (features {0:#06x})")]
    VnetHdrUnsupported(libc::c_int),
    /// The driver cannot open several queues on one device.
    #[error("the kernel's TUN driver lacks IFF_MULTI_QUEUE (features {0:#06x})")]
    MultiQueueUnsupported(libc::c_int),
    /// A device called `name` already exists (creating).
    #[error("a network device named {0:?} already exists")]
    AlreadyExists(String),
    /// `name` exists but is not a multi-queue TAP with vnet headers (attaching).
    #[error("{0:?} is not a multi-queue vnet-header TAP")]
    NotAMultiQueueTap(String),
    /// No device called `name` (attaching).
    #[error("no TAP named {0:?}")]
    NoSuchTap(String),
    /// `TUNSETIFF` failed otherwise.
    #[error("attaching queue {queue} of TAP {name:?} (TUNSETIFF)")]
    SetIff {
        /// Device name.
        name: String,
        /// Queue number.
        queue: usize,
        /// OS error.
        #[source]
        source: io::Error,
    },
    /// `TUNSETVNETHDRSZ` failed.
    #[error("setting the vnet header size to {VNET_HDR_LEN_V1} (TUNSETVNETHDRSZ)")]
    SetVnetHdrSize(#[source] io::Error),
    /// `TUNSETOFFLOAD` failed.
    #[error("setting offload flags {0:#x} (TUNSETOFFLOAD)")]
    SetOffload(libc::c_uint, #[source] io::Error),
    /// `TUNSETPERSIST` failed.
    #[error("setting persist={0} (TUNSETPERSIST)")]
    SetPersist(bool, #[source] io::Error),
    /// `TUNGETIFF` failed.
    #[error("reading the TAP's name (TUNGETIFF)")]
    GetIff(#[source] io::Error),
    /// A netns could not be opened or entered.
    #[error("entering network namespace {path}")]
    Netns {
        /// The netns path.
        path: std::path::PathBuf,
        /// OS error.
        #[source]
        source: io::Error,
    },
    /// A netlink step of placing the TAP failed.
    #[error("{step}")]
    Netlink {
        /// What was being done.
        step: String,
        /// The netlink failure.
        #[source]
        source: NetlinkError,
    },
    /// The pod netns already has an interface with the wanted name.
    #[error("network namespace {netns} already has an interface named {ifname:?}")]
    PodInterfaceExists {
        /// The pod netns path.
        netns: std::path::PathBuf,
        /// The interface name.
        ifname: String,
    },
    /// The device changed under us while attaching (deleted and re-created).
    #[error("TAP {0:?} disappeared while attaching to it")]
    Vanished(String),
}

/// `struct ifreq` with the `ifr_flags` member of its union, which is all
/// the TUN ioctls use; padded to the kernel's size.
#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const _: () = assert!(size_of::<IfReqFlags>() == size_of::<libc::ifreq>());

impl IfReqFlags {
    fn new(name: &str, flags: libc::c_int) -> IfReqFlags {
        let mut req = IfReqFlags {
            name: [0; libc::IFNAMSIZ],
            // The kernel reads ifr_flags as a short; every TUN flag fits.
            flags: flags as libc::c_short,
            _pad: [0; 22],
        };
        for (dst, &src) in req
            .name
            .iter_mut()
            .zip(name.as_bytes().iter().take(libc::IFNAMSIZ - 1))
        {
            *dst = src as libc::c_char;
        }
        req
    }

    fn name(&self) -> String {
        let bytes: Vec<u8> = self
            .name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// `open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC)`.
fn open_tun() -> io::Result<OwnedFd> {
    // SAFETY: TUN_PATH is a NUL-terminated C string that outlives the call.
    let fd = unsafe {
        libc::open(
            TUN_PATH.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// An ioctl whose argument is a pointer to `arg`; the kernel may write it.
fn ioctl_with_mut_ref<T>(fd: RawFd, request: libc::Ioctl, arg: &mut T) -> io::Result<()> {
    // SAFETY: `arg` is a live, exclusively borrowed value of the type the
    // request reads or writes (each caller passes the type its request names).
    let rc = unsafe { libc::ioctl(fd, request, std::ptr::from_mut(arg)) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// An ioctl whose argument is a plain integer value.
fn ioctl_with_val(fd: RawFd, request: libc::Ioctl, arg: libc::c_ulong) -> io::Result<()> {
    // SAFETY: the request takes its argument by value; no memory is passed.
    let rc = unsafe { libc::ioctl(fd, request, arg) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `readv([hdr, buf])`.
fn readv_frame(fd: RawFd, hdr: &mut [u8; VNET_HDR_LEN_V1], buf: &mut [u8]) -> io::Result<usize> {
    let mut iov = [IoSliceMut::new(hdr), IoSliceMut::new(buf)];
    // SAFETY: IoSliceMut is ABI-compatible with iovec, and both slices are
    // live and exclusively borrowed for the call; the count matches the array.
    let n = unsafe { libc::readv(fd, iov.as_mut_ptr().cast(), iov.len() as libc::c_int) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `writev([hdr, data])`.
fn writev_frame(fd: RawFd, hdr: &[u8], data: &[u8]) -> io::Result<usize> {
    let iov = [IoSlice::new(hdr), IoSlice::new(data)];
    // SAFETY: IoSlice is ABI-compatible with iovec, and both slices are live
    // for the call; the count matches the array.
    let n = unsafe { libc::writev(fd, iov.as_ptr().cast(), iov.len() as libc::c_int) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
}

/// `TUNGETFEATURES` on a fresh `/dev/net/tun` fd.
fn tun_features(fd: RawFd) -> io::Result<libc::c_int> {
    let mut features: libc::c_uint = 0;
    ioctl_with_mut_ref(fd, libc::TUNGETFEATURES, &mut features)?;
    Ok(features as libc::c_int)
}

/// Whether [`open_queues`] makes the device or joins an existing one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OpenMode {
    /// The name must be free (`IFF_TUN_EXCL` on the first queue).
    Create,
    /// The device must exist.
    Attach,
}

/// Creates TAP `name` in the calling thread's netns and opens its queues.
/// Fails with [`TapError::AlreadyExists`] if any device has that name.
/// Without [`TapOptions::persist`], the device disappears with its last queue.
pub fn create_tap(name: &str, opts: &TapOptions) -> Result<Vec<TapQueue>, TapError> {
    open_queues(name, opts, OpenMode::Create)
}

/// Opens the queues of the existing TAP `name` in the calling thread's
/// netns (a persistent one, or one with queues open elsewhere) and applies
/// `opts` (offloads and persistence) to it.
pub fn attach_tap(name: &str, opts: &TapOptions) -> Result<Vec<TapQueue>, TapError> {
    open_queues(name, opts, OpenMode::Attach)
}

fn open_queues(name: &str, opts: &TapOptions, mode: OpenMode) -> Result<Vec<TapQueue>, TapError> {
    check_ifname(name).map_err(TapError::BadName)?;
    if opts.queues == 0 || opts.queues > MAX_QUEUES {
        return Err(TapError::BadQueueCount(opts.queues));
    }
    // TUNSETIFF creates a device that does not exist: make sure it does,
    // and that it is still the same device once the first queue is on.
    let attach_index = match mode {
        OpenMode::Create => None,
        OpenMode::Attach => Some(existing_index(name)?),
    };
    let mut queues = Vec::with_capacity(opts.queues);
    for queue in 0..opts.queues {
        let fd = open_queue(name, queue, mode)?;
        let tap = TapQueue {
            fd,
            offload: opts.offload,
            rx_errors: 0,
            rx_errors_taken: 0,
        };
        if queue == 0 && attach_index.is_some() && existing_index(name).ok() != attach_index {
            // We made a new, non-persistent device: it goes with this fd.
            return Err(TapError::Vanished(name.to_owned()));
        }
        queues.push(tap);
    }
    // Offloads and persistence belong to the device: set them once.
    let first = &queues[0];
    let offload = if opts.offload { OFFLOAD_FLAGS } else { 0 };
    ioctl_with_val(first.fd.as_raw_fd(), libc::TUNSETOFFLOAD, offload.into())
        .map_err(|e| TapError::SetOffload(offload, e))?;
    if opts.persist || mode == OpenMode::Attach {
        first.set_persist(opts.persist)?;
    }
    Ok(queues)
}

/// Opens `/dev/net/tun` and attaches it as queue `queue` of `name`, with
/// 12-byte vnet headers. The first queue probes the driver's features.
fn open_queue(name: &str, queue: usize, mode: OpenMode) -> Result<OwnedFd, TapError> {
    let fd = open_tun().map_err(TapError::OpenTun)?;
    if queue == 0 {
        let features = tun_features(fd.as_raw_fd()).map_err(TapError::GetFeatures)?;
        if features & libc::IFF_VNET_HDR == 0 {
            return Err(TapError::VnetHdrUnsupported(features));
        }
        if features & libc::IFF_MULTI_QUEUE == 0 {
            return Err(TapError::MultiQueueUnsupported(features));
        }
    }
    let exclusive = if mode == OpenMode::Create && queue == 0 {
        libc::IFF_TUN_EXCL
    } else {
        0
    };
    let mut req = IfReqFlags::new(name, QUEUE_FLAGS | exclusive);
    if let Err(source) = ioctl_with_mut_ref(fd.as_raw_fd(), libc::TUNSETIFF, &mut req) {
        return Err(match (source.raw_os_error(), mode) {
            (Some(libc::EBUSY), OpenMode::Create) => TapError::AlreadyExists(name.to_owned()),
            (Some(libc::EINVAL), OpenMode::Attach) => TapError::NotAMultiQueueTap(name.to_owned()),
            _ => TapError::SetIff {
                name: name.to_owned(),
                queue,
                source,
            },
        });
    }
    let mut hdr_len = VNET_HDR_LEN_V1 as libc::c_int;
    ioctl_with_mut_ref(fd.as_raw_fd(), libc::TUNSETVNETHDRSZ, &mut hdr_len)
        .map_err(TapError::SetVnetHdrSize)?;
    Ok(fd)
}

/// The index of device `name` in the calling thread's netns.
fn existing_index(name: &str) -> Result<u32, TapError> {
    let step = || format!("looking up TAP {name:?}");
    let mut nl = Rtnetlink::open().map_err(|source| TapError::Netlink {
        step: step(),
        source,
    })?;
    match nl.link_index(name) {
        Ok(index) => Ok(index),
        Err(e) if e.is_no_such_link() => Err(TapError::NoSuchTap(name.to_owned())),
        Err(source) => Err(TapError::Netlink {
            step: step(),
            source,
        }),
    }
}

/// One queue of a multi-queue TAP: a non-blocking fd with 12-byte vnet headers.
#[derive(Debug)]
pub struct TapQueue {
    fd: OwnedFd,
    offload: bool,
    rx_errors: u64,
    /// `rx_errors` when [`PortQueue::take_device_drops`] last ran.
    rx_errors_taken: u64,
}

impl TapQueue {
    /// A queue over `fd`, a TAP queue another process opened and handed
    /// over (`podswitchd run --takeover`): the device is set up already.
    pub fn from_fd(fd: OwnedFd, offload: bool) -> TapQueue {
        TapQueue {
            fd,
            offload,
            rx_errors: 0,
            rx_errors_taken: 0,
        }
    }

    /// A second descriptor of this queue (the same open queue), to hand
    /// over to the next process; frames queued in it stay queued.
    pub fn try_clone_fd(&self) -> io::Result<OwnedFd> {
        self.fd.try_clone()
    }

    /// Frames dropped on receive: a vnet header we cannot honour, or a
    /// frame shorter than the header or longer than the buffer.
    pub fn rx_errors(&self) -> u64 {
        self.rx_errors
    }

    /// Keeps (or no longer keeps) the device after its last queue closes.
    pub fn set_persist(&self, persist: bool) -> Result<(), TapError> {
        ioctl_with_val(self.fd.as_raw_fd(), libc::TUNSETPERSIST, persist.into())
            .map_err(|e| TapError::SetPersist(persist, e))
    }

    /// The device's current name (it follows renames, in whatever netns the device is).
    pub fn ifname(&self) -> Result<String, TapError> {
        let mut req = IfReqFlags::new("", 0);
        ioctl_with_mut_ref(self.fd.as_raw_fd(), libc::TUNGETIFF, &mut req)
            .map_err(TapError::GetIff)?;
        Ok(req.name())
    }

    /// Makes the device go away once every queue is closed: clears persist
    /// and drops this queue.
    pub fn destroy(self) -> Result<(), TapError> {
        self.set_persist(false)
    }

    /// Reads one frame into `frame`; `Ok(false)` when it must be dropped.
    fn read_one(&mut self, frame: &mut Frame) -> io::Result<bool> {
        let mut hdr = [0u8; VNET_HDR_LEN_V1];
        let buf = frame.reset_for_rx();
        let room = buf.len();
        let n = readv_frame(self.fd.as_raw_fd(), &mut hdr, buf)?;
        // A frame that fills the buffer may have been cut short.
        let Some(len) = n.checked_sub(VNET_HDR_LEN_V1).filter(|&len| len < room) else {
            self.rx_errors += 1;
            return Ok(false);
        };
        match vnet::decode(&hdr) {
            Ok(offload) => frame.offload = offload,
            Err(_) => {
                self.rx_errors += 1;
                return Ok(false);
            }
        }
        Ok(frame.set_len(len))
    }
}

impl PortQueue for TapQueue {
    fn poll_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn handover_fd(&self) -> Option<OwnedFd> {
        self.try_clone_fd().ok()
    }

    fn recv_batch(&mut self, batch: &mut Batch, port: PortId, now_ns: u64) -> io::Result<usize> {
        let mut received = 0;
        // Dropped frames use up reads too: one call never reads more than a batch.
        for _ in 0..batch.rx_capacity() {
            let Some(frame) = batch.rx_slot() else { break };
            match self.read_one(frame) {
                Ok(true) => {
                    frame.in_port = port;
                    frame.timestamp_ns = now_ns;
                    batch.commit_rx();
                    received += 1;
                }
                Ok(false) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Report the error on the next call, once these frames are processed.
                Err(_) if received > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(received)
    }

    /// Writes the frame with its vnet header. `WouldBlock` when the socket
    /// buffer is full: the caller counts a drop. The kernel takes GSO and
    /// partial-checksum frames whatever `TUNSETOFFLOAD` said (that only
    /// governs what it hands us).
    fn send(&mut self, frame: &Frame) -> io::Result<()> {
        let mut hdr = [0u8; VNET_HDR_LEN_V1];
        vnet::encode(&frame.offload, &mut hdr);
        let n = writev_frame(self.fd.as_raw_fd(), &hdr, frame.data())?;
        if n != VNET_HDR_LEN_V1 + frame.len() {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "short TAP write"));
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn accepts_offload(&self) -> bool {
        self.offload
    }

    /// A queue whose device was deleted is detached: it polls as an error
    /// and every read fails with `EBADFD`, until the fd is closed.
    fn device_gone(&self, error: &io::Error) -> Option<&'static str> {
        (error.raw_os_error() == Some(libc::EBADFD)).then_some("the TAP was deleted")
    }

    /// The frames [`TapQueue::rx_errors`] counted since the last call (the
    /// kernel's own drops toward a full TAP queue are the pod's tx_dropped).
    fn take_device_drops(&mut self) -> DeviceDrops {
        let errors = self.rx_errors - self.rx_errors_taken;
        self.rx_errors_taken = self.rx_errors;
        DeviceDrops {
            errors,
            ..DeviceDrops::default()
        }
    }
}

#[cfg(test)]
mod tests;
