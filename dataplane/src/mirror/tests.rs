use std::sync::Arc;

use super::bpf::{Insn, Program};
use super::*;
use crate::io::PcapReader;
use crate::packet::{DropReason, PortId, Verdict};

/// A session spec without filter, at the full snap length (also for the
/// pipeline's and the overlay's mirror tests).
pub(crate) fn spec(ports: PortSelection, stages: &[MirrorStage]) -> SessionSpec {
    SessionSpec {
        ports,
        stages: stages.to_vec(),
        filter: None,
        snaplen: MAX_SNAPLEN,
    }
}

/// A session named `name` over [`spec`], with a 16-record queue of
/// 2,048-byte frames: what the pipeline's and the overlay's mirror tests
/// attach.
pub(crate) fn session(
    name: &str,
    ports: PortSelection,
    stages: &[MirrorStage],
) -> (Arc<MirrorQueue>, Arc<Session>) {
    let queue = Arc::new(MirrorQueue::new(16, 2048));
    let session = Arc::new(Session::new(name, spec(ports, stages), Arc::clone(&queue)));
    (queue, session)
}

fn drain(queue: &MirrorQueue) -> Vec<(Vec<u8>, MirrorNote)> {
    let mut out = Vec::new();
    while let Some(r) = queue.pop() {
        out.push((r.data().to_vec(), r.note));
        queue.recycle(r);
    }
    out
}

#[test]
fn stage_names_round_trip() {
    for s in MirrorStage::ALL {
        assert_eq!(MirrorStage::from_name(s.as_str()), Some(s));
    }
    assert_eq!(MirrorStage::from_name("middle"), None);
    let bits: u8 = MirrorStage::ALL.iter().fold(0, |m, s| m | s.bit());
    assert_eq!(bits.count_ones(), 7);
}

#[test]
fn queue_drops_when_the_consumer_is_behind_and_recycles() {
    let q = MirrorQueue::new(2, 8);
    let note = MirrorNote::new(MirrorStage::Ingress, PortId(1));
    assert!(q.push(&[1; 20], 20, 5, note));
    assert!(q.push(&[2; 3], 3, 6, note));
    assert!(!q.push(&[3; 3], 3, 7, note), "no free buffer left");
    let r = q.pop().unwrap();
    assert_eq!(
        (r.data(), r.orig_len, r.timestamp_ns),
        (&[1u8; 8][..], 20, 5)
    );
    q.recycle(r);
    assert!(q.push(&[4; 2], 2, 8, note));
    assert_eq!(q.pending(), 2);
}

#[test]
fn view_follows_the_registry_and_sessions_select() {
    let registry = MirrorRegistry::default();
    let mut view = MirrorView::default();
    view.sync(&registry);
    assert!(MirrorStage::ALL.iter().all(|s| !view.active(*s)));

    let queue = Arc::new(MirrorQueue::new(8, 64));
    let session = Arc::new(Session::new(
        "s",
        spec(
            PortSelection::of(&[PortId(2)]),
            &[MirrorStage::Ingress, MirrorStage::Drop],
        ),
        Arc::clone(&queue),
    ));
    registry.add(Arc::clone(&session));
    view.sync(&registry);
    assert!(view.active(MirrorStage::Ingress) && view.active(MirrorStage::Drop));
    assert!(!view.active(MirrorStage::Egress));

    let note = MirrorNote::new(MirrorStage::Ingress, PortId(2));
    view.offer(MirrorStage::Ingress, PortId(2), &[7; 10], note);
    view.offer(MirrorStage::Ingress, PortId(3), &[8; 10], note);
    view.offer(MirrorStage::Egress, PortId(2), &[9; 10], note);
    let got = drain(&queue);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, vec![7; 10]);
    assert_eq!(
        session.counts(),
        SessionCounts {
            frames: 1,
            bytes: 10,
            dropped: 0
        }
    );

    assert!(registry.remove(&session));
    assert!(!registry.remove(&session));
    view.sync(&registry);
    assert!(!view.active(MirrorStage::Ingress));
}

#[test]
fn filter_and_snaplen_cut() {
    // Accept frames whose first byte is 1 (the accept value does not cut: the snap length does).
    let filter = Program::new(vec![
        Insn::new(0x30, 0, 0, 0),
        Insn::new(0x15, 0, 1, 1),
        Insn::new(0x06, 0, 0, 1),
        Insn::new(0x06, 0, 0, 0),
    ])
    .unwrap();
    let queue = Arc::new(MirrorQueue::new(8, 64));
    let session = Arc::new(Session::new(
        "f",
        SessionSpec {
            filter: Some(filter),
            snaplen: 2,
            ..spec(PortSelection::All, &[MirrorStage::Egress])
        },
        Arc::clone(&queue),
    ));
    let registry = MirrorRegistry::default();
    registry.add(Arc::clone(&session));
    let mut view = MirrorView::default();
    view.sync(&registry);
    let note = MirrorNote::new(MirrorStage::Egress, PortId(0));
    view.offer(MirrorStage::Egress, PortId(9), &[1, 2, 3, 4, 5], note);
    view.offer(MirrorStage::Egress, PortId(9), &[2, 2, 3, 4, 5], note);
    let got = drain(&queue);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, vec![1, 2], "cut at the session's snap length");
}

#[test]
fn full_output_counts_drops_per_session() {
    let queue = Arc::new(MirrorQueue::new(1, 64));
    let session = Arc::new(Session::new(
        "slow",
        spec(PortSelection::All, &[MirrorStage::Ingress]),
        Arc::clone(&queue),
    ));
    let registry = MirrorRegistry::default();
    registry.add(Arc::clone(&session));
    let mut view = MirrorView::default();
    view.sync(&registry);
    let note = MirrorNote::new(MirrorStage::Ingress, PortId(0));
    for _ in 0..5 {
        view.offer(MirrorStage::Ingress, PortId(0), &[0; 60], note);
    }
    assert_eq!(session.counts().frames, 1);
    assert_eq!(session.counts().dropped, 4);
}

#[test]
fn pcap_and_pcapng_read_back_with_comments() {
    let queue = MirrorQueue::new(4, 64);
    let note = MirrorNote::new(MirrorStage::Drop, PortId(1))
        .with_verdict(Verdict::Drop(DropReason::SpoofedSrcIp));
    assert!(queue.push(&[0xab; 60], 60, 1_700_000_000_123_456_789, note));
    let record = queue.pop().unwrap();

    let mut pcap = Vec::new();
    pcapng::pcap_header(&mut pcap, 65535);
    pcapng::pcap_record(&mut pcap, &record);
    let mut reader = PcapReader::new(&pcap[..]).unwrap();
    let r = reader.next_record().unwrap().unwrap();
    assert_eq!(r.data, &[0xab; 60][..]);
    assert_eq!(r.timestamp_ns, 1_700_000_000_123_456_789);

    let comment = pcapng::comment(&record.note, |p| format!("port{}", p.0));
    assert_eq!(
        comment,
        "stage=drop in=port1 verdict=drop reason=spoofed_src_ip"
    );
    let mut ng = Vec::new();
    pcapng::pcapng_header(&mut ng, 65535, "pod-a");
    pcapng::pcapng_record(&mut ng, &record, &comment);
    let mut reader = PcapReader::new(&ng[..]).unwrap();
    let r = reader.next_record().unwrap().unwrap();
    assert_eq!(r.data, &[0xab; 60][..]);
    assert_eq!(r.timestamp_ns, 1_700_000_000_123_456_789);
    assert!(reader.next_record().unwrap().is_none());
}

#[test]
fn nat_comment() {
    let note = MirrorNote::new(MirrorStage::PostNat, PortId(0))
        .with_out_port(PortId(1))
        .with_nat(NatRewrite {
            kind: NatKind::Dnat,
            from: ("10.96.0.10".parse().unwrap(), 80),
            to: ("10.244.1.5".parse().unwrap(), 8080),
        });
    assert_eq!(
        pcapng::comment(&note, |p| format!("p{}", p.0)),
        "stage=post-nat in=p0 out=p1 nat=dnat 10.96.0.10:80->10.244.1.5:8080"
    );
}
