//! The floor for `bench/serving/floor.sh` (#25): a no-op HTTP/1.1 server on
//! hyper that reads each request's body whole and answers one fixed body
//! (driftline's own answer to the benchmark's request, captured first), on
//! a tokio runtime of one worker per CPU like `driftline serve`. What the
//! HTTP stack alone costs: driftline's throughput is judged against it.
//!
//!   cargo run --example serving_floor -- PORT ANSWER_FILE
//!
//! `FLOOR_WORK_US=N` adds N µs of CPU work to each request (a fixed number
//! of loop iterations, calibrated at start, so time spent preempted does not
//! count as work): the floor with work in the handler, for
//! `bench/serving/floor-curve.sh`, which reads what share of the bare floor
//! a server with N µs of its own work per request can reach.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [port, answer] = args.as_slice() else {
        eprintln!("usage: serving_floor PORT ANSWER_FILE");
        std::process::exit(2);
    };
    let port: u16 = port.parse().expect("PORT is a port number");
    let answer = Bytes::from(std::fs::read(answer).expect("the answer file is readable"));
    let work_us: f64 = std::env::var("FLOOR_WORK_US")
        .ok()
        .map(|v| {
            v.parse()
                .expect("FLOOR_WORK_US is a number of microseconds")
        })
        .unwrap_or(0.0);
    let iterations = (work_us * iterations_per_us()) as u64;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the port is free");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let answer = answer.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request: Request<Incoming>| {
                let answer = answer.clone();
                async move {
                    // Read like a server that parses the body would have to.
                    request.into_body().collect().await?;
                    work(iterations);
                    Ok::<_, hyper::Error>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(answer))
                            .expect("a fixed response"),
                    )
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// `n` rounds of a dependent multiply-add the optimiser cannot drop.
fn work(n: u64) -> u64 {
    let mut x = 1u64;
    for i in 0..n {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
    }
    x
}

/// Rounds of [`work`] a microsecond takes on this machine (best of five).
fn iterations_per_us() -> f64 {
    const N: u64 = 20_000_000;
    (0..5)
        .map(|_| {
            let start = std::time::Instant::now();
            work(N);
            N as f64 / (start.elapsed().as_secs_f64() * 1e6)
        })
        .fold(0.0, f64::max)
}
