//! A 1 GiB blob streamed through push and pull, with a bound on the server's memory.

use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::harness::*;

const SIZE: u64 = 1 << 30;
const CHUNK: usize = 1 << 20;
const RSS_LIMIT_KIB: u64 = 150 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_blob_streams_with_bounded_memory() {
    let srv = Server::start();
    let mut rng = Rng::new();
    // One random block, varied per chunk: cheap to generate, never repeats a chunk.
    let block = rng.bytes(CHUNK);
    let salt = rng.next_u64();
    let hasher = Arc::new(Mutex::new(Sha256::new()));
    let h = hasher.clone();
    let stream = futures::stream::unfold(0u64, move |i| {
        let out = if i * CHUNK as u64 >= SIZE {
            None
        } else {
            let mut chunk = block.clone();
            for (k, word) in chunk.chunks_exact_mut(8).step_by(512).enumerate() {
                let mix = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ salt).rotate_left(k as u32 % 64);
                word.copy_from_slice(&mix.to_le_bytes());
            }
            h.lock().unwrap().update(&chunk);
            Some((Ok::<_, std::io::Error>(chunk), i + 1))
        };
        std::future::ready(out)
    });

    // Docker's flow: one streamed PATCH, then the digest on an empty PUT.
    let loc = srv.start_upload("big/blob").await;
    let resp = srv
        .client
        .patch(srv.url(&loc))
        .header("content-type", "application/octet-stream")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .expect("streamed PATCH");
    assert_eq!(resp.status().as_u16(), 202, "{:?}", resp.headers());
    let range = resp.headers()["range"].to_str().unwrap().to_string();
    assert_eq!(range, format!("0-{}", SIZE - 1));
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    let digest = format!(
        "sha256:{}",
        hex::encode(std::mem::take(&mut *hasher.lock().unwrap()).finalize())
    );
    srv.put_blob(&with_query(&loc, &format!("digest={digest}")), Vec::new())
        .await
        .expect(201);

    let h = srv.head(&format!("/v2/big/blob/blobs/{digest}")).await;
    h.expect(200);
    assert_eq!(h.must_header("content-length"), SIZE.to_string());

    let mut resp = srv
        .client
        .get(srv.url(&format!("/v2/big/blob/blobs/{digest}")))
        .send()
        .await
        .expect("GET big blob");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["docker-content-digest"], digest.as_str());
    let mut pulled = Sha256::new();
    let mut n = 0u64;
    while let Some(c) = resp.chunk().await.expect("reading big blob") {
        n += c.len() as u64;
        pulled.update(&c);
    }
    assert_eq!(n, SIZE);
    assert_eq!(format!("sha256:{}", hex::encode(pulled.finalize())), digest);

    let hwm = proc_status_kb(srv.pid(), "VmHWM");
    assert!(
        hwm < RSS_LIMIT_KIB,
        "server peak RSS {hwm} KiB exceeds {RSS_LIMIT_KIB} KiB"
    );
}
