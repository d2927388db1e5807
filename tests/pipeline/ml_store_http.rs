//! `data.source: https://…` reads through reqwest; exercised here against a
//! real HTTP server on loopback (plain http: no certificates on this machine).

use axum::{Router, http::StatusCode, routing::get};
use driftline::data::{read_table, store};

async fn serve() -> String {
    let app = Router::new()
        .route(
            "/wine/train.csv",
            get(|| async { "alcohol,color,quality\n9.4,red,5\n12.1,white,7\n" }),
        )
        .route(
            "/broken.csv",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn a_dataset_is_read_over_http_with_its_digest() {
    let base = serve().await;
    let table = read_table(&format!("{base}/wine/train.csv"), None)
        .await
        .unwrap();
    assert_eq!(table.names, vec!["alcohol", "color", "quality"]);
    assert_eq!(table.rows, 2);
    let local = driftline::data::Table::from_csv(
        "local",
        b"alcohol,color,quality\n9.4,red,5\n12.1,white,7\n",
    )
    .unwrap();
    assert_eq!(
        table.digest, local.digest,
        "the digest is of the bytes read"
    );
}

#[tokio::test]
async fn http_failures_name_the_uri_and_the_status() {
    let base = serve().await;
    let missing = format!("{base}/wine/nope.csv");
    let err = store::read_bytes(&missing).await.unwrap_err().to_string();
    assert!(err.contains(&missing), "{err}");
    let broken = format!("{base}/broken.csv");
    let err = driftline::error_chain(&store::read_bytes(&broken).await.unwrap_err());
    assert!(err.contains(&broken) && err.contains("500"), "{err}");
    let err = store::write_atomically(
        &format!("{base}/out/"),
        &[("manifest.json", bytes::Bytes::from_static(b"{}"))],
    )
    .await
    .unwrap_err();
    let err = driftline::error_chain(&err);
    assert!(err.contains("read-only"), "{err}");
}
