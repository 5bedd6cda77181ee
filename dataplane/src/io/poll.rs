//! Waiting for any of a worker's queues to become readable.
#![allow(unsafe_code)]

use std::os::fd::RawFd;

/// A reusable `poll(2)` set.
#[derive(Debug, Default)]
pub struct PollSet {
    fds: Vec<libc::pollfd>,
}

impl PollSet {
    /// A set over `fds`, all polled for readability.
    pub fn new(fds: &[RawFd]) -> PollSet {
        PollSet {
            fds: fds
                .iter()
                .map(|&fd| libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                })
                .collect(),
        }
    }

    /// Waits up to `timeout_ms` for readability; returns how many fds are ready.
    /// EINTR counts as a timeout.
    pub fn wait(&mut self, timeout_ms: i32) -> std::io::Result<usize> {
        for p in &mut self.fds {
            p.revents = 0;
        }
        let n = self.fds.len() as libc::nfds_t;
        // SAFETY: `fds` is a valid, exclusively borrowed array of `n` pollfd structs for the whole call.
        let rc = unsafe { libc::poll(self.fds.as_mut_ptr(), n, timeout_ms) };
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            return if err.kind() == std::io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(err)
            };
        }
        Ok(usize::try_from(rc).unwrap_or(0))
    }

    /// True when fd number `i` (in construction order) polled with an error at the last wait.
    #[inline]
    pub fn has_error(&self, i: usize) -> bool {
        self.fds
            .get(i)
            .is_some_and(|p| p.revents & libc::POLLERR != 0)
    }

    /// True when fd number `i` (in construction order) was readable (or hung up) at the last wait.
    #[inline]
    pub fn is_ready(&self, i: usize) -> bool {
        self.fds
            .get(i)
            .is_some_and(|p| p.revents & (libc::POLLIN | libc::POLLERR | libc::POLLHUP) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    #[test]
    fn readiness() {
        let (mut a, b) = UnixStream::pair().unwrap();
        let mut set = PollSet::new(&[b.as_raw_fd()]);
        assert_eq!(set.wait(0).unwrap(), 0);
        assert!(!set.is_ready(0));
        a.write_all(b"x").unwrap();
        assert_eq!(set.wait(1000).unwrap(), 1);
        assert!(set.is_ready(0));
        assert!(!set.is_ready(7));
    }
}
