//! TAP tests on real devices in throw-away namespaces (root only; they
//! print why and pass otherwise). A "node" netns stands in for the host,
//! so nothing is created in the namespace the tests run in. The pod's own
//! kernel is the peer: it answers ARP and ping, and runs TCP over the TAP.
//! `etherparse` builds the frames we inject and checks what comes back.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use etherparse::{
    ArpEthIpv4Packet, ArpOperation, ArpPacket, Icmpv4Type, NetSlice, PacketBuilder, SlicedPacket,
    TcpOptionElement, TransportSlice,
};

use super::*;
use crate::io::netns::run_in_netns;
use crate::io::netns::testing::{TestNetns, can_build_namespaces};
use crate::packet::{GsoKind, MAX_FRAME_LEN, Offload};
use crate::wire::ethernet::MacAddr;

const POD_MAC: MacAddr = MacAddr([0x02, 0x50, 0, 0, 0, 0x02]);
const GW_MAC: [u8; 6] = [0x02, 0x50, 0, 0, 0, 0x01];
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const GW_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const NODE_NAME: &str = "podtap0";
const WAIT: Duration = Duration::from_secs(5);

fn placement(pod: &TestNetns, mtu: u16) -> PodPlacement {
    PodPlacement {
        netns: pod.path.clone(),
        ifname: "eth0".into(),
        mac: POD_MAC,
        mtu,
        addresses: vec![(POD_IP, 24)],
        gateway: Some(GW_IP),
        routes: vec![(Ipv4Addr::new(192, 0, 2, 0), 24, Some(GW_IP))],
    }
}

fn opts(queues: usize, persist: bool) -> TapOptions {
    TapOptions {
        queues,
        offload: true,
        persist,
    }
}

/// `create_pod_tap` as the daemon runs it: from a thread in the node netns.
fn create_from_node(
    node: &TestNetns,
    opts: &TapOptions,
    placement: &PodPlacement,
) -> Result<Vec<TapQueue>, TapError> {
    run_in_netns(&node.path, || create_pod_tap(NODE_NAME, opts, placement))
        .expect("entering the node netns")
}

/// Names of the links in a netns.
fn link_names(ns: &TestNetns) -> Vec<String> {
    let links = ns.ip_json(&["link", "show"]);
    links
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_owned())
        .collect()
}

/// True when `ns` has the IPv4 route `dst` on eth0, via `gateway` if given.
fn has_route(ns: &TestNetns, dst: &str, gateway: Option<&str>) -> bool {
    let routes = ns.ip_json(&["-4", "route", "show"]);
    routes
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["dst"] == dst && r["dev"] == "eth0" && r["gateway"].as_str() == gateway)
}

/// Waits until one of `fds` is readable or `timeout` passes.
fn poll_readable(fds: &[RawFd], timeout: Duration) {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.as_millis().clamp(1, 1000) as libc::c_int;
    // SAFETY: `pfds` is a live array of `pfds.len()` pollfd structs.
    unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
}

/// The far side of the pod's TAP: what the dataplane would be.
struct Peer {
    queues: Vec<TapQueue>,
    batch: Batch,
    pending: VecDeque<(Vec<u8>, Offload)>,
    out: Frame,
}

impl Peer {
    fn new(queues: Vec<TapQueue>) -> Peer {
        Peer {
            queues,
            batch: Batch::with_size(8, MAX_FRAME_LEN),
            pending: VecDeque::new(),
            out: Frame::with_capacity(MAX_FRAME_LEN),
        }
    }

    /// The next frame from any queue (the pod's kernel picks the queue).
    fn recv(&mut self, timeout: Duration) -> Option<(Vec<u8>, Offload)> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(frame) = self.pending.pop_front() {
                return Some(frame);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            let fds: Vec<RawFd> = self.queues.iter().map(|q| q.poll_fd()).collect();
            poll_readable(&fds, left);
            for (i, queue) in self.queues.iter_mut().enumerate() {
                let port = PortId(i as u16);
                self.batch.clear();
                queue
                    .recv_batch(&mut self.batch, port, 4242)
                    .expect("recv_batch");
                for (frame, _) in self.batch.iter() {
                    assert_eq!((frame.in_port, frame.timestamp_ns), (port, 4242));
                    self.pending
                        .push_back((frame.data().to_vec(), frame.offload));
                }
            }
        }
    }

    /// The next frame `pick` accepts, skipping the pod's IPv6 chatter.
    fn recv_matching<T>(&mut self, mut pick: impl FnMut(&[u8], Offload) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (bytes, offload) = self
                .recv(left)
                .expect("no matching frame from the pod in time");
            if let Some(found) = pick(&bytes, offload) {
                return found;
            }
        }
    }

    fn send(&mut self, bytes: &[u8], offload: Offload) {
        assert!(self.out.fill(bytes));
        self.out.offload = offload;
        self.queues[0].send(&self.out).expect("TAP send");
    }

    /// Sends an ARP request for the pod's address and returns the pod's MAC from the reply.
    fn arp_pod(&mut self) -> [u8; 6] {
        let arp = ArpEthIpv4Packet {
            operation: ArpOperation::REQUEST,
            sender_mac: GW_MAC,
            sender_ipv4: GW_IP.octets(),
            target_mac: [0; 6],
            target_ipv4: POD_IP.octets(),
        };
        let mut bytes = Vec::new();
        PacketBuilder::ethernet2(GW_MAC, [0xff; 6])
            .arp(ArpPacket::from(arp))
            .write(&mut bytes)
            .unwrap();
        self.send(&bytes, Offload::default());
        self.recv_matching(|bytes, offload| {
            let reply = parse_arp(bytes)?;
            (reply.operation == ArpOperation::REPLY && reply.sender_ipv4 == POD_IP.octets()).then(
                || {
                    assert_eq!(offload, Offload::default());
                    assert_eq!(reply.target_mac, GW_MAC);
                    assert_eq!(&bytes[..6], &GW_MAC);
                    reply.sender_mac
                },
            )
        })
    }

    /// Pings the pod from `src` and waits for the echo reply.
    fn ping_pod(&mut self, src: Ipv4Addr, seq: u16) {
        let mut bytes = Vec::new();
        PacketBuilder::ethernet2(GW_MAC, POD_MAC.octets())
            .ipv4(src.octets(), POD_IP.octets(), 64)
            .icmpv4_echo_request(0x5053, seq)
            .write(&mut bytes, b"podswitch tap test")
            .unwrap();
        self.send(&bytes, Offload::default());
        self.recv_matching(|bytes, offload| {
            let p = SlicedPacket::from_ethernet(bytes).ok()?;
            let Some(NetSlice::Ipv4(ip)) = &p.net else {
                return None;
            };
            let Some(TransportSlice::Icmpv4(icmp)) = &p.transport else {
                return None;
            };
            let Icmpv4Type::EchoReply(echo) = icmp.icmp_type() else {
                return None;
            };
            assert_eq!((echo.id, echo.seq), (0x5053, seq));
            assert_eq!(icmp.payload(), b"podswitch tap test");
            assert_eq!(ip.header().destination_addr(), src);
            // To the gateway's MAC, also for a source behind the gateway.
            assert_eq!(&bytes[..6], &GW_MAC);
            assert_eq!(offload.gso, GsoKind::None);
            Some(())
        });
    }
}

fn parse_arp(bytes: &[u8]) -> Option<ArpEthIpv4Packet> {
    let p = SlicedPacket::from_ethernet(bytes).ok()?;
    let Some(NetSlice::Arp(arp)) = p.net else {
        return None;
    };
    arp.to_packet().try_eth_ipv4().ok()
}

/// `ETHTOOL_GTSO` on `ifname`, from inside `netns`.
fn tso_enabled(netns: &TestNetns, ifname: &str) -> bool {
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    #[repr(C)]
    struct IfReqData {
        name: [libc::c_char; libc::IFNAMSIZ],
        data: *mut EthtoolValue,
        _pad: [u8; 16],
    }
    const ETHTOOL_GTSO: u32 = 0x1e;
    run_in_netns(&netns.path, || {
        let mut value = EthtoolValue {
            cmd: ETHTOOL_GTSO,
            data: 0,
        };
        let mut req = IfReqData {
            name: [0; libc::IFNAMSIZ],
            data: &raw mut value,
            _pad: [0; 16],
        };
        for (d, &s) in req.name.iter_mut().zip(ifname.as_bytes()) {
            *d = s as libc::c_char;
        }
        // SAFETY: plain socket(2) call; the fd is closed below.
        let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        assert!(sock >= 0, "socket: {}", io::Error::last_os_error());
        // SAFETY: `req` and the `value` it points to live across the call,
        // laid out as struct ifreq and struct ethtool_value.
        let rc = unsafe { libc::ioctl(sock, libc::SIOCETHTOOL as libc::Ioctl, &raw mut req) };
        let err = io::Error::last_os_error();
        // SAFETY: `sock` is our own open fd, closed once.
        unsafe { libc::close(sock) };
        assert_eq!(rc, 0, "SIOCETHTOOL: {err}");
        value.data != 0
    })
    .unwrap()
}

#[test]
fn pod_tap_is_placed_configured_and_carries_arp_and_ping() {
    if !can_build_namespaces("pod_tap_is_placed_configured_and_carries_arp_and_ping") {
        return;
    }
    let node = TestNetns::new("node");
    let pod = TestNetns::new("pod");
    let place = placement(&pod, 1400);
    let queues = create_from_node(&node, &opts(2, false), &place).unwrap();
    assert_eq!(queues.len(), 2);
    assert!(queues.iter().all(|q| q.accepts_offload()));
    assert_eq!(queues[1].ifname().unwrap(), "eth0");

    // Gone from the node, present in the pod with everything set.
    assert_eq!(link_names(&node), ["lo"]);
    let link = &pod.ip_json(&["link", "show", "eth0"])[0];
    assert_eq!(link["address"], "02:50:00:00:00:02");
    assert_eq!(link["mtu"], 1400);
    assert!(
        link["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
        "{link}"
    );
    let addrs = pod.ip(&["-4", "addr", "show", "dev", "eth0"]);
    assert!(
        addrs.contains("inet 10.77.0.2/24 brd 10.77.0.255"),
        "{addrs}"
    );
    let routes = pod.ip(&["-4", "route", "show"]);
    assert!(has_route(&pod, "default", Some("10.77.0.1")), "{routes}");
    assert!(
        has_route(&pod, "192.0.2.0/24", Some("10.77.0.1")),
        "{routes}"
    );
    assert!(has_route(&pod, "10.77.0.0/24", None), "{routes}");
    // The gateway is on-link: no host route for it.
    assert!(!has_route(&pod, "10.77.0.1", None), "{routes}");
    assert!(
        tso_enabled(&pod, "eth0"),
        "TUNSETOFFLOAD should turn TSO on"
    );
    let mac = run_in_netns(&pod.path, || {
        let mut nl = crate::io::netlink::Rtnetlink::open().unwrap();
        let index = nl.link_index("eth0").unwrap();
        nl.link_mac(index).unwrap()
    })
    .unwrap();
    assert_eq!(mac, POD_MAC);

    let mut peer = Peer::new(queues);
    assert_eq!(peer.arp_pod(), POD_MAC.octets());
    peer.ping_pod(GW_IP, 1);
    // From behind the gateway: the reply takes the default route.
    peer.ping_pod(Ipv4Addr::new(198, 51, 100, 7), 2);
    assert!(peer.queues.iter().all(|q| q.rx_errors() == 0));
}

#[test]
fn gateway_outside_the_prefix_gets_an_on_link_route() {
    if !can_build_namespaces("gateway_outside_the_prefix_gets_an_on_link_route") {
        return;
    }
    let node = TestNetns::new("node");
    let pod = TestNetns::new("pod");
    let mut place = placement(&pod, 1500);
    place.addresses = vec![(POD_IP, 32)];
    place.routes.clear();
    let queues = create_from_node(&node, &opts(1, false), &place).unwrap();
    let routes = pod.ip(&["-4", "route", "show"]);
    assert!(has_route(&pod, "10.77.0.1", None), "{routes}");
    assert!(has_route(&pod, "default", Some("10.77.0.1")), "{routes}");
    let mut peer = Peer::new(queues);
    // The gateway is outside the pod's /32, yet on-link: ARP and the route back work.
    assert_eq!(peer.arp_pod(), POD_MAC.octets());
    peer.ping_pod(Ipv4Addr::new(198, 51, 100, 7), 1);
}

#[test]
fn persistent_tap_outlives_its_queues_and_is_attached_again() {
    if !can_build_namespaces("persistent_tap_outlives_its_queues_and_is_attached_again") {
        return;
    }
    let node = TestNetns::new("node");
    let pod = TestNetns::new("pod");
    let place = placement(&pod, 1500);
    let queues = create_from_node(&node, &opts(2, true), &place).unwrap();
    drop(queues);

    // The daemon "restarts": the device and its addresses are still there.
    assert!(link_names(&pod).contains(&"eth0".to_owned()));
    let queues = attach_pod_tap(&opts(2, true), &place).unwrap();
    assert_eq!(queues.len(), 2);
    let addrs = pod.ip(&["-4", "addr", "show", "dev", "eth0"]);
    assert_eq!(addrs.matches("inet ").count(), 1, "{addrs}");
    // Losing the carrier (no queue open) does not take the routes away.
    assert!(has_route(&pod, "default", Some("10.77.0.1")));
    let mut peer = Peer::new(queues);
    assert_eq!(peer.arp_pod(), POD_MAC.octets());
    peer.ping_pod(GW_IP, 7);
    peer.ping_pod(Ipv4Addr::new(198, 51, 100, 7), 8);

    // Deleting while the daemon still holds queues: the link goes anyway.
    delete_pod_tap(&place).unwrap();
    assert!(!link_names(&pod).contains(&"eth0".to_owned()));
    let err = peer.queues[0].send(&Frame::with_capacity(64)).unwrap_err();
    eprintln!("send on a queue of a deleted TAP: {err:?}");
    delete_pod_tap(&place).unwrap();
    assert!(matches!(
        attach_pod_tap(&opts(1, true), &place),
        Err(TapError::NoSuchTap(_))
    ));
    // Attaching to a missing name did not create one.
    assert!(!link_names(&pod).contains(&"eth0".to_owned()));
}

#[test]
fn existing_pod_interface_is_refused_and_nothing_is_left_behind() {
    if !can_build_namespaces("existing_pod_interface_is_refused_and_nothing_is_left_behind") {
        return;
    }
    let node = TestNetns::new("node");
    let pod = TestNetns::new("pod");
    pod.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth0peer",
    ]);
    let place = placement(&pod, 1500);
    let err = create_from_node(&node, &opts(2, true), &place).unwrap_err();
    assert!(
        matches!(err, TapError::PodInterfaceExists { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("already has an interface named \"eth0\""),
        "{err}"
    );
    assert_eq!(link_names(&node), ["lo"]);
    // A veth called eth0 is no TAP: neither attached to nor deleted.
    let err = delete_pod_tap(&place).unwrap_err();
    assert!(matches!(err, TapError::NotAMultiQueueTap(_)), "{err:?}");
    let eth0 = &pod.ip_json(&["-d", "link", "show", "eth0"])[0];
    assert_eq!(eth0["linkinfo"]["info_kind"], "veth");
}

#[test]
fn a_failure_after_the_move_removes_the_device() {
    if !can_build_namespaces("a_failure_after_the_move_removes_the_device") {
        return;
    }
    let node = TestNetns::new("node");
    let pod = TestNetns::new("pod");
    let mut place = placement(&pod, 1500);
    // The last step fails: this gateway is not reachable from the pod.
    place.routes = vec![(
        Ipv4Addr::new(192, 0, 2, 0),
        24,
        Some(Ipv4Addr::new(172, 31, 0, 1)),
    )];
    let err = create_from_node(&node, &opts(2, true), &place).unwrap_err();
    let TapError::Netlink { step, source } = &err else {
        panic!("{err:?}")
    };
    assert!(step.starts_with("adding a route"), "{step}");
    assert_eq!(source.raw_os_error(), Some(libc::ENETUNREACH), "{source}");
    assert_eq!(link_names(&node), ["lo"]);
    assert_eq!(link_names(&pod), ["lo"]);
}

#[test]
fn open_errors_are_precise() {
    if !can_build_namespaces("open_errors_are_precise") {
        return;
    }
    let ns = TestNetns::new("errs");
    ns.ip(&["tuntap", "add", "mode", "tap", "name", "single0"]);
    run_in_netns(&ns.path, || {
        let first = create_tap("dup0", &opts(1, false)).unwrap();
        assert!(matches!(
            create_tap("dup0", &opts(1, false)),
            Err(TapError::AlreadyExists(_))
        ));
        assert!(matches!(
            create_tap("lo", &opts(1, false)),
            Err(TapError::AlreadyExists(_))
        ));
        // A second opener joins the device while the first holds it.
        let plain = TapOptions {
            offload: false,
            ..opts(3, false)
        };
        let more = attach_tap("dup0", &plain).unwrap();
        assert!(!more[0].accepts_offload());
        drop((first, more));
        // The kernel unregisters a TAP whose last queue closed asynchronously;
        // under load the link can outlive the close by a moment.
        wait_link_gone("dup0");
        assert!(matches!(
            attach_tap("dup0", &opts(1, false)),
            Err(TapError::NoSuchTap(_))
        ));
        assert!(matches!(
            attach_tap("lo", &opts(1, false)),
            Err(TapError::NotAMultiQueueTap(_))
        ));
        assert!(matches!(
            attach_tap("single0", &opts(1, false)),
            Err(TapError::NotAMultiQueueTap(_))
        ));
        assert!(matches!(
            create_tap("x", &opts(0, false)),
            Err(TapError::BadQueueCount(0))
        ));
        assert!(matches!(
            create_tap("x", &opts(MAX_QUEUES + 1, false)),
            Err(TapError::BadQueueCount(_))
        ));
        assert!(matches!(
            create_tap("this-name-is-too-long", &opts(1, false)),
            Err(TapError::BadName(_))
        ));
    })
    .unwrap();
    assert_eq!(link_names(&ns).len(), 2, "only lo and single0 remain");
}

#[test]
fn truncated_frames_are_counted_and_dropped() {
    if !can_build_namespaces("truncated_frames_are_counted_and_dropped") {
        return;
    }
    let node = TestNetns::new("node");
    let pod = TestNetns::new("pod");
    let queues = create_from_node(&node, &opts(1, false), &placement(&pod, 1500)).unwrap();
    let mut peer = Peer::new(queues);
    // A full batch reads nothing.
    let mut full = Batch::with_size(1, 64);
    assert!(full.push_rx(PortId(0), 0, &[0; 60]));
    assert_eq!(
        peer.queues[0].recv_batch(&mut full, PortId(0), 0).unwrap(),
        0
    );
    // The ARP request teaches the pod our MAC; then a 1000-byte echo
    // reply meets 200-byte buffers.
    peer.arp_pod();
    let mut bytes = Vec::new();
    PacketBuilder::ethernet2(GW_MAC, POD_MAC.octets())
        .ipv4(GW_IP.octets(), POD_IP.octets(), 64)
        .icmpv4_echo_request(1, 1)
        .write(&mut bytes, &[0x33; 1000])
        .unwrap();
    peer.send(&bytes, Offload::default());
    let mut small = Batch::with_size(4, 200);
    let deadline = Instant::now() + WAIT;
    while peer.queues[0].rx_errors() == 0 && Instant::now() < deadline {
        poll_readable(&[peer.queues[0].poll_fd()], Duration::from_millis(100));
        small.clear();
        peer.queues[0].recv_batch(&mut small, PortId(0), 0).unwrap();
        assert!(small.iter().all(|(f, _)| f.len() < 200));
    }
    assert_eq!(peer.queues[0].rx_errors(), 1);
}

/// Ones-complement sum of `bytes` (big-endian words), not folded.
fn sum16(bytes: &[u8]) -> u64 {
    bytes
        .chunks(2)
        .map(|c| u64::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)])))
        .sum()
}

fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// Builds an Ethernet/IPv4/TCP frame from the gateway's port 5001 to the pod.
fn tcp_to_pod(pod_port: u16, seq: u32, ack: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(GW_MAC, POD_MAC.octets())
        .ipv4(GW_IP.octets(), POD_IP.octets(), 64)
        .tcp(5001, pod_port, seq, 65535);
    let b = if syn {
        b.syn()
            .options(&[TcpOptionElement::MaximumSegmentSize(1460)])
            .unwrap()
    } else {
        b.psh()
    };
    let mut bytes = Vec::new();
    b.ack(ack).write(&mut bytes, payload).unwrap();
    bytes
}

/// The pod's kernel runs TCP over the TAP: it hands us a TSO super-frame
/// with a partial checksum, and takes one from us.
#[test]
fn tcp_super_frames_both_ways() {
    if !can_build_namespaces("tcp_super_frames_both_ways") {
        return;
    }
    const UP_LEN: usize = 20_000;
    const DOWN_LEN: usize = 20_000;
    let pattern = |len: usize, k: u8| (0..len).map(|i| (i % 251) as u8 ^ k).collect::<Vec<u8>>();
    let node = TestNetns::new("node");
    let pod = TestNetns::new("pod");
    let place = placement(&pod, 1500);
    let queues = create_from_node(&node, &opts(1, false), &place).unwrap();
    let mut peer = Peer::new(queues);

    let pod_path = pod.path.clone();
    let up = pattern(UP_LEN, 0x5a);
    let client = std::thread::spawn(move || {
        run_in_netns(&pod_path, move || -> io::Result<Vec<u8>> {
            let mut s = TcpStream::connect_timeout(&SocketAddr::from((GW_IP, 5001)), WAIT)?;
            s.set_read_timeout(Some(WAIT))?;
            s.set_write_timeout(Some(WAIT))?;
            s.write_all(&up)?;
            let mut down = vec![0u8; DOWN_LEN];
            s.read_exact(&mut down)?;
            Ok(down)
        })
    });

    let my_isn = 7_000_000u32;
    let mut pod_port = 0;
    let mut expected = 0u32;
    let mut uploaded = Vec::new();
    let mut super_frames = Vec::new();
    let deadline = Instant::now() + WAIT;
    while uploaded.len() < UP_LEN {
        let left = deadline.saturating_duration_since(Instant::now());
        let (mut bytes, offload) = peer.recv(left).expect("TCP upload did not finish in time");
        if let Some(arp) = parse_arp(&bytes) {
            if arp.operation == ArpOperation::REQUEST && arp.target_ipv4 == GW_IP.octets() {
                let reply = ArpEthIpv4Packet {
                    operation: ArpOperation::REPLY,
                    sender_mac: GW_MAC,
                    sender_ipv4: GW_IP.octets(),
                    target_mac: arp.sender_mac,
                    target_ipv4: arp.sender_ipv4,
                };
                let mut out = Vec::new();
                PacketBuilder::ethernet2(GW_MAC, arp.sender_mac)
                    .arp(ArpPacket::from(reply))
                    .write(&mut out)
                    .unwrap();
                peer.send(&out, Offload::default());
            }
            continue;
        }
        if let Some((start, offset)) = offload.csum {
            // Complete the partial checksum the way a NIC would.
            let (start, at) = (usize::from(start), usize::from(start + offset));
            let seed = u16::from_be_bytes([bytes[at], bytes[at + 1]]);
            bytes[at..at + 2].copy_from_slice(&[0, 0]);
            let sum = !fold(sum16(&bytes[start..]) + u64::from(seed));
            bytes[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        }
        let Ok(p) = SlicedPacket::from_ethernet(&bytes) else {
            continue;
        };
        let (Some(NetSlice::Ipv4(ip)), Some(TransportSlice::Tcp(tcp))) = (&p.net, &p.transport)
        else {
            continue;
        };
        if tcp.destination_port() != 5001 {
            continue;
        }
        let oracle = tcp
            .calc_checksum_ipv4(ip.header().source(), ip.header().destination())
            .unwrap();
        assert_eq!(
            tcp.checksum(),
            oracle,
            "TCP checksum (completed if partial), offload {offload:?}"
        );
        if tcp.syn() {
            pod_port = tcp.source_port();
            expected = tcp.sequence_number().wrapping_add(1);
            let synack = tcp_to_pod(pod_port, my_isn, expected, true, &[]);
            peer.send(&synack, Offload::default());
            continue;
        }
        if offload.gso != GsoKind::None {
            let mut hdr = [0u8; VNET_HDR_LEN_V1];
            vnet::encode(&offload, &mut hdr);
            eprintln!(
                "TSO frame from the pod: {} bytes, vnet header {hdr:02x?}, {offload:?}",
                bytes.len()
            );
            super_frames.push((bytes.len(), offload));
        }
        if tcp.sequence_number() == expected && !tcp.payload().is_empty() {
            uploaded.extend_from_slice(tcp.payload());
            expected = expected.wrapping_add(tcp.payload().len() as u32);
        }
        let ack = tcp_to_pod(pod_port, my_isn.wrapping_add(1), expected, false, &[]);
        peer.send(&ack, Offload::default());
    }
    assert_eq!(uploaded, pattern(UP_LEN, 0x5a));
    let (len, tso) = *super_frames
        .first()
        .expect("the pod sent no TSO super-frame");
    assert_eq!(tso.gso, GsoKind::TcpV4);
    assert_eq!(tso.gso_size, 1460);
    assert_eq!(tso.csum, Some((34, 16)));
    assert!(
        len > 1514,
        "a super-frame is longer than one segment: {len}"
    );

    // Down: one 20 000-byte super-frame, partial checksum, cut by the pod's kernel.
    let mut down = tcp_to_pod(
        pod_port,
        my_isn.wrapping_add(1),
        expected,
        false,
        &pattern(DOWN_LEN, 0xa5),
    );
    let tcp_len = down.len() - 34;
    let pseudo = sum16(&GW_IP.octets()) + sum16(&POD_IP.octets()) + 6 + tcp_len as u64;
    down[50..52].copy_from_slice(&fold(pseudo).to_be_bytes());
    let gso = Offload {
        gso: GsoKind::TcpV4,
        gso_size: 1460,
        hdr_len: 54,
        csum: Some((34, 16)),
        csum_valid: false,
    };
    peer.send(&down, gso);
    let got = client
        .join()
        .unwrap()
        .unwrap()
        .expect("pod-side TCP client");
    assert_eq!(got, pattern(DOWN_LEN, 0xa5));
}

/// Waits (at most 5 s) until no link named `name` exists in this thread's netns.
fn wait_link_gone(name: &str) {
    let mut nl = crate::io::netlink::Rtnetlink::open().expect("rtnetlink");
    let deadline = Instant::now() + Duration::from_secs(5);
    while nl.link_index(name).is_ok() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}
