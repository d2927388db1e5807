//! The gateway of `driftline gateway --weights-file`, with a candidate in
//! shadow or without one, for bench/gateway/mirror.sh: the same router the
//! binary serves (`serve::gateway_router`), with the mirror set as the
//! operator's status watch sets it during a shadow stage.
//!
//!   cargo run --example gateway_mirror -- PORT CHAMPION_URL CANDIDATE_URL SAMPLE SHADOW_ROOT
//!
//! SAMPLE 0 mirrors nothing; 1 mirrors every infer call.

use driftline::serve::{Backend, GatewayConfig, Mirror, WeightTable, gateway_router};

// The allocator `driftline gateway` runs on (src/main.rs picks mimalloc for
// the request servers), so the benchmark measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, champion, candidate, sample, root] = args.as_slice() else {
        eprintln!("usage: gateway_mirror PORT CHAMPION_URL CANDIDATE_URL SAMPLE SHADOW_ROOT");
        std::process::exit(2);
    };
    let port: u16 = port.parse().expect("PORT is a port number");
    let sample: f64 = sample.parse().expect("SAMPLE is a share in [0, 1]");
    let table = WeightTable {
        backends: vec![Backend {
            version: "v1".into(),
            url: champion.clone(),
            weight: 100,
        }],
    };
    let config = GatewayConfig {
        shadow_root: Some(root.clone()),
        ..GatewayConfig::default()
    };
    let (router, handle) = gateway_router(table, config);
    if sample > 0.0 {
        handle.set_mirror(Some(Mirror {
            version: "v2".into(),
            url: candidate.clone(),
            sample,
            tolerance: 0.0,
            slices: Default::default(),
        }));
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the port is free");
    axum::serve(listener, router)
        .await
        .expect("the gateway serves");
}
