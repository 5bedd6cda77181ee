//! tcpdump filter expressions, compiled by libpcap for Ethernet.
//!
//! The control plane links libpcap (through the `pcap` crate) only to
//! compile: `pcap_compile` on a dead Ethernet handle, then the instructions
//! are handed to the dataplane's own interpreter
//! (`podswitch_dataplane::mirror::bpf`), which never links libpcap.

use podswitch_dataplane::mirror::bpf::{Insn, Program};

/// Compiles `expression` (tcpdump syntax) with libpcap; an empty expression
/// is "everything" (`None`). Errors are libpcap's own message.
pub fn compile(expression: &str) -> Result<Option<Program>, String> {
    let expression = expression.trim();
    if expression.is_empty() {
        return Ok(None);
    }
    let insns = compile_raw(expression)?;
    Program::new(insns)
        .map(Some)
        .map_err(|e| format!("libpcap produced a program we cannot run: {e}"))
}

/// libpcap's instructions for `expression`.
fn compile_raw(expression: &str) -> Result<Vec<Insn>, String> {
    let capture = pcap::Capture::dead(pcap::Linktype::ETHERNET).map_err(|e| e.to_string())?;
    let program = capture
        .compile(expression, true)
        .map_err(|e| e.to_string())?;
    // The crate shows the fields only through Display: "code jt jf k".
    program
        .get_instructions()
        .iter()
        .map(|insn| {
            let text = insn.to_string();
            let f: Vec<&str> = text.split_whitespace().collect();
            let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
            match (field(0), field(1), field(2), field(3)) {
                (Some(code), Some(jt), Some(jf), Some(k)) => Ok(Insn::new(
                    u16::try_from(code).map_err(|_| format!("bad opcode in {text:?}"))?,
                    u8::try_from(jt).map_err(|_| format!("bad jt in {text:?}"))?,
                    u8::try_from(jf).map_err(|_| format!("bad jf in {text:?}"))?,
                    u32::try_from(k).map_err(|_| format!("bad k in {text:?}"))?,
                )),
                _ => Err(format!("cannot read libpcap instruction {text:?}")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use podswitch_dataplane::io::PcapReader;

    /// Filters of the kinds operators type, run by our interpreter and by
    /// libpcap (`pcap_offline_filter`) over every frame of the project's
    /// captures: the verdicts must agree frame by frame.
    #[test]
    fn interpreter_agrees_with_libpcap_on_the_captures() {
        let expressions = [
            "tcp port 80",
            "udp",
            "arp",
            "icmp",
            "ip",
            "ip6",
            "host 10.244.1.2",
            "net 10.244.0.0/16 and not icmp",
            "ether broadcast",
            "ether multicast",
            "vlan",
            "tcp[tcpflags] & (tcp-syn|tcp-fin) != 0",
            "ip[8] < 64",
            "udp dst port 53 or tcp src portrange 1000-2000",
            "len > 100 and len <= 1514",
            "ip[2:2] > 500",
            "greater 200",
            "ip proto 17 and ip[6:2] & 0x1fff = 0",
            "icmp[icmptype] = icmp-echoreply",
            "ether src 02:00:0a:f4:01:02",
            "ip and (tcp[((tcp[12:1] & 0xf0) >> 2):4] = 0x47455420)",
        ];
        let mut files = Vec::new();
        for dir in [
            "../pcaps",
            "../pcaps/scenarios",
            "/work/shared/pcaps-corpus",
        ] {
            collect(std::path::Path::new(dir), &mut files);
        }
        assert!(!files.is_empty(), "no capture found");
        let capture = pcap::Capture::dead(pcap::Linktype::ETHERNET).unwrap();
        let ours: Vec<_> = expressions
            .iter()
            .map(|e| compile(e).unwrap().unwrap())
            .collect();
        let theirs: Vec<_> = expressions
            .iter()
            .map(|e| capture.compile(e, true).unwrap())
            .collect();
        let mut frames = 0usize;
        let mut matched = vec![0usize; expressions.len()];
        for file in &files {
            let Ok(mut reader) = PcapReader::open(file) else {
                continue;
            };
            let mut n = 0;
            while let Ok(Some(record)) = reader.next_record() {
                if !record.is_ethernet() || n >= 2000 {
                    continue;
                }
                n += 1;
                frames += 1;
                for (i, expr) in expressions.iter().enumerate() {
                    let ours = ours[i].matches(record.data);
                    let theirs = theirs[i].filter(record.data);
                    assert_eq!(
                        ours,
                        theirs,
                        "{expr:?} on a frame of {} ({} bytes)",
                        file.display(),
                        record.data.len()
                    );
                    matched[i] += usize::from(ours);
                }
            }
        }
        assert!(frames > 100, "only {frames} frames");
        // The corpus exercises both answers of most filters.
        assert!(matched.iter().filter(|&&m| m > 0 && m < frames).count() >= 10);
    }

    fn collect(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                collect(&path, out);
            } else if path
                .extension()
                .is_some_and(|e| e == "pcap" || e == "pcapng")
            {
                out.push(path);
            }
        }
    }

    #[test]
    fn truncated_frames_agree_too() {
        let capture = pcap::Capture::dead(pcap::Linktype::ETHERNET).unwrap();
        let mut reader = PcapReader::open("../pcaps/l2-pod-to-pod.pcap").unwrap();
        let exprs = ["tcp port 80", "udp dst port 53", "icmp", "tcp[13] & 2 != 0"];
        let programs: Vec<_> = exprs
            .iter()
            .map(|e| {
                (
                    compile(e).unwrap().unwrap(),
                    capture.compile(e, true).unwrap(),
                )
            })
            .collect();
        while let Ok(Some(record)) = reader.next_record() {
            for cut in [0, 13, 14, 20, 33, 34, 40, record.data.len() / 2] {
                let data = &record.data[..cut.min(record.data.len())];
                for (expr, (ours, theirs)) in exprs.iter().zip(&programs) {
                    assert_eq!(
                        ours.matches(data),
                        theirs.filter(data),
                        "{expr:?} on {cut} bytes"
                    );
                }
            }
        }
    }

    #[test]
    fn the_known_program_is_libpcaps() {
        // Equal but for the accept value: the snap length of the handle
        // (65535 for a dead one, 262144 for tcpdump's).
        let ours = compile("tcp port 80").unwrap().unwrap();
        let known = &podswitch_dataplane::mirror::bpf::TCP_PORT_80;
        assert_eq!(ours.insns().len(), known.len());
        for (a, b) in ours.insns().iter().zip(known) {
            assert_eq!((a.code, a.jt, a.jf), (b.code, b.jt, b.jf));
            assert!(
                a.k == b.k || (a.code == 6 && a.k != 0 && b.k != 0),
                "{a:?} {b:?}"
            );
        }
    }

    #[test]
    fn errors_are_libpcaps() {
        let e = compile("tcp port eighty").unwrap_err();
        assert!(e.contains("eighty"), "{e}");
        assert!(compile("tcp and").unwrap_err().contains("syntax error"));
        assert_eq!(compile("  "), Ok(None));
    }
}
