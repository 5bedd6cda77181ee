//! What the control plane keeps per service (issue 25 C3): the heap bytes
//! still allocated after a declarative apply of services with 10 endpoints
//! each, through the API router (JSON decoding, validation, the state, the
//! store, the service table with its Maglev tables), counted by a global
//! allocator that adds up live bytes. The live daemon's RSS at 100,000
//! services is measured by `benches/src/bin/state_apply.rs`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use axum::body::Body;
use axum::http::Request;
use podswitch_control::api::{self, Api};
use podswitch_control::control::Control;
use podswitch_control::store::Store;
use podswitch_dataplane::config::NodeConfig;
use tower::ServiceExt;

mod common;

/// Bytes allocated and not yet freed, by the whole test process.
static LIVE: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting live bytes.
struct Counting;

// SAFETY: every call is passed on to the system allocator unchanged; the
// counter is only bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout contract is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` was allocated by System with `layout` (through alloc above).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        // SAFETY: as for dealloc, and new_size is the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const CONFIG: &str = "[node]\nname = \"node-0\"\n[bridge]\ngateway = \"10.244.1.1/24\"\ngateway_mac = \"02:00:0a:f4:01:01\"\n";

/// `services` services of one port and 10 endpoints, as `state_apply` sends them.
fn document(services: u32) -> String {
    let list: Vec<String> = (0..services)
        .map(|i| {
            let endpoints: Vec<String> = (0..10u32)
                .map(|e| {
                    let address = std::net::Ipv4Addr::from(0x0a80_0000 + i * 16 + e);
                    format!(
                        r#"{{"address":"{address}","ready":true,"node":"node-{}"}}"#,
                        (i + e) % 100
                    )
                })
                .collect();
            format!(
                r#"{{"name":"ns{}/svc-{i}","cluster_ip":"{}","ports":[{{"name":"http","port":80,"target_port":8080}}],"endpoints":[{}]}}"#,
                i % 50,
                std::net::Ipv4Addr::from(0x0a60_0000 + i),
                endpoints.join(",")
            )
        })
        .collect();
    format!(r#"{{"services":[{}]}}"#, list.join(","))
}

async fn apply(app: &axum::Router, doc: &str) {
    let req = Request::builder()
        .method("PUT")
        .uri("/v1/state")
        .header("content-type", "application/json")
        .body(Body::from(doc.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "current_thread")]
async fn a_service_with_ten_endpoints_keeps_a_bounded_heap() {
    const SERVICES: u32 = 2_000;
    let dir = common::temp_dir("memory", "apply");
    let file = NodeConfig::from_toml_str(CONFIG).unwrap();
    // redb's page cache is a fixed 8 MiB, whatever the number of services:
    // left out here, where it would be most of a few thousand services' bytes.
    let store = Store::open_with_cache(&dir, 0).unwrap();
    let (control, _) = Control::restore(file, store).unwrap();
    let app = api::router(Api::new(control));
    let doc = document(SERVICES);
    let before = LIVE.load(Ordering::Relaxed);
    apply(&app, &doc).await;
    let first = LIVE.load(Ordering::Relaxed) - before;
    apply(&app, &doc).await;
    let again = LIVE.load(Ordering::Relaxed) - before;
    let per_service = first as f64 / f64::from(SERVICES);
    println!(
        "live heap after the apply: {first} bytes ({per_service:.0} per service); after applying it again: {again}"
    );
    // Measured: 1,688 (4-bit Maglev slots, inline strings, shared node
    // names, no second copy of the state in the service cache); 3,533
    // before those, with redb's cache in.
    assert!(per_service <= 1_800.0, "{per_service:.0} bytes per service");
    assert!(
        (again - first).abs() < first / 20,
        "applying the same document again kept {} more bytes",
        again - first
    );
}
