//! The floor for `bench/serving/floor.sh` (#25): a no-op HTTP/1.1 server on
//! hyper that reads each request's body whole and answers one fixed body
//! (driftline's own answer to the benchmark's request, captured first), on
//! a tokio runtime of one worker per CPU like `driftline serve`. What the
//! HTTP stack alone costs: driftline's throughput is judged against it.
//!
//!   cargo run --example serving_floor -- PORT ANSWER_FILE

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
