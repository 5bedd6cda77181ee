//! Reads every capture in the third-party corpus (`shared/pcaps-corpus/`) with
//! the dataplane's pcap reader and runs the L2 and IPv4 parsers over each
//! Ethernet record.
//!
//! Nothing may panic. A file whose capture format is broken must give an
//! error that names the file and the problem, and reading goes on with the
//! next file. Record counts are checked against the corpus `INDEX.md`
//! (counted there by `capinfos`). Records are checked against `pcap-file`
//! wherever that crate can read the file.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use podswitch_dataplane::io::{PcapReader, PcapRecord};
use podswitch_dataplane::wire::{EtherType, Ipv4Packet, L2Header};

/// Files whose capture format is broken on purpose: the reader must refuse them.
const BROKEN_FILES: &[&str] = &[
    "libpcap-linktype-reserved-field-not-zero.pcap",
    "libpcap-pcap-invalid-version-1.pcap",
    "libpcap-shb-option-too-long.pcapng",
    "ndpi-fuzz-2021-10-13.pcap",
];

/// `shared/pcaps-corpus` beside the repository; `PODSWITCH_CORPUS` if it is elsewhere.
fn corpus_dir() -> PathBuf {
    let beside_repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/pcaps-corpus");
    if beside_repo.is_dir() {
        return beside_repo;
    }
    match std::env::var_os("PODSWITCH_CORPUS") {
        Some(dir) => PathBuf::from(dir),
        None => panic!(
            "corpus not found at {}; set PODSWITCH_CORPUS to the pcaps-corpus directory",
            beside_repo.display()
        ),
    }
}

/// What reading one file gave.
#[derive(Debug, Default)]
struct FileSummary {
    records: u64,
    ethernet: u64,
    other_linktype: u64,
    l2_errors: u64,
    ipv4: u64,
    ipv4_errors: u64,
    min_timestamp_ns: u64,
    max_timestamp_ns: u64,
    /// "file: problem", with the error's sources.
    error: Option<String>,
}

impl FileSummary {
    fn count(&mut self, record: &PcapRecord<'_>) {
        if self.records == 0 {
            self.min_timestamp_ns = record.timestamp_ns;
        }
        self.records += 1;
        self.min_timestamp_ns = self.min_timestamp_ns.min(record.timestamp_ns);
        self.max_timestamp_ns = self.max_timestamp_ns.max(record.timestamp_ns);
        if !record.is_ethernet() {
            self.other_linktype += 1;
            return;
        }
        self.ethernet += 1;
        let Ok(l2) = L2Header::parse(record.data) else {
            self.l2_errors += 1;
            return;
        };
        if l2.ethertype != EtherType::IPV4 {
            return;
        }
        match Ipv4Packet::new_checked(record.data.get(l2.l3_offset..).unwrap_or_default()) {
            Ok(ip) => {
                self.ipv4 += 1;
                // Every getter must hold up after new_checked, whatever the bytes.
                let _ = (
                    ip.src_addr(),
                    ip.dst_addr(),
                    ip.ttl(),
                    ip.protocol(),
                    ip.options(),
                    ip.payload(),
                );
                let _ = (
                    ip.verify_checksum(),
                    ip.is_fragment(),
                    ip.pseudo_header_sum(),
                );
            }
            Err(_) => self.ipv4_errors += 1,
        }
    }
}

/// The error and all its sources, joined.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn read_file(path: &Path) -> FileSummary {
    let name = path
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned();
    let mut summary = FileSummary::default();
    let mut reader = match PcapReader::open(path) {
        Ok(reader) => reader,
        Err(err) => {
            summary.error = Some(format!("{name}: {}", error_chain(&err)));
            return summary;
        }
    };
    loop {
        match reader.next_record() {
            Ok(Some(record)) => summary.count(&record),
            Ok(None) => break,
            Err(err) => {
                summary.error = Some(format!("{name}: {}", error_chain(&err)));
                // The reader is finished after an error; this must end the loop.
                assert!(reader.next_record().unwrap().is_none());
                break;
            }
        }
    }
    summary
}

/// Packet counts from the corpus INDEX.md table, where the cell is a plain number.
fn index_counts(dir: &Path) -> BTreeMap<String, u64> {
    let index = fs::read_to_string(dir.join("INDEX.md")).expect("INDEX.md in the corpus");
    let mut counts = BTreeMap::new();
    for line in index.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // | File | Source repo | Original path | License | Format | Link type | Packets | ...
        if let (Some(file), Some(packets)) = (cells.get(1), cells.get(7))
            && let Ok(n) = packets.parse()
        {
            counts.insert(file.trim_matches('`').to_string(), n);
        }
    }
    counts
}

fn corpus_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("readable corpus directory")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_file_reads_without_panic() {
    let dir = corpus_dir();
    let files = corpus_files(&dir);
    assert!(
        files.len() >= 80,
        "expected the 80-file corpus in {}, found {}",
        dir.display(),
        files.len()
    );
    let expected_counts = index_counts(&dir);

    let mut summaries = BTreeMap::new();
    for path in &files {
        let summary = read_file(path);
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        println!(
            "{name:50} records {:6}  ethernet {:6}  other-linktype {:3}  l2-bad {:3}  ipv4 {:6}  ipv4-bad {:3}  {}",
            summary.records,
            summary.ethernet,
            summary.other_linktype,
            summary.l2_errors,
            summary.ipv4,
            summary.ipv4_errors,
            summary.error.as_deref().unwrap_or("ok"),
        );
        summaries.insert(name, summary);
    }

    for (name, summary) in &summaries {
        let broken = BROKEN_FILES.contains(&name.as_str());
        match (&summary.error, broken) {
            (Some(error), true) => assert!(error.starts_with(&format!("{name}: ")), "{error}"),
            (None, true) => panic!("{name} has a broken capture format but read without error"),
            (Some(error), false) => panic!("unexpected error: {error}"),
            (None, false) => {
                if let Some(&expected) = expected_counts.get(name) {
                    assert_eq!(summary.records, expected, "{name}: records vs INDEX.md");
                }
            }
        }
    }

    let echo = &summaries["zeek-echo-connections.pcap"];
    assert_eq!(echo.records, 82_582);
    assert_eq!(echo.ipv4, 82_582);

    // Two interfaces, nanosecond and microsecond: the timestamps must agree to within an hour.
    let multi = &summaries["zeek-pcapng-multi-interface.pcapng"];
    assert_eq!(multi.records, 6);
    assert!(
        multi.max_timestamp_ns - multi.min_timestamp_ns < 3_600 * 1_000_000_000,
        "{multi:?}"
    );

    // The errors name the problem, not just the file.
    let problem = |name: &str| summaries[name].error.clone().unwrap_or_default();
    assert!(
        problem("libpcap-pcap-invalid-version-1.pcap").contains("unsupported pcap version 1.4")
    );
    assert!(
        problem("libpcap-linktype-reserved-field-not-zero.pcap").contains("non-zero reserved bits")
    );
    assert!(problem("libpcap-shb-option-too-long.pcapng").contains("block at byte offset 0"));
    assert!(problem("ndpi-fuzz-2021-10-13.pcap").contains("unsupported pcap version 2.0"));
}

/// Where `pcap-file` reads a classic pcap without error, both readers must
/// return the same records. The broken files are left out: `pcap-file`
/// wrongly accepts two of them (version 1.4, reserved link-type bits).
#[test]
fn records_match_pcap_file_where_it_can_read() {
    let dir = corpus_dir();
    let mut compared = 0;
    for path in corpus_files(&dir) {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.extension().and_then(|e| e.to_str()) != Some("pcap")
            || BROKEN_FILES.contains(&name.as_ref())
        {
            continue;
        }
        let Ok(oracle) = oracle_records(&path) else {
            continue;
        };
        let mut reader = PcapReader::open(&path).expect("pcap-file opened it, so must we");
        for (i, (timestamp_ns, orig_len, data)) in oracle.iter().enumerate() {
            let ours = reader
                .next_record()
                .unwrap()
                .unwrap_or_else(|| panic!("{}: record {i} missing", path.display()));
            assert_eq!(
                (ours.timestamp_ns, ours.orig_len, ours.data),
                (*timestamp_ns, *orig_len, &data[..]),
                "{}: record {i}",
                path.display()
            );
        }
        assert!(
            reader.next_record().unwrap().is_none(),
            "{}: extra records",
            path.display()
        );
        compared += 1;
    }
    assert!(compared >= 60, "only {compared} files compared");
}

/// Every record as pcap-file 2 reads it, or its first error.
fn oracle_records(path: &Path) -> Result<Vec<(u64, u32, Vec<u8>)>, pcap_file::PcapError> {
    let file = fs::File::open(path).expect("corpus file");
    let mut reader = pcap_file::pcap::PcapReader::new(file)?;
    let mut out = Vec::new();
    while let Some(packet) = reader.next_packet() {
        let packet = packet?;
        let ns = u64::try_from(packet.timestamp.as_nanos()).unwrap_or(u64::MAX);
        out.push((ns, packet.orig_len, packet.data.into_owned()));
    }
    Ok(out)
}
